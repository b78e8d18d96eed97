package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlock-io/dlock/dlockserver"
)

// Sharded clusters.
//
// A cluster whose members run with Config.Shard is cut into shards. Each
// shard is a highly available group of its own: its members campaign, keep
// their client registry and their token mark under the shard's prefix,
// /dlock/<cluster>/shards/<shard>/. The cluster's slot map, one key
// /dlock/<cluster>/slots, assigns each of dlockserver.NumSlots slots to a
// shard; its etcd modification revision is the map's version. Its value is
// JSON, each shard's slot ranges (first and last slot, inclusive):
//
//	{"a":[[0,341]],"b":[[342,682]],"c":[[683,1023]]}
//
// Every member watches the map and the shards' elections and gives the
// server the map with each shard's members, its primary first
// (dlockserver.Server.SetShardMap), before it campaigns and whenever either
// changes. The first member to find no map writes one that splits the
// slots evenly between Config.Shards.

// ShardKeys returns the prefix of a shard's keys.
func ShardKeys(cluster, shard string) string { return Keys(cluster) + "shards/" + shard + "/" }

// SlotsKey returns the key of cluster's slot map.
func SlotsKey(cluster string) string { return Keys(cluster) + "slots" }

// Ranges are a shard's slots as inclusive [first, last] ranges.
type Ranges [][2]int

// Assignment is a slot map: each shard's ranges.
type Assignment map[string]Ranges

// EvenAssignment splits the slots into len(shards) contiguous ranges whose
// sizes differ by one at most, in the order given.
func EvenAssignment(shards []string) Assignment {
	a := Assignment{}
	n := len(shards)
	for i, s := range shards {
		first := i * dlockserver.NumSlots / n
		last := (i+1)*dlockserver.NumSlots/n - 1
		a[s] = Ranges{{first, last}}
	}
	return a
}

// checkShardName refuses names that would escape the shard's prefix.
func checkShardName(s string) error {
	if s == "" || strings.ContainsAny(s, "/{}") || len(s) > 128 {
		return fmt.Errorf("ha: shard name %q: want 1..128 characters without '/', '{' or '}'", s)
	}
	return nil
}

// checkShards validates Shard and Shards.
func (cfg *Config) checkShards() error {
	if cfg.Shard == "" {
		if len(cfg.Shards) > 0 {
			return errors.New("ha: Shards needs Shard")
		}
		return nil
	}
	if err := checkShardName(cfg.Shard); err != nil {
		return err
	}
	for _, s := range cfg.Shards {
		if err := checkShardName(s); err != nil {
			return err
		}
	}
	return nil
}

// slots returns the owner of every slot (-1 for none) and the shards in
// name order; an assignment that gives a slot twice, or a slot out of
// range, is an error.
func (a Assignment) slots() ([]string, []int, error) {
	names := make([]string, 0, len(a))
	for s := range a {
		names = append(names, s)
	}
	sort.Strings(names)
	owner := make([]int, dlockserver.NumSlots)
	for i := range owner {
		owner[i] = -1
	}
	for i, s := range names {
		for _, r := range a[s] {
			if r[0] < 0 || r[1] >= dlockserver.NumSlots || r[0] > r[1] {
				return nil, nil, fmt.Errorf("ha: shard %s: bad slot range %v", s, r)
			}
			for k := r[0]; k <= r[1]; k++ {
				if owner[k] >= 0 {
					return nil, nil, fmt.Errorf("ha: slot %d assigned to %s and %s", k, names[owner[k]], s)
				}
				owner[k] = i
			}
		}
	}
	return names, owner, nil
}

// InitSlots writes cluster's slot map, split evenly between shards, unless
// a map exists already. It reports whether it wrote one.
func InitSlots(ctx context.Context, cli *clientv3.Client, cluster string, shards []string) (bool, error) {
	if len(shards) == 0 {
		return false, errors.New("ha: no shards")
	}
	seen := map[string]bool{}
	for _, s := range shards {
		if err := checkShardName(s); err != nil {
			return false, err
		}
		if seen[s] {
			return false, fmt.Errorf("ha: shard %s listed twice", s)
		}
		seen[s] = true
	}
	if len(shards) > dlockserver.NumSlots {
		return false, fmt.Errorf("ha: %d shards for %d slots", len(shards), dlockserver.NumSlots)
	}
	val, err := json.Marshal(EvenAssignment(shards))
	if err != nil {
		return false, err
	}
	key := SlotsKey(cluster)
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}

