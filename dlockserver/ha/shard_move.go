package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlock-io/dlock/dlockserver"
)

// Moving slots (the protocol is described in dlockserver/shard_move.go).
//
// Keys, under /dlock/<cluster>/:
//
//	moves/<target>         the move record: {"slots":[[first,last],...],"from":["a",...]};
//	                       its modification revision is the move's map version
//	shards/<shard>/applied the map version the shard's primary applied last,
//	                       written under its leader key
//
// One move at a time per cluster: MoveSlots refuses while a record exists.
// The target's primary deletes the record when it starts serving the slots.

// MovesKey returns the prefix of cluster's move records.
func MovesKey(cluster string) string { return Keys(cluster) + "moves/" }

// moveRecord is the value of a move record.
type moveRecord struct {
	Slots Ranges   `json:"slots"`
	From  []string `json:"from"`
}

// Move is a slot move in progress.
type Move struct {
	To    string
	From  []string
	Slots Ranges
	// Version is the map version the move wrote.
	Version uint64
}

// ranges turns a set of slots into sorted inclusive ranges.
func ranges(set []bool) Ranges {
	var r Ranges
	for k := 0; k < len(set); k++ {
		if !set[k] {
			continue
		}
		first := k
		for k+1 < len(set) && set[k+1] {
			k++
		}
		r = append(r, [2]int{first, k})
	}
	return r
}

// MoveSlots moves slots to shard to: in one transaction it rewrites the
// slot map and writes the move record. It returns the move, with an empty
// Slots when to owns them all already. It fails while another move is in
// progress, or when the map changed meanwhile, or when one of conds does
// not hold (they join the transaction's conditions).
func MoveSlots(ctx context.Context, cli *clientv3.Client, cluster string, slots Ranges, to string, conds ...clientv3.Cmp) (Move, error) {
	if err := checkShardName(to); err != nil {
		return Move{}, err
	}
	key := SlotsKey(cluster)
	resp, err := cli.Txn(ctx).Then(clientv3.OpGet(key),
		clientv3.OpGet(MovesKey(cluster), clientv3.WithPrefix(), clientv3.WithCountOnly())).Commit()
	if err != nil {
		return Move{}, err
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return Move{}, errors.New("ha: no slot map (not a sharded cluster)")
	}
	if n := resp.Responses[1].GetResponseRange().Count; n > 0 {
		return Move{}, errors.New("ha: a slot move is in progress; try again when it has finished")
	}
	var a Assignment
	if err := json.Unmarshal(kvs[0].Value, &a); err != nil {
		return Move{}, fmt.Errorf("ha: slot map: %w", err)
	}
	names, owner, err := a.slots()
	if err != nil {
		return Move{}, err
	}
	moving := make([]bool, dlockserver.NumSlots)
	from := map[string]bool{}
	for _, r := range slots {
		if r[0] < 0 || r[1] >= dlockserver.NumSlots || r[0] > r[1] {
			return Move{}, fmt.Errorf("ha: bad slot range %v", r)
		}
		for k := r[0]; k <= r[1]; k++ {
			if o := owner[k]; o < 0 || names[o] != to {
				moving[k] = true
				if o >= 0 {
					from[names[o]] = true
				}
			}
		}
	}
	mv := Move{To: to, Slots: ranges(moving)}
	if len(mv.Slots) == 0 {
		return mv, nil
	}
	for s := range from {
		mv.From = append(mv.From, s)
	}
	sort.Strings(mv.From)
	// The new assignment: every shard keeps what does not move.
	na := Assignment{}
	for i, s := range names {
		keep := make([]bool, dlockserver.NumSlots)
		for k, o := range owner {
			keep[k] = o == i && !moving[k]
		}
		if r := ranges(keep); len(r) > 0 || s != to {
			na[s] = r
		}
	}
	keep := make([]bool, dlockserver.NumSlots)
	for k, o := range owner {
		keep[k] = moving[k] || o >= 0 && names[o] == to
	}
	na[to] = ranges(keep)
	for s, r := range na {
		if r == nil {
			na[s] = Ranges{}
		}
	}
	val, err := json.Marshal(na)
	if err != nil {
		return Move{}, err
	}
	rec, err := json.Marshal(moveRecord{Slots: mv.Slots, From: mv.From})
	if err != nil {
		return Move{}, err
	}
	conds = append(conds, clientv3.Compare(clientv3.ModRevision(key), "=", kvs[0].ModRevision),
		clientv3.Compare(clientv3.CreateRevision(MovesKey(cluster)+to), "=", 0))
	tr, err := cli.Txn(ctx).If(conds...).
		Then(clientv3.OpPut(key, string(val)), clientv3.OpPut(MovesKey(cluster)+to, string(rec))).Commit()
	if err != nil {
		return Move{}, err
	}
	if !tr.Succeeded {
		return Move{}, errors.New("ha: the slot map changed meanwhile; try again")
	}
	mv.Version = uint64(tr.Header.Revision)
	return mv, nil
}

