package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Shards joining and leaving.
//
// A shard joins when its first member campaigns (dlockd -shard NAME) and
// the slot map has no place for it. With Config.AutoRebalance its primary
// then asks for its even share itself: it plans the split (Plan), and
// proposes the one move that gives its shard slots with MoveSlots, in a
// transaction that holds only while the slot map is the one planned from,
// no other move runs, and it is still its shard's primary. Several shards
// joining at once propose concurrently; etcd commits one move at a time,
// and the others plan again once it is done. It proposes nothing while a
// shard of the map has no primary: that shard's slots stay where they are
// (its standbys take over, or it comes back), since moving them away needs
// their source to let go of its holds.
//
// A shard leaves only on purpose: RemoveShard (dlockctl cluster remove)
// writes a removal marker, removed/<shard>, then moves the shard's slots
// to the others evenly, one move at a time, each waiting for the shard's
// holds in those slots to end as any move does, and finally deletes the
// shard from the map. A marker stands for the members that campaigned when
// it was written: a member that campaigns later (its election key is
// newer) joins again, and the marker is deleted before that shard is given
// slots. A shard that is merely down is never treated as leaving.

// RemovedKey returns the prefix of cluster's removal markers.
func RemovedKey(cluster string) string { return Keys(cluster) + "removed/" }

// Balance is a sharded cluster as a rebalance sees it.
type Balance struct {
	Status ShardsStatus
	// Joined are the shards that campaign without a place in the map (and
	// were not removed), in name order.
	Joined []string
	// Leaving are the shards of the map that are being removed; Removed
	// the shards out of the map whose members, campaigning still, were
	// removed (stop them). Both in name order.
	Leaving, Removed []string
	// Down are the shards of the map without a primary.
	Down []string
	// stale maps joined shards to the revision of an old removal marker,
	// deleted before they get slots.
	stale map[string]int64
}

// ReadBalance reads cluster's map, its shards' members and its removal
// markers.
func ReadBalance(ctx context.Context, cli *clientv3.Client, cluster string) (Balance, error) {
	b := Balance{stale: map[string]int64{}}
	st, err := ReadShards(ctx, cli, cluster)
	if err != nil {
		return b, err
	}
	b.Status = st
	pfx := Keys(cluster) + "shards/"
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(pfx, clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(RemovedKey(cluster), clientv3.WithPrefix(), clientv3.WithKeysOnly())).Commit()
	if err != nil {
		return b, err
	}
	newest := map[string]int64{} // shard → newest election key's creation
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		name, rest, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), pfx), "/")
		if ok && strings.HasPrefix(rest, "election/") && checkShardName(name) == nil {
			newest[name] = max(newest[name], kv.CreateRevision)
		}
	}
	marker := map[string]int64{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		marker[strings.TrimPrefix(string(kv.Key), RemovedKey(cluster))] = kv.ModRevision
	}
	inMap := map[string]bool{}
	for _, s := range st.Shards {
		inMap[s.Name] = true
		if _, ok := marker[s.Name]; ok {
			b.Leaving = append(b.Leaving, s.Name)
		}
		if s.Primary == nil {
			b.Down = append(b.Down, s.Name)
		}
	}
	for name, rev := range newest {
		if inMap[name] {
			continue
		}
		if m, ok := marker[name]; ok && rev < m {
			b.Removed = append(b.Removed, name)
			continue
		} else if ok {
			b.stale[name] = m
		}
		b.Joined = append(b.Joined, name)
	}
	sort.Strings(b.Joined)
	sort.Strings(b.Removed)
	return b, nil
}

// Plan returns the moves that split the slots evenly between the shards of
// the map that are not leaving and the shards that joined: leaving shards
// give all their slots, the most loaded shards their highest ones, and
// each move goes to one shard (see Rebalance). No move: even already.
func Plan(b Balance) []Move {
	leaving := map[string]bool{}
	for _, s := range b.Leaving {
		leaving[s] = true
	}
	st := b.Status
	st.Shards = nil
	for _, s := range b.Status.Shards {
		if !leaving[s.Name] {
			st.Shards = append(st.Shards, s)
		}
	}
	if len(st.Shards)+len(b.Joined) == 0 {
		return nil
	}
	// The slots of leaving shards are spare to the planner.
	return Rebalance(st, b.Joined)
}