// ShardStatus is one shard as etcd knows it.
type ShardStatus struct {
	Name string
	// Primary is nil while none is elected; Standbys are next in line first.
	Primary  *Member
	Standbys []Member
	Slots    Ranges
	// Clients counts the shard's registered clients; TokenMark is its
	// saved fencing-token mark.
	Clients   int
	TokenMark uint64
}

// ShardsStatus is a sharded cluster as etcd knows it.
type ShardsStatus struct {
	// Version is the slot map's version (0: no map, not a sharded cluster).
	Version uint64
	Shards  []ShardStatus // in name order
	// Unassigned counts slots no shard owns.
	Unassigned int
	// Moves are the slot moves in progress.
	Moves []Move
}

// ReadShards reads a sharded cluster's map and its shards' members.
func ReadShards(ctx context.Context, cli *clientv3.Client, cluster string) (ShardsStatus, error) {
	var st ShardsStatus
	mresp, err := cli.Txn(ctx).Then(clientv3.OpGet(SlotsKey(cluster)),
		clientv3.OpGet(MovesKey(cluster), clientv3.WithPrefix())).Commit()
	if err != nil {
		return st, err
	}
	resp := mresp.Responses[0].GetResponseRange()
	if len(resp.Kvs) == 0 {
		return st, nil
	}
	var mkvs []*moveKV
	for _, kv := range mresp.Responses[1].GetResponseRange().Kvs {
		mkvs = append(mkvs, &moveKV{key: string(kv.Key), value: kv.Value, rev: kv.ModRevision})
	}
	if st.Moves, err = readMoves(cluster, mkvs); err != nil {
		return st, err
	}
	var a Assignment
	if err := json.Unmarshal(resp.Kvs[0].Value, &a); err != nil {
		return st, fmt.Errorf("ha: slot map: %w", err)
	}
	names, owner, err := a.slots()
	if err != nil {
		return st, err
	}
	st.Version = uint64(resp.Kvs[0].ModRevision)
	for _, o := range owner {
		if o < 0 {
			st.Unassigned++
		}
	}
	var ops []clientv3.Op
	for _, s := range names {
		pfx := ShardKeys(cluster, s)
		ops = append(ops, clientv3.OpGet(pfx+"election", clientv3.WithPrefix()),
			clientv3.OpGet(pfx+"clients/", clientv3.WithPrefix(), clientv3.WithCountOnly()),
			clientv3.OpGet(pfx+"tokens"))
	}
	var tr *clientv3.TxnResponse
	if len(ops) > 0 {
		if tr, err = cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return st, err
		}
	}
	for i, s := range names {
		ss := ShardStatus{Name: s, Slots: a[s]}
		var ms []Member
		ss.Clients = int(tr.Responses[3*i+1].GetResponseRange().Count)
		if kvs := tr.Responses[3*i+2].GetResponseRange().Kvs; len(kvs) > 0 {
			ss.TokenMark, _ = strconv.ParseUint(string(kvs[0].Value), 10, 64)
		}
		for _, kv := range tr.Responses[3*i].GetResponseRange().Kvs {
			ms = append(ms, Member{Addr: string(kv.Value), Epoch: kv.CreateRevision})
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].Epoch < ms[j].Epoch })
		if len(ms) > 0 {
			ss.Primary = &ms[0]
			ss.Standbys = ms[1:]
		}
		st.Shards = append(st.Shards, ss)
	}
	return st, nil
}

// serverMap converts st into the server's map for a member of shard self.
func (st ShardsStatus) serverMap(self string) dlockserver.ShardMap {
	m := dlockserver.ShardMap{Version: st.Version, Slots: make([]int, dlockserver.NumSlots)}
	for i := range m.Slots {
		m.Slots[i] = -1
	}
	for i, s := range st.Shards {
		sh := dlockserver.Shard{Name: s.Name}
		if s.Primary != nil {
			sh.Addrs = append(sh.Addrs, s.Primary.Addr)
		}
		for _, b := range s.Standbys {
			sh.Addrs = append(sh.Addrs, b.Addr)
		}
		m.Shards = append(m.Shards, sh)
		for _, r := range s.Slots {
			for k := r[0]; k <= r[1]; k++ {
				m.Slots[k] = i
			}
		}
	}
	for _, mv := range st.Moves {
		if mv.To == self {
			for _, r := range mv.Slots {
				for k := r[0]; k <= r[1]; k++ {
					m.Incoming = append(m.Incoming, k)
				}
			}
		}
	}
	return m
}

