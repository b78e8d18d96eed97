// Package ha makes dlock servers a highly available cluster with etcd.
//
// Every member campaigns in an etcd election under the cluster's prefix
// with a short lease. The winner is the primary; the others are standbys
// that redirect clients to it. The lock hot path does not touch etcd: etcd
// holds only what clients cannot rebuild after a failover.
//
//   - The election: the leader key's revision is the primary's epoch.
//   - The client registry: one key per registered client, written before
//     the client learns its id. A new primary waits for exactly these
//     clients to re-register and upload their locks (or for a grace period
//     of at least the session timeout) before granting anything new.
//   - The fencing-token mark: the primary reserves token windows by moving
//     the mark forward in a transaction guarded by its leader key, and never
//     issues a token above it; a new primary starts above the mark, whatever
//     its clock says.
//
// The primary serves only while its own fence is ahead: the send time of
// its last acknowledged lease keepalive plus the lease TTL minus a margin.
// Since etcd expires the lease no earlier than TTL after receiving that
// keepalive, the primary stops serving before etcd can elect another one —
// also when it was paused or cut off from etcd while clients still reach it.
// It keeps its state for TTL/2 more: a keepalive that gets through then
// (after an etcd leader election, which stalls keepalives but expires no
// lease) resumes it without a failover; otherwise it steps down. Choose a
// TTL well above etcd's election timeout.
//
// Use it by giving the Node to the server as its coordinator:
//
//	node, err := ha.New(ha.Config{Endpoints: eps, Cluster: "prod", Advertise: "10.0.0.5:21616"})
//	srv, err := dlockserver.New(dlockserver.Config{Addr: ":21616", Cluster: node})
//	go node.Run(ctx, srv)
//	srv.ListenAndServe()
package ha

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/dlock-io/dlock/dlockserver"
)

// Config configures a cluster member.
type Config struct {
	// Endpoints are the etcd members' client URLs.
	Endpoints []string
	// Cluster names the cluster; its keys live under /dlock/<Cluster>/.
	Cluster string
	// Advertise is the address clients are redirected to when this member
	// is the primary.
	Advertise string
	// TTL is the etcd lease TTL, in whole seconds, 1 at least; default 2 s.
	// A failover takes about TTL.
	TTL time.Duration
	// Margin is taken off the fence to absorb clock-rate differences and
	// etcd's expiry granularity; default TTL/10, 100 ms at least.
	Margin time.Duration
	// TLS, if set, is used to talk to etcd.
	TLS *tls.Config
	// DialTimeout bounds connecting to etcd; default 5 s.
	DialTimeout time.Duration
	// Logger receives election events. Nil means silent.
	Logger *slog.Logger
	// Shard, if set, makes the member part of that shard of a sharded
	// cluster: it campaigns under the shard's prefix and serves only the
	// slots the cluster's slot map gives the shard (shard.go).
	Shard string
	// Shards, if set with Shard, is the cluster's initial list of shards:
	// the first member to find no slot map writes one that splits the
	// slots evenly between them.
	Shards []string
	// AutoRebalance, with Shard, makes the shard ask for its even share of
	// the slots when it joins a cluster whose map has no place for it: its
	// primary moves slots to it from the other shards (rebalance.go).
	AutoRebalance bool
	// DurableObjects keeps atomic64 objects in etcd: fetch-and-add,
	// compare-and-swap and the other object requests are committed (in
	// batches) before they are answered, and a new primary has the objects
	// of the old one. Without it objects are lost on failover, and clients
	// are told so. Every member of a cluster must use the same setting.
	DurableObjects bool
	// Now, if set, replaces time.Now as the wall clock that starts the
	// token mark of a new cluster (for tests of a wrong clock).
	Now func() time.Time
}

// Node is one member of a cluster: the coordinator a dlockserver.Server
// calls back (dlockserver.Coordinator), and the campaign that drives it.
type Node struct {
	cfg Config
	cli *clientv3.Client
	pfx string

	mu  sync.Mutex
	key string // our leader key while primary
	rev int64  // its create revision: the epoch

	moves  moveState // slot moves received (shard_move.go)
	join   joinState // asking for slots after joining (rebalance.go; under mu)
	joinWG sync.WaitGroup
}

// Keys returns the prefix of cluster's keys.
func Keys(cluster string) string { return "/dlock/" + cluster + "/" }