// startMove proposes move p of plan b: it deletes the target's stale
// removal marker, then moves the slots, provided that the target still has
// a member campaigning and that guards hold.
func startMove(ctx context.Context, cli *clientv3.Client, cluster string, b Balance, p Move, guards ...clientv3.Cmp) (Move, error) {
	if rev, ok := b.stale[p.To]; ok {
		key := RemovedKey(cluster) + p.To
		if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpDelete(key)).Commit(); err != nil {
			return Move{}, err
		}
	}
	// The target and every source campaign still (a source without a
	// primary could not let go of its holds: the move would wait for it).
	up := func(shard string) clientv3.Cmp {
		return clientv3.Compare(clientv3.CreateRevision(ShardKeys(cluster, shard)+"election"), ">", 0).WithPrefix()
	}
	guards = append(guards, up(p.To))
	for _, s := range b.Status.Shards {
		for _, r := range s.Slots {
			if s.Name != p.To && overlaps(r, p.Slots) {
				guards = append(guards, up(s.Name))
				break
			}
		}
	}
	return MoveSlots(ctx, cli, cluster, p.Slots, p.To, guards...)
}

// StartMove proposes move p of plan b (as dlockctl cluster rebalance does):
// the target must still campaign, and the map must be the one planned
// from.
func StartMove(ctx context.Context, cli *clientv3.Client, cluster string, b Balance, p Move) (Move, error) {
	return startMove(ctx, cli, cluster, b, p)
}

