package ha_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver/ha"
)

// TestSlotMoveUnderLoad: two shards, one dlockd each. Four clients contend
// for locks of one slot of shard s0 and write to a fenced store while
// "dlockctl cluster move" moves the slot to s1; a fifth client holds one of
// the locks from before the move until well into it. The store sees no two
// holders and no stale token; no hold is lost (every unlock succeeds, the
// long hold's too); while the move runs, s1 answers "not ready" for the
// slot; afterwards the locks are granted by s1 only, with tokens above s0's
// saved mark. Moved back, the slot is served by s0 again, above s1's mark.
func TestSlotMoveUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 3*time.Minute)
	c := newShardCluster(t, 2, 1)

	// Locks of one slot that s0 owns.
	var names []string
	var slot int
	r0 := c.router(ctx, c.addrs["s0"][0])
	for i := 0; names == nil && i < 1000; i++ {
		tag := fmt.Sprintf("{hot%d}", i)
		slot = dlock.SlotOf(tag)
		if r0.ShardOf(tag) == "s0" {
			for k := 0; k < 4; k++ {
				names = append(names, fmt.Sprintf("%s/%d", tag, k))
			}
		}
	}

	var store [4]fencedStore
	// The long hold, taken before the move.
	long := openServing(ctx, t, c.router(ctx, c.addrs["s0"][0]), names[3])
	if ok, err := long.TryLock(ctx); !ok || err != nil {
		t.Fatalf("the long hold: %v %v", ok, err)
	}
	store[3].enter(long.Token())
	var grants, revoked, notReady atomic.Int64
	var grantsBefore, highAfter, lowAfter atomic.Int64
	var moved atomic.Bool
	var s0Mark atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		r := c.router(ctx, c.addrs["s1"][0])
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ls [4]*dlock.Lock
			for n := 0; n < 1000000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				k := n % 4
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				var err error
				if ls[k] == nil {
					ls[k], err = r.OpenLock(cctx, names[k], dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
				}
				ok := false
				if err == nil {
					ok, err = ls[k].TryLock(cctx)
				}
				cancel()
				if errors.Is(err, dlock.ErrNotReady) {
					notReady.Add(1)
				}
				if err != nil {
					ls[k] = nil // moved (or frozen): open it again through the router
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if !ok {
					time.Sleep(time.Millisecond)
					continue
				}
				grants.Add(1)
				tok := ls[k].Token()
				switch {
				case !moved.Load():
					grantsBefore.Add(1)
				case tok > s0Mark.Load():
					highAfter.Add(1)
				default:
					lowAfter.Add(1)
				}
				store[k].enter(tok)
				time.Sleep(time.Millisecond)
				store[k].exit()
				uctx, cancel := context.WithTimeout(ctx, time.Second)
				err = ls[k].Unlock(uctx)
				cancel()
				if err != nil {
					revoked.Add(1) // a hold lost
					ls[k] = nil
				}
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	buildDlockctl(t) // (not while the move is timed)
	time.Sleep(time.Second)
	// The operator's command moves the slot and waits for the target.
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(buildDlockctl(t), append([]string{"cluster"}, args...)...).CombinedOutput()
		return string(out), err
	}
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := ctl("move", "-etcd", c.eps, "-cluster", c.name, "-wait", "-timeout", "60s",
			strconv.Itoa(slot), "s1")
		done <- result{out, err}
	}()
	// While it runs: the cluster shows the move, and a second move is
	// refused.
	var st ha.ShardsStatus
	for i := 0; i < 1500; i++ {
		if st = c.read(); len(st.Moves) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(st.Moves) != 1 || st.Moves[0].To != "s1" || len(st.Moves[0].From) != 1 || st.Moves[0].From[0] != "s0" ||
		len(st.Moves[0].Slots) != 1 || st.Moves[0].Slots[0] != [2]int{slot, slot} {
		t.Fatalf("moves in progress: %+v", st.Moves)
	}
	if out, err := ctl("-etcd", c.eps, "-cluster", c.name); err != nil || !strings.Contains(out, "moving   slots "+strconv.Itoa(slot)+" from s0 to s1") {
		t.Fatalf("dlockctl cluster during the move: %v\n%s", err, out)
	}
	if out, err := ctl("move", "-etcd", c.eps, "-cluster", c.name, strconv.Itoa(slot), "s0"); err == nil || !strings.Contains(out, "in progress") {
		t.Fatalf("a second move during the first: %v\n%s", err, out)
	}
	// The long hold ends after more than the target's grace (the 5 s
	// session timeout): the move waits for it, and its unlock succeeds on
	// s0.
	time.Sleep(7 * time.Second)
	if st = c.read(); len(st.Moves) != 1 {
		t.Fatalf("the move finished while s0 still had a hold in the slot: %+v", st.Moves)
	}
	store[3].exit()
	if err := long.Unlock(ctx); err != nil {
		t.Fatalf("unlocking the hold taken before the move: %v", err)
	}
	res := <-done
	if res.err != nil || !strings.Contains(res.out, "shard s1 serves slots "+strconv.Itoa(slot)) {
		t.Fatalf("dlockctl cluster move: %v\n%s", res.err, res.out)
	}
	if st = c.read(); len(st.Moves) != 0 {
		t.Fatalf("moves after the move: %+v", st.Moves)
	}
	for _, s := range st.Shards {
		if s.Name == "s0" {
			s0Mark.Store(s.TokenMark)
		}
		if s.Name == "s1" && !contains(s.Slots, slot) {
			t.Fatalf("s1's slots %v lack %d", s.Slots, slot)
		}
	}
	moved.Store(true)
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()

	t.Logf("grants %d (before the move finished %d, after it %d above s0's mark %d and %d not), holds lost %d, not-ready answers %d",
		grants.Load(), grantsBefore.Load(), highAfter.Load(), s0Mark.Load(), lowAfter.Load(), revoked.Load(), notReady.Load())
	for k := range store {
		s := &store[k]
		if s.overlaps != 0 || s.stale != 0 {
			t.Fatalf("lock %s: %d overlaps, %d stale tokens in %d writes", names[k], s.overlaps, s.stale, s.writes)
		}
	}
	if grantsBefore.Load() == 0 || highAfter.Load() == 0 {
		t.Fatalf("no grants on one side of the move: before %d, after %d", grantsBefore.Load(), highAfter.Load())
	}
	if revoked.Load() != 0 {
		t.Fatalf("%d unlocks failed: holds lost", revoked.Load())
	}
	if lowAfter.Load() != 0 {
		t.Fatalf("%d grants after the move with a token at or below s0's mark %d", lowAfter.Load(), s0Mark.Load())
	}
	if notReady.Load() == 0 {
		t.Fatal("the target never answered not ready while waiting its grace")
	}
	// The source's own map gives the slot to s1.
	m, err := dlock.FetchShardMap(ctx, c.addrs["s0"][0], nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Shards[m.Slots[slot]].Name; got != "s1" {
		t.Fatalf("s0's map gives slot %d to %s", slot, got)
	}
	// Moved back, the slot is served by s0 again, above s1's mark.
	mark1 := uint64(0)
	for _, s := range c.read().Shards {
		if s.Name == "s1" {
			mark1 = s.TokenMark
		}
	}
	if out, err := ctl("move", "-etcd", c.eps, "-cluster", c.name, "-wait", "-timeout", "60s", strconv.Itoa(slot), "s0"); err != nil {
		t.Fatalf("moving the slot back: %v\n%s", err, out)
	}
	rb := c.router(ctx, c.addrs["s1"][0])
	var back *dlock.Lock
	for i := 0; i < 100 && back == nil; i++ {
		back, err = rb.OpenLock(ctx, names[0], dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if back == nil {
		t.Fatalf("open after the move back: %v", err)
	}
	if ok, err := back.TryLock(ctx); !ok || err != nil || back.Token() <= mark1 {
		t.Fatalf("trylock after the move back: %v %v, token %d, s1's mark %d", ok, err, back.Token(), mark1)
	}
	if rb.ShardOf(names[0]) != "s0" {
		t.Fatalf("%s routes to %s after the move back", names[0], rb.ShardOf(names[0]))
	}
}

func contains(rs ha.Ranges, k int) bool {
	for _, r := range rs {
		if r[0] <= k && k <= r[1] {
			return true
		}
	}
	return false
}

// TestRebalanceJoinedShard: a third shard joins a two-shard cluster
// without -auto-rebalance; the cluster lists it as joined, and "dlockctl cluster rebalance" gives it a
// third of the slots through a move. A hold taken before, on a lock whose
// slot moves, is unlocked afterwards on its old shard; the lock is then
// opened and taken on the new shard.
func TestRebalanceJoinedShard(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 3*time.Minute)
	c := newShardCluster(t, 2, 1)
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(buildDlockctl(t), append([]string{"cluster"}, args...)...).CombinedOutput()
		return string(out), err
	}
	// Slot 1023 is s1's highest: the rebalance moves it.
	r := c.router(ctx, c.addrs["s0"][0])
	var name string
	for i := 0; name == "" && i < 100000; i++ {
		if n := fmt.Sprintf("join/%d", i); dlock.SlotOf(n) == 1023 {
			name = n
		}
	}
	l := openServing(ctx, t, r, name)
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatalf("hold before the rebalance: %v %v", ok, err)
	}

	addr := freeAddr(t)
	c.addrs["s2"] = []string{addr}
	c.procs["s2"] = []*proc{c.start("s2", addr, "-auto-rebalance=false")}
	var out string
	for i := 0; i < 300 && !strings.Contains(out, "joined   s2"); i++ {
		out, _ = ctl("-etcd", c.eps, "-cluster", c.name)
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "joined   s2") {
		t.Fatalf("dlockctl cluster does not list s2 as joined:\n%s", out)
	}
	done := make(chan error, 1)
	go func() {
		out, err := ctl("rebalance", "-etcd", c.eps, "-cluster", c.name, "-timeout", "90s")
		if err == nil && !strings.Contains(out, "shard s2 serves slots 342-511,853-1023") {
			err = fmt.Errorf("output:\n%s", out)
		}
		done <- err
	}()
	time.Sleep(time.Second)
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("unlocking the hold taken before the rebalance: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("dlockctl cluster rebalance: %v", err)
	}
	st := c.read()
	count := map[string]int{}
	for _, s := range st.Shards {
		for _, rg := range s.Slots {
			count[s.Name] += rg[1] - rg[0] + 1
		}
	}
	if count["s0"] != 342 || count["s1"] != 341 || count["s2"] != 341 || len(st.Moves) != 0 {
		t.Fatalf("after the rebalance: %v, moves %+v", count, st.Moves)
	}
	if out, err := ctl("rebalance", "-etcd", c.eps, "-cluster", c.name); err != nil || !strings.Contains(out, "evenly already") {
		t.Fatalf("a second rebalance: %v\n%s", err, out)
	}
	c.shards = append(c.shards, "s2")
	c.waitMaps(1)
	// The lock now lives on s2: the handle on s1 answers moved, a new open
	// goes to s2.
	if _, err := l.TryLock(ctx); !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("trylock on the old shard's handle: %v", err)
	}
	r2 := c.router(ctx, c.addrs["s2"][0])
	if got := r2.ShardOf(name); got != "s2" {
		t.Fatalf("%s routes to %s", name, got)
	}
	l2, err := r2.OpenLock(ctx, name, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l2.TryLock(ctx); !ok || err != nil {
		t.Fatalf("trylock on s2: %v %v", ok, err)
	}
	if l2.Token() <= l.Token() {
		t.Fatalf("token on s2 %d, not above s1's %d", l2.Token(), l.Token())
	}
}

// openServing opens name through r, retrying while its shard's primary is
// still starting (elected in etcd, not yet serving).
func openServing(ctx context.Context, t *testing.T, r *dlock.Router, name string) *dlock.Lock {
	t.Helper()
	var err error
	for i := 0; i < 200; i++ {
		var l *dlock.Lock
		if l, err = r.OpenLock(ctx, name, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}); err == nil {
			return l
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("open %s: %v", name, err)
	return nil
}