// New connects to etcd.
func New(cfg Config) (*Node, error) {
	if len(cfg.Endpoints) == 0 || cfg.Cluster == "" || cfg.Advertise == "" {
		return nil, errors.New("ha: Endpoints, Cluster and Advertise are required")
	}
	if strings.Contains(cfg.Cluster, "/") {
		return nil, errors.New("ha: Cluster must not contain '/'")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 2 * time.Second
	}
	if cfg.TTL < time.Second || cfg.TTL%time.Second != 0 {
		return nil, fmt.Errorf("ha: TTL %v: want whole seconds, 1 s at least", cfg.TTL)
	}
	if cfg.Margin <= 0 {
		cfg.Margin = max(cfg.TTL/10, 100*time.Millisecond)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.checkShards(); err != nil {
		return nil, err
	}
	cli, err := Dial(cfg.Endpoints, cfg.TLS, cfg.DialTimeout)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, cli: cli, pfx: Keys(cfg.Cluster)}
	if cfg.Shard != "" {
		n.pfx = ShardKeys(cfg.Cluster, cfg.Shard)
	}
	return n, nil
}

// Dial returns an etcd client for endpoints, without etcd's own logging.
func Dial(endpoints []string, tlsCfg *tls.Config, timeout time.Duration) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: timeout,
		TLS:         tlsCfg,
		Logger:      zap.NewNop(),
		// Notice a dead etcd member quickly and move to another.
		DialKeepAliveTime:    time.Second,
		DialKeepAliveTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("ha: etcd: %w", err)
	}
	return cli, nil
}

// Close closes the etcd client.
func (n *Node) Close() error { return n.cli.Close() }

func (n *Node) electionKey() string { return n.pfx + "election" }
func (n *Node) clientsKey() string  { return n.pfx + "clients/" }
func (n *Node) tokensKey() string   { return n.pfx + "tokens" }