// WaitMove waits until the target of mv serves its slots (its move record
// is gone).
func WaitMove(ctx context.Context, cli *clientv3.Client, cluster string, version uint64) error {
	for {
		resp, err := cli.Get(ctx, MovesKey(cluster), clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return err
		}
		done := true
		for _, kv := range resp.Kvs {
			done = done && uint64(kv.ModRevision) != version
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RemoveShard removes shard from cluster on purpose: it marks the shard as
// leaving, moves all its slots to the other shards evenly (one move at a
// time, waiting for each; progress reports each move as it starts and
// ends), then deletes the shard from the map. Its members may stop once it
// returns. It waits, until ctx ends, while a shard of the map has no
// primary or another move runs. It refuses to remove the last shard.
func RemoveShard(ctx context.Context, cli *clientv3.Client, cluster, shard string, progress func(mv Move, done bool)) error {
	if err := checkShardName(shard); err != nil {
		return err
	}
	b, err := ReadBalance(ctx, cli, cluster)
	if err != nil {
		return err
	}
	if b.Status.Version == 0 {
		return fmt.Errorf("ha: cluster %s has no slot map", cluster)
	}
	if !b.inMap(shard) {
		return fmt.Errorf("ha: shard %s is not in cluster %s's slot map", shard, cluster)
	}
	others := 0
	for _, s := range b.Status.Shards {
		if s.Name != shard && !contains(b.Leaving, s.Name) {
			others++
		}
	}
	if others+len(b.Joined) == 0 {
		return fmt.Errorf("ha: shard %s is the last shard of cluster %s: it cannot be removed", shard, cluster)
	}
	key := RemovedKey(cluster) + shard
	if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, "")).Commit(); err != nil {
		return err
	}
	for {
		if b, err = ReadBalance(ctx, cli, cluster); err != nil {
			return err
		}
		if !b.inMap(shard) {
			return nil // removed (by a concurrent remove)
		}
		var wait error
		switch {
		case len(b.Status.Moves) > 0:
			wait = WaitMove(ctx, cli, cluster, b.Status.Moves[0].Version)
		case len(b.Down) > 0:
			wait = fmt.Errorf("shards %s have no primary", strings.Join(b.Down, ","))
		case b.owned(shard) == 0:
			if err := forgetShard(ctx, cli, cluster, b, shard); err == nil || ctx.Err() != nil {
				return err
			}
		default:
			plan := Plan(b)
			if len(plan) == 0 {
				return fmt.Errorf("ha: no plan moves shard %s's slots", shard)
			}
			mv, err := startMove(ctx, cli, cluster, b, plan[0])
			if err != nil {
				wait = err
				break
			}
			if progress != nil {
				progress(mv, false)
			}
			if err := WaitMove(ctx, cli, cluster, mv.Version); err != nil {
				return fmt.Errorf("ha: the move to %s is still in progress: %w", mv.To, err)
			}
			if progress != nil {
				progress(mv, true)
			}
			continue
		}
		select {
		case <-ctx.Done():
			if wait != nil {
				return fmt.Errorf("ha: removing shard %s: %v: %w", shard, wait, ctx.Err())
			}
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// forgetShard deletes shard, which owns no slot, from the map.
func forgetShard(ctx context.Context, cli *clientv3.Client, cluster string, b Balance, shard string) error {
	a := Assignment{}
	for _, s := range b.Status.Shards {
		if s.Name != shard {
			a[s.Name] = s.Slots
			if a[s.Name] == nil {
				a[s.Name] = Ranges{}
			}
		}
	}
	val, err := json.Marshal(a)
	if err != nil {
		return err
	}
	key := SlotsKey(cluster)
	tr, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", int64(b.Status.Version)),
		clientv3.Compare(clientv3.CreateRevision(MovesKey(cluster)), "=", 0).WithPrefix()).
		Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return err
	}
	if !tr.Succeeded {
		return errors.New("ha: the slot map changed meanwhile")
	}
	return nil
}

func (b Balance) inMap(shard string) bool {
	for _, s := range b.Status.Shards {
		if s.Name == shard {
			return true
		}
	}
	return false
}

// owned counts shard's slots in the map.
func (b Balance) owned(shard string) int {
	n := 0
	for _, s := range b.Status.Shards {
		if s.Name == shard {
			for _, r := range s.Slots {
				n += r[1] - r[0] + 1
			}
		}
	}
	return n
}

// overlaps reports whether r shares a slot with rs.
func overlaps(r [2]int, rs Ranges) bool {
	for _, q := range rs {
		if r[0] <= q[1] && q[0] <= r[1] {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// joinState tracks the node's request for its shard's share of the slots.
type joinState struct {
	running, told bool
}

// startJoin, run after the server applied a map as its shard's primary,
// starts asking for the shard's share of the slots when the map has no
// place for the shard and Config.AutoRebalance is set.
func (n *Node) startJoin(ctx context.Context, st ShardsStatus) {
	if !n.cfg.AutoRebalance || n.cfg.Shard == "" || st.Version == 0 {
		return
	}
	for _, s := range st.Shards {
		if s.Name == n.cfg.Shard {
			return
		}
	}
	n.mu.Lock()
	start := !n.join.running
	n.join.running = true
	n.mu.Unlock()
	if !start {
		return
	}
	n.joinWG.Add(1)
	go func() {
		defer n.joinWG.Done()
		n.askShare(ctx)
		n.mu.Lock()
		n.join.running = false
		n.mu.Unlock()
	}()
}

// askShare proposes, as its shard's primary, the move that gives the
// shard its even share of the slots, once no other move runs and every
// shard of the map has a primary. It returns once the map has a place for
// the shard, when the shard was removed, when the node is no longer the
// primary, or when ctx ends.
func (n *Node) askShare(ctx context.Context) {
	cluster, self := n.cfg.Cluster, n.cfg.Shard
	var waitingFor string
	for ctx.Err() == nil {
		g, err := n.guard()
		if err != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
		b, err := ReadBalance(rctx, n.cli, cluster)
		why := ""
		switch {
		case err != nil:
			why = err.Error()
		case b.inMap(self):
			cancel()
			return
		case contains(b.Removed, self):
			cancel()
			n.mu.Lock()
			told := n.join.told
			n.join.told = true
			n.mu.Unlock()
			if !told {
				n.cfg.Logger.Warn("ha: this shard was removed from the cluster; stop its members (started again, a member joins again)", "shard", self)
			}
			return
		case !contains(b.Joined, self):
			why = "this shard's election is not visible yet"
		case len(b.Status.Moves) > 0:
			why = "another move is in progress"
		case len(b.Down) > 0:
			why = "shards " + strings.Join(b.Down, ",") + " have no primary"
		default:
			for _, p := range Plan(b) {
				if p.To != self {
					continue
				}
				mv, err := startMove(rctx, n.cli, cluster, b, p, g)
				if err != nil {
					why = err.Error()
					break
				}
				cancel()
				n.cfg.Logger.Info("ha: joined the cluster: moving this shard its share of the slots",
					"slots", mv.Slots, "from", mv.From, "version", mv.Version)
				return
			}
			if why == "" {
				why = "the plan gives this shard no slot"
			}
		}
		cancel()
		if why != waitingFor {
			waitingFor = why
			n.cfg.Logger.Info("ha: joined the cluster; waiting to be given slots", "shard", self, "reason", why)
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}