// readMoves reads the move records in resp (a range response of the moves
// prefix).
func readMoves(cluster string, kvs []*moveKV) ([]Move, error) {
	var ms []Move
	for _, kv := range kvs {
		var rec moveRecord
		if err := json.Unmarshal(kv.value, &rec); err != nil {
			return nil, fmt.Errorf("ha: move record %s: %w", kv.key, err)
		}
		ms = append(ms, Move{To: strings.TrimPrefix(kv.key, MovesKey(cluster)), From: rec.From,
			Slots: rec.Slots, Version: uint64(kv.rev)})
	}
	return ms, nil
}

type moveKV struct {
	key   string
	value []byte
	rev   int64
}

// moveState tracks the moves this node's primary is receiving.
type moveState struct {
	mu      sync.Mutex
	running map[uint64]bool // by move version
	acking  bool            // acknowledgeDrained runs
	wg      sync.WaitGroup
}

// afterMap runs after the server applied a map (and after a promotion): as
// the shard's primary, acknowledge the map once drained and receive the
// moves to this shard.
func (n *Node) afterMap(ctx context.Context, srv *dlockserver.Server, st ShardsStatus) {
	if n.cfg.Shard == "" {
		return
	}
	if _, err := n.guard(); err != nil {
		return
	}
	n.startJoin(ctx, st) // (rebalance.go)
	ms := &n.moves
	ms.mu.Lock()
	startAck := !ms.acking
	ms.acking = true
	ms.mu.Unlock()
	if startAck {
		ms.wg.Add(1)
		go func() {
			defer ms.wg.Done()
			n.acknowledgeDrained(ctx, srv)
			ms.mu.Lock()
			ms.acking = false
			ms.mu.Unlock()
		}()
	}
	for _, mv := range st.Moves {
		if mv.To != n.cfg.Shard {
			continue
		}
		ms.mu.Lock()
		if ms.running == nil {
			ms.running = map[uint64]bool{}
		}
		start := !ms.running[mv.Version]
		ms.running[mv.Version] = true
		ms.mu.Unlock()
		if !start {
			continue
		}
		ms.wg.Add(1)
		go func() {
			defer ms.wg.Done()
			n.receive(ctx, srv, mv)
			ms.mu.Lock()
			delete(ms.running, mv.Version)
			ms.mu.Unlock()
		}()
	}
}

// appliedKey is where a shard's primary acknowledges the map it applied.
func appliedKey(cluster, shard string) string { return ShardKeys(cluster, shard) + "applied" }

// acknowledge records, as the shard's primary, that the server applied map
// version v and holds nothing the map took away from its shard.
func (n *Node) acknowledge(ctx context.Context, v uint64) error {
	key := appliedKey(n.cfg.Cluster, n.cfg.Shard)
	err := n.guarded(ctx, clientv3.OpPut(key, strconv.FormatUint(v, 10)))
	if err != nil && ctx.Err() == nil {
		n.cfg.Logger.Warn("ha: could not acknowledge the slot map", "version", v, "err", err)
	}
	return err
}