// startShards gives srv the slot map (writing the initial one if there is
// none and Config.Shards are set), then keeps it current until ctx ends.
// It returns once the server has a map; the returned function waits for
// the watch to stop.
func (n *Node) startShards(ctx context.Context, srv *dlockserver.Server) (func(), error) {
	cluster := n.cfg.Cluster
	var st ShardsStatus
	for ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
		var err error
		if len(n.cfg.Shards) > 0 {
			var wrote bool
			if wrote, err = InitSlots(rctx, n.cli, cluster, n.cfg.Shards); wrote {
				n.cfg.Logger.Info("ha: wrote the initial slot map", "shards", n.cfg.Shards)
			}
		}
		if err == nil {
			st, err = ReadShards(rctx, n.cli, cluster)
		}
		cancel()
		if err == nil && st.Version != 0 {
			break
		}
		if err == nil {
			err = errors.New("no slot map yet (start a member with -shards, or write one)")
		}
		n.cfg.Logger.Warn("ha: waiting for the slot map", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err := n.applyMap(srv, st); err != nil {
		n.cfg.Logger.Error("ha: unusable slot map; not campaigning", "err", err)
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.watchShards(ctx, srv)
	}()
	return func() { <-done; n.moves.wg.Wait(); n.joinWG.Wait() }, nil
}

// applyMap gives srv the map in st.
func (n *Node) applyMap(srv *dlockserver.Server, st ShardsStatus) error {
	if st.Version < srv.ShardMapVersion() {
		return nil // an older read than the one applied
	}
	if err := srv.SetShardMap(n.cfg.Shard, st.serverMap(n.cfg.Shard)); err != nil {
		return err
	}
	owned := 0
	for _, s := range st.Shards {
		if s.Name == n.cfg.Shard {
			for _, r := range s.Slots {
				owned += r[1] - r[0] + 1
			}
		}
	}
	if owned == 0 {
		n.cfg.Logger.Warn("ha: this shard owns no slot", "shard", n.cfg.Shard, "map_version", st.Version)
	}
	return nil
}

// watchShards re-reads the map whenever the map key or a shard's election
// changes, until ctx ends.
func (n *Node) watchShards(ctx context.Context, srv *dlockserver.Server) {
	pfx := Keys(n.cfg.Cluster)
	slots := SlotsKey(n.cfg.Cluster)
	moves := MovesKey(n.cfg.Cluster)
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := n.cli.Watch(wctx, pfx, clientv3.WithPrefix())
		// Read after the watch started, so that no change falls between.
		n.refreshMap(ctx, srv)
		for resp := range wch {
			relevant := resp.Err() != nil
			for _, ev := range resp.Events {
				k := string(ev.Kv.Key)
				relevant = relevant || k == slots || strings.Contains(k, "/election/") || strings.HasPrefix(k, moves)
			}
			if relevant {
				n.refreshMap(ctx, srv)
			}
			if resp.Err() != nil {
				break
			}
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// refreshMap reads the map and gives it to srv when it could be read, then
// acknowledges it and receives moves as the shard's primary.
func (n *Node) refreshMap(ctx context.Context, srv *dlockserver.Server) {
	if st, err := n.applyLatest(ctx, srv); err == nil {
		n.afterMap(ctx, srv, st)
	}
}

// applyLatest reads the map and gives it to srv.
func (n *Node) applyLatest(ctx context.Context, srv *dlockserver.Server) (ShardsStatus, error) {
	rctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
	st, err := ReadShards(rctx, n.cli, n.cfg.Cluster)
	cancel()
	if err == nil && st.Version == 0 {
		err = errors.New("the slot map was deleted")
	}
	if err == nil {
		err = n.applyMap(srv, st)
	}
	if err != nil && ctx.Err() == nil {
		n.cfg.Logger.Warn("ha: could not refresh the slot map", "err", err)
	}
	return st, err
}