// Run campaigns and drives srv until ctx ends: primary while elected and
// within its fence, standby otherwise. It returns ctx's error.
func (n *Node) Run(ctx context.Context, srv *dlockserver.Server) error {
	if n.cfg.Shard != "" {
		wait, err := n.startShards(ctx, srv)
		if err != nil {
			return err
		}
		defer wait()
	}
	for ctx.Err() == nil {
		err := n.term(ctx, srv)
		srv.Standby("")
		n.mu.Lock()
		n.key, n.rev = "", 0
		n.mu.Unlock()
		if ctx.Err() != nil {
			break
		}
		n.cfg.Logger.Warn("ha: campaign ended; starting over", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return ctx.Err()
}

// term is one session: campaign, then serve until the fence passes.
func (n *Node) term(ctx context.Context, srv *dlockserver.Server) error {
	ttl := int(n.cfg.TTL / time.Second)
	sess, err := concurrency.NewSession(n.cli, concurrency.WithTTL(ttl), concurrency.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("session: %w", err)
	}
	defer func() {
		// Revoke the lease so that a standby takes over at once (when etcd
		// is reachable; otherwise it expires by itself).
		cctx, cancel := context.WithTimeout(context.Background(), n.cfg.TTL)
		defer cancel()
		n.cli.Revoke(cctx, sess.Lease())
		sess.Orphan()
	}()
	el := concurrency.NewElection(sess, n.electionKey())

	// While campaigning, point clients at whoever leads.
	octx, ocancel := context.WithCancel(ctx)
	var owg sync.WaitGroup
	owg.Add(1)
	go func() {
		defer owg.Done()
		for resp := range el.Observe(octx) {
			if len(resp.Kvs) == 0 {
				continue
			}
			if addr := string(resp.Kvs[0].Value); addr != n.cfg.Advertise {
				srv.Standby(addr)
			}
		}
	}()
	err = el.Campaign(ctx, n.cfg.Advertise)
	ocancel()
	owg.Wait()
	if err != nil {
		return fmt.Errorf("campaign: %w", err)
	}
	key, rev := el.Key(), el.Rev()
	guard := clientv3.Compare(clientv3.CreateRevision(key), "=", rev)

	// A fresh keepalive starts the fence.
	fence, err := n.keepAlive(ctx, sess.Lease())
	if err != nil {
		return fmt.Errorf("first keepalive: %w", err)
	}
	// What the previous primaries left: the registered clients and the
	// token mark; then reserve a first window above the mark.
	rctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
	resp, err := n.cli.Txn(rctx).If(guard).Then(
		clientv3.OpGet(n.clientsKey(), clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(n.tokensKey())).Commit()
	cancel()
	if err != nil {
		return fmt.Errorf("read registry: %w", err)
	}
	if !resp.Succeeded {
		return errors.New("lost the leader key before serving")
	}
	var clients []int32
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		id, err := strconv.ParseInt(strings.TrimPrefix(string(kv.Key), n.clientsKey()), 10, 32)
		if err == nil && id > 0 {
			clients = append(clients, int32(id))
		}
	}
	var floor uint64
	var markRev int64
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		floor, err = strconv.ParseUint(string(kvs[0].Value), 10, 64)
		if err != nil {
			return fmt.Errorf("token mark %q: %w", kvs[0].Value, err)
		}
		markRev = kvs[0].ModRevision
	} else {
		// A new cluster: start where a standalone server would (the time
		// in microseconds), so that tokens continue above a standalone
		// server's this cluster replaces.
		floor = uint64(n.cfg.Now().UnixMicro())
	}
	n.mu.Lock()
	n.key, n.rev = key, rev
	n.mu.Unlock()
	ceil, err := n.reserve(ctx, guard, floor+uint64(math.MaxUint32), markRev)
	if err != nil {
		return fmt.Errorf("reserve tokens: %w", err)
	}
	var objs []dlockserver.ObjectRecord
	lctx, lcancel := context.WithTimeout(ctx, n.cfg.TTL)
	if n.cfg.DurableObjects {
		objs, err = n.loadObjects(lctx, guard)
	} else {
		err = n.dropObjects(lctx, guard)
	}
	lcancel()
	if err != nil {
		return err
	}
	if time.Now().After(fence) {
		return errors.New("fence passed before serving")
	}
	// A shard's primary serves with the newest map: a move may have taken
	// slots away while this member was campaigning.
	var shards ShardsStatus
	if n.cfg.Shard != "" {
		if shards, err = n.applyLatest(ctx, srv); err != nil {
			return fmt.Errorf("read the slot map before serving: %w", err)
		}
	}
	srv.Promote(dlockserver.Promotion{Epoch: uint64(rev), Fence: fence, Clients: clients,
		TokenFloor: floor, TokenCeiling: ceil, Suspend: n.cfg.TTL / 2,
		DurableObjects: n.cfg.DurableObjects, Objects: objs})
	n.cfg.Logger.Info("ha: primary", "epoch", rev, "clients", len(clients), "token_floor", floor)
	n.afterMap(ctx, srv, shards)

	// Keep the fence ahead. A failed keepalive is retried: the server stops
	// serving by itself at the fence, resumes if a keepalive gets through
	// within TTL/2 after it (an etcd leader election stalls keepalives but
	// expires no lease), and steps down after that.
	tick := time.NewTicker(n.cfg.TTL / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			// (The session's own keepalive gives up after a TTL without
			// answers; ours decides, on whether etcd still has the lease.)
		}
		if srv.Epoch() != uint64(rev) {
			return errors.New("stepped down")
		}
		at, err := n.keepAlive(ctx, sess.Lease())
		if err != nil {
			n.cfg.Logger.Warn("ha: keepalive failed", "err", err)
			if errors.Is(err, errLeaseGone) {
				return err
			}
			continue
		}
		srv.ExtendFence(at)
	}
}

var errLeaseGone = errors.New("lease expired")

// keepAlive renews the lease once and returns the fence it allows: the
// send time plus the granted TTL minus the margin.
func (n *Node) keepAlive(ctx context.Context, lease clientv3.LeaseID) (time.Time, error) {
	kctx, cancel := context.WithTimeout(ctx, n.cfg.TTL/4)
	defer cancel()
	sent := time.Now()
	resp, err := n.cli.KeepAliveOnce(kctx, lease)
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return time.Time{}, errLeaseGone
		}
		return time.Time{}, err
	}
	if resp.TTL <= 0 {
		return time.Time{}, errLeaseGone
	}
	return sent.Add(time.Duration(resp.TTL)*time.Second - n.cfg.Margin), nil
}