// acknowledgeDrained acknowledges the map the server applied once it is a
// ready primary holding nothing in slots taken away from its shard
// (unlocks drain them; leases and sessions end them). It returns then, when
// the node is no longer the primary, or when ctx ends.
func (n *Node) acknowledgeDrained(ctx context.Context, srv *dlockserver.Server) {
	logged := false
	for {
		if _, err := n.guard(); err != nil {
			return
		}
		v := srv.ShardMapVersion()
		held, ready := srv.DisownedHeld()
		if ready && held == 0 {
			actx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
			err := n.acknowledge(actx, v)
			cancel()
			if err == nil && srv.ShardMapVersion() == v {
				return
			}
		} else if ready && !logged {
			logged = true
			n.cfg.Logger.Info("ha: slots moved away; waiting for their holds to end", "locks_held", held, "map_version", v)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// sourceReleased reports whether shard src's current primary acknowledged
// map version v or later (a primary elected after the acknowledgement read
// the map before serving), and returns src's saved token mark.
func (n *Node) sourceReleased(ctx context.Context, src string, v uint64) (bool, uint64, error) {
	pfx := ShardKeys(n.cfg.Cluster, src)
	resp, err := n.cli.Txn(ctx).Then(
		clientv3.OpGet(pfx+"election", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1)),
		clientv3.OpGet(appliedKey(n.cfg.Cluster, src)),
		clientv3.OpGet(pfx+"tokens")).Commit()
	if err != nil {
		return false, 0, err
	}
	el := resp.Responses[0].GetResponseRange().Kvs
	ack := resp.Responses[1].GetResponseRange().Kvs
	if len(el) == 0 || len(ack) == 0 {
		return false, 0, nil // no primary to acknowledge (yet)
	}
	av, err := strconv.ParseUint(string(ack[0].Value), 10, 64)
	if err != nil || av < v || ack[0].ModRevision < el[0].CreateRevision {
		return false, 0, nil
	}
	var mark uint64
	if kvs := resp.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
		if mark, err = strconv.ParseUint(string(kvs[0].Value), 10, 64); err != nil {
			return false, 0, fmt.Errorf("ha: token mark of %s: %w", src, err)
		}
	}
	return true, mark, nil
}

// receive runs the target's side of move mv as the shard's primary: wait
// for every source to stop serving the slots, raise the token floor above
// their marks, wait the grace, then delete the record so that every member
// serves the slots. It returns when done, when the node stops being the
// primary, or when ctx ends.
func (n *Node) receive(ctx context.Context, srv *dlockserver.Server, mv Move) {
	n.cfg.Logger.Info("ha: receiving slots", "slots", mv.Slots, "from", mv.From, "version", mv.Version)
	var floor uint64
	for _, src := range mv.From {
		for {
			if _, err := n.guard(); err != nil {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
			ok, mark, err := n.sourceReleased(rctx, src, mv.Version)
			cancel()
			if ok {
				floor = max(floor, mark)
				break
			}
			if err != nil && ctx.Err() == nil {
				n.cfg.Logger.Warn("ha: move: reading the source", "source", src, "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	srv.RaiseTokenFloor(floor)
	// The shard's saved mark too, so that a primary elected after the move
	// also starts above the sources' marks.
	for {
		rctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
		_, err := n.ReserveTokens(rctx, floor)
		cancel()
		if err == nil {
			break
		}
		if _, gerr := n.guard(); gerr != nil || ctx.Err() != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	grace := srv.MoveGrace()
	n.cfg.Logger.Info("ha: move: sources released the slots; waiting the grace", "token_floor", floor, "grace", grace)
	select {
	case <-ctx.Done():
		return
	case <-time.After(grace):
	}
	for ctx.Err() == nil {
		g, err := n.guard()
		if err != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, n.cfg.TTL)
		key := MovesKey(n.cfg.Cluster) + mv.To
		_, err = n.cli.Txn(rctx).If(g, clientv3.Compare(clientv3.ModRevision(key), "=", int64(mv.Version))).
			Then(clientv3.OpDelete(key)).Commit()
		cancel()
		if err == nil {
			n.cfg.Logger.Info("ha: move done: serving the slots", "slots", mv.Slots)
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// JoinedShards lists, in name order, the shards that have a member
// campaigning (dlockd -shard NAME) but no place in cluster's slot map yet:
// shards that joined after the map was written. A move gives them slots.
func JoinedShards(ctx context.Context, cli *clientv3.Client, cluster string) ([]string, error) {
	b, err := ReadBalance(ctx, cli, cluster) // (rebalance.go: removed shards are not joined)
	return b.Joined, err
}

// Rebalance plans moves that make every shard's share of the slots even:
// the shards of the map and those in joined, each owning NumSlots/n slots
// or one more. Overloaded shards give their highest slots; each move goes
// to one underloaded shard. It moves as few slots as it can; no move is
// returned when the split is even already.
func Rebalance(st ShardsStatus, joined []string) []Move {
	type load struct {
		name  string
		slots []int
	}
	var shards []*load
	for _, s := range st.Shards {
		l := &load{name: s.Name}
		for _, r := range s.Slots {
			for k := r[0]; k <= r[1]; k++ {
				l.slots = append(l.slots, k)
			}
		}
		shards = append(shards, l)
	}
	for _, j := range joined {
		shards = append(shards, &load{name: j})
	}
	n := len(shards)
	if n == 0 {
		return nil
	}
	// Shards sorted by load, most loaded first, get the "one more" shares.
	order := make([]*load, n)
	copy(order, shards)
	sort.SliceStable(order, func(i, j int) bool { return len(order[i].slots) > len(order[j].slots) })
	want := map[string]int{}
	for i, l := range order {
		want[l.name] = dlockserver.NumSlots / n
		if i < dlockserver.NumSlots%n {
			want[l.name]++
		}
	}
	var spare []int // slots overloaded shards give up, and unassigned ones
	owned := make([]bool, dlockserver.NumSlots)
	for _, l := range order {
		for _, k := range l.slots {
			owned[k] = true
		}
		if extra := len(l.slots) - want[l.name]; extra > 0 {
			spare = append(spare, l.slots[len(l.slots)-extra:]...)
		}
	}
	for k, o := range owned {
		if !o {
			spare = append(spare, k)
		}
	}
	sort.Ints(spare)
	var moves []Move
	for _, l := range shards {
		need := want[l.name] - len(l.slots)
		if need <= 0 || len(spare) == 0 {
			continue
		}
		need = min(need, len(spare))
		set := make([]bool, dlockserver.NumSlots)
		for _, k := range spare[:need] {
			set[k] = true
		}
		spare = spare[need:]
		moves = append(moves, Move{To: l.name, Slots: ranges(set)})
	}
	return moves
}