// reserve moves the token mark to need (never backwards) in a transaction
// guarded by the leader key, and returns the mark.
func (n *Node) reserve(ctx context.Context, guard clientv3.Cmp, need uint64, markRev int64) (uint64, error) {
	for i := 0; i < 10; i++ {
		rctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
		resp, err := n.cli.Txn(rctx).If(guard, clientv3.Compare(clientv3.ModRevision(n.tokensKey()), "=", markRev)).
			Then(clientv3.OpPut(n.tokensKey(), strconv.FormatUint(need, 10))).
			Else(clientv3.OpGet(n.tokensKey())).Commit()
		cancel()
		if err != nil {
			return 0, err
		}
		if resp.Succeeded {
			return need, nil
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		if len(kvs) == 0 {
			if markRev == 0 {
				return 0, errors.New("not the leader")
			}
			markRev = 0
			continue
		}
		mark, err := strconv.ParseUint(string(kvs[0].Value), 10, 64)
		if err != nil {
			return 0, err
		}
		if kvs[0].ModRevision == markRev {
			return 0, errors.New("not the leader")
		}
		if mark >= need {
			return mark, nil
		}
		markRev = kvs[0].ModRevision
	}
	return 0, errors.New("token mark contended")
}

// guard returns the leader-key comparison of the current term.
func (n *Node) guard() (clientv3.Cmp, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.key == "" {
		return clientv3.Cmp{}, errors.New("ha: not the primary")
	}
	return clientv3.Compare(clientv3.CreateRevision(n.key), "=", n.rev), nil
}

// Register records client id (dlockserver.Coordinator).
func (n *Node) Register(ctx context.Context, id int32) error {
	return n.guarded(ctx, clientv3.OpPut(n.clientsKey()+strconv.Itoa(int(id)), ""))
}

// Deregister forgets client id (dlockserver.Coordinator).
func (n *Node) Deregister(ctx context.Context, id int32) error {
	return n.guarded(ctx, clientv3.OpDelete(n.clientsKey()+strconv.Itoa(int(id))))
}

func (n *Node) guarded(ctx context.Context, op clientv3.Op) error {
	g, err := n.guard()
	if err != nil {
		return err
	}
	resp, err := n.cli.Txn(ctx).If(g).Then(op).Commit()
	if err != nil {
		return fmt.Errorf("ha: etcd: %w", err)
	}
	if !resp.Succeeded {
		return errors.New("ha: not the primary any more")
	}
	return nil
}

// ReserveTokens moves the token mark to at least need
// (dlockserver.Coordinator).
func (n *Node) ReserveTokens(ctx context.Context, need uint64) (uint64, error) {
	g, err := n.guard()
	if err != nil {
		return 0, err
	}
	resp, err := n.cli.Get(ctx, n.tokensKey())
	if err != nil {
		return 0, err
	}
	var rev int64
	if len(resp.Kvs) > 0 {
		rev = resp.Kvs[0].ModRevision
	}
	return n.reserve(ctx, g, need, rev)
}

// Member is one server of a cluster as etcd knows it.
type Member struct {
	Addr string // advertised address
	// Epoch is the revision of its election key: the primary's epoch.
	Epoch int64
}

// Status is the cluster as etcd knows it.
type Status struct {
	Primary   *Member  // nil while none is elected
	Standbys  []Member // campaigning members, next in line first
	Clients   int      // registered clients
	TokenMark uint64   // saved fencing-token mark
}

// ReadStatus reads cluster's state from etcd.
func ReadStatus(ctx context.Context, cli *clientv3.Client, cluster string) (Status, error) {
	pfx := Keys(cluster)
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(pfx+"election", clientv3.WithPrefix()),
		clientv3.OpGet(pfx+"clients/", clientv3.WithPrefix(), clientv3.WithCountOnly()),
		clientv3.OpGet(pfx+"tokens")).Commit()
	if err != nil {
		return Status{}, err
	}
	var st Status
	var ms []Member
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		ms = append(ms, Member{Addr: string(kv.Value), Epoch: kv.CreateRevision})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Epoch < ms[j].Epoch })
	if len(ms) > 0 {
		st.Primary = &ms[0]
		st.Standbys = ms[1:]
	}
	st.Clients = int(resp.Responses[1].GetResponseRange().Count)
	if kvs := resp.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
		st.TokenMark, _ = strconv.ParseUint(string(kvs[0].Value), 10, 64)
	}
	return st, nil
}
