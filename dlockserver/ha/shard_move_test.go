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
// the locks from before the move until after it (its hold is handed over to
// s1). The store sees no two holders and no stale token; no hold is lost
// (every unlock succeeds, the long hold's too); while the move runs, s1 answers "not ready" for the
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
	// The move does not wait for the long hold: its Router hands it over
	// to s1, where the hold goes on; its unlock succeeds there.
	res := <-done
	if res.err != nil || !strings.Contains(res.out, "shard s1 serves slots "+strconv.Itoa(slot)) {
		t.Fatalf("dlockctl cluster move: %v\n%s", res.err, res.out)
	}
	if !long.Held() {
		t.Fatal("the hold taken before the move was lost by it")
	}
	time.Sleep(500 * time.Millisecond) // s1 serves the slot: the workers contend, the long hold stays theirs to respect
	store[3].exit()
	if err := long.Unlock(ctx); err != nil {
		t.Fatalf("unlocking the hold taken before the move: %v", err)
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
// slot moves, is unlocked during the rebalance; the handle then takes the
// lock on the new shard, and so does a handle opened there.
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
	// The lock now lives on s2: the handle opened on s1 follows it there
	// (its Router hands it over), and a new open goes to s2.
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatalf("trylock on the handle opened on the old shard: %v %v", ok, err)
	}
	tok := l.Token()
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
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
	if l2.Token() <= tok {
		t.Fatalf("token on s2 %d, not above the previous grant's %d", l2.Token(), tok)
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

// TestSlotMoveHandsOverHolds: a move does not wait for holds to end. Two
// shards, one dlockd each; on a slot of s0, router A holds an RW lock (no
// lease: draining it would take forever), an Atomic lock and a Fair lock,
// A and router D share another RW lock, router C holds
// another RW lock and then closes without unlocking (a holder that dies),
// and router B keeps trying to take all three. "dlockctl cluster move"
// moves the slot to s1 and finishes within a bound although nobody
// unlocks: A's idle RW hold is handed over by A's Router on its own, A's
// extend of the Atomic lock during the move is handed over and works, C's
// hold ends with its session. Meanwhile B never gets a lock A holds; after
// the move A and D still hold theirs on s1 (B's trylocks fail there), the
// Fair hold extends, the unlocks succeed, and B then takes the locks with
// tokens above s0's mark; B takes C's lock too. D's handle opened before
// the move and first used after it, in a batch, follows the move.
func TestSlotMoveHandsOverHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 3*time.Minute)
	c := newShardCluster(t, 2, 1)
	ra := c.router(ctx, c.addrs["s0"][0])
	rb := c.router(ctx, c.addrs["s1"][0])
	rc := c.router(ctx, c.addrs["s1"][0])
	var tag string
	for i := 0; i < 1000 && tag == ""; i++ {
		if n := fmt.Sprintf("{keep%d}", i); ra.ShardOf(n) == "s0" {
			tag = n
		}
	}
	slot := dlock.SlotOf(tag)
	rwName, atName, deadName := tag+"/rw", tag+"/atomic", tag+"/dead"
	open := func(r *dlock.Router, name string, typ dlock.LockType) *dlock.Lock {
		t.Helper()
		var l *dlock.Lock
		var err error
		for i := 0; i < 200; i++ {
			if l, err = r.OpenLock(ctx, name, dlock.LockOptions{Type: typ, TTL: time.Minute}); err == nil {
				return l
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("open %s: %v", name, err)
		return nil
	}
	rwA, atA := open(ra, rwName, dlock.RW), open(ra, atName, dlock.Atomic)
	deadC := open(rc, deadName, dlock.RW)
	// A handle opened on s0 before the move and first used after it, in a
	// batch.
	rd := c.router(ctx, c.addrs["s0"][0])
	batchD := open(rd, tag+"/batch", dlock.Atomic)
	// A Fair lock A holds, and an RW lock A and D hold shared.
	fairName, shName := tag+"/fair", tag+"/shared"
	fairA, shA, shD := open(ra, fairName, dlock.Fair), open(ra, shName, dlock.RW), open(rd, shName, dlock.RW)
	if ok, err := fairA.TryLock(ctx); !ok || err != nil {
		t.Fatalf("trylock %s: %v %v", fairName, ok, err)
	}
	for _, l := range []*dlock.Lock{shA, shD} {
		if ok, err := l.TryRLock(ctx); !ok || err != nil {
			t.Fatalf("shared trylock %s: %v %v", shName, ok, err)
		}
	}
	for _, l := range []*dlock.Lock{rwA, atA, deadC} {
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatalf("trylock %s: %v %v", l.Name(), ok, err)
		}
	}
	tokRW, tokAt := rwA.Token(), atA.Token()

	// B contends all along; it must never get what A holds.
	var stolen, bGot atomic.Int64
	var aReleased atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ls := map[string]*dlock.Lock{}
		types := map[string]dlock.LockType{rwName: dlock.RW, atName: dlock.Atomic}
		for n := 0; n < 100000; n++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for _, name := range []string{rwName, atName} {
				cctx, cancel := context.WithTimeout(ctx, time.Second)
				var err error
				if ls[name] == nil {
					ls[name], err = rb.OpenLock(cctx, name, dlock.LockOptions{Type: types[name], TTL: time.Minute})
				}
				ok := false
				if err == nil {
					ok, err = ls[name].TryLock(cctx)
				}
				cancel()
				if err != nil {
					ls[name] = nil
					continue
				}
				if ok {
					if !aReleased.Load() {
						stolen.Add(1)
					}
					bGot.Add(1)
					ls[name].Unlock(ctx)
				}
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()

	buildDlockctl(t)
	rc.Close() // C dies holding deadName: its session on s0 ends in 5 s
	start := time.Now()
	done := make(chan error, 1)
	var out []byte
	go func() {
		var err error
		out, err = exec.Command(buildDlockctl(t), "cluster", "move", "-etcd", c.eps, "-cluster", c.name,
			"-wait", "-timeout", "60s", strconv.Itoa(slot), "s1").CombinedOutput()
		done <- err
	}()
	// An extend while the slot moves: handed over, then run on s1.
	for i := 0; i < 100 && len(c.read().Moves) == 0; i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if err := atA.Extend(ctx, time.Minute); err != nil {
		t.Fatalf("extend during the move: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("dlockctl cluster move: %v\n%s", err, out)
	}
	took := time.Since(start)
	// The bound: the holder's poll (0.5 s), the dead client's session (5 s),
	// the target's grace (5 s), etcd round trips and a loaded machine.
	if took > 25*time.Second {
		t.Fatalf("the move took %v", took)
	}
	t.Logf("the move took %v with an RW lock held throughout", took)
	if st := c.read(); len(st.Moves) != 0 {
		t.Fatalf("moves after the move: %+v", st.Moves)
	}
	var s0Mark uint64
	for _, s := range c.read().Shards {
		if s.Name == "s0" {
			s0Mark = s.TokenMark
		}
	}
	// A still holds both, on s1 now.
	if !rwA.Held() || !atA.Held() || rwA.Token() != tokRW || atA.Token() != tokAt {
		t.Fatalf("A's holds after the move: rw %v (token %d, was %d), atomic %v (token %d, was %d)",
			rwA.Held(), rwA.Token(), tokRW, atA.Held(), atA.Token(), tokAt)
	}
	for _, name := range []string{rwName, atName} {
		typ := dlock.RW
		if name == atName {
			typ = dlock.Atomic
		}
		l := open(rb, name, typ)
		if ok, err := l.TryLock(ctx); ok || err != nil {
			t.Fatalf("B's trylock of %s on s1 while A holds it: %v %v", name, ok, err)
		}
	}
	if err := atA.Extend(ctx, time.Minute); err != nil {
		t.Fatalf("extend after the move: %v", err)
	}
	close(stop)
	wg.Wait()
	aReleased.Store(true)
	if err := rwA.Unlock(ctx); err != nil {
		t.Fatalf("A's unlock of the RW lock after the move: %v", err)
	}
	if err := atA.Unlock(ctx); err != nil {
		t.Fatalf("A's unlock of the Atomic lock after the move: %v", err)
	}
	if stolen.Load() != 0 {
		t.Fatalf("B took a lock A held %d times", stolen.Load())
	}
	for _, name := range []string{rwName, atName, deadName} {
		typ := dlock.RW
		if name == atName {
			typ = dlock.Atomic
		}
		l := open(rb, name, typ)
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatalf("B's trylock of %s after A let go: %v %v", name, ok, err)
		}
		if l.Token() <= s0Mark {
			t.Fatalf("%s granted on s1 with token %d, not above s0's mark %d", name, l.Token(), s0Mark)
		}
	}
	if rb.ShardOf(rwName) != "s1" {
		t.Fatalf("%s routes to %s", rwName, rb.ShardOf(rwName))
	}
	// The Fair and the shared holds moved too.
	fairB, shB := open(rb, fairName, dlock.Fair), open(rb, shName, dlock.RW)
	if ok, err := fairB.TryLock(ctx); ok || err != nil {
		t.Fatalf("B's trylock of %s while A holds it: %v %v", fairName, ok, err) // (B queues: a ticket)
	}
	if ok, err := shB.TryLock(ctx); ok || err != nil {
		t.Fatalf("B's exclusive trylock of %s while A and D share it: %v %v", shName, ok, err)
	}
	if err := fairA.Extend(ctx, time.Minute); err != nil {
		t.Fatalf("extend of the Fair hold after the move: %v", err)
	}
	for _, l := range []*dlock.Lock{fairA, shA, shD} {
		if err := l.Unlock(ctx); err != nil {
			t.Fatalf("unlock of %s after the move: %v", l.Name(), err)
		}
	}
	for _, l := range []*dlock.Lock{fairB, shB} {
		if ok, err := l.TryLock(ctx); !ok || err != nil || l.Token() <= s0Mark {
			t.Fatalf("B's trylock of %s after the holders let go: %v %v, token %d (s0's mark %d)", l.Name(), ok, err, l.Token(), s0Mark)
		}
	}
	res := make([]dlock.Result, 1)
	if err := rd.BatchTryLock(ctx, []dlock.LockRequest{{Lock: batchD, Mode: dlock.Exclusive}}, res); err != nil || res[0].Status != dlock.Success {
		t.Fatalf("batch trylock of a handle opened before the move: %v %v", err, res[0].Status)
	}
	if batchD.Token() <= s0Mark {
		t.Fatalf("batch grant on s1 with token %d, not above s0's mark %d", batchD.Token(), s0Mark)
	}
	if err := rd.BatchUnlock(ctx, []*dlock.Lock{batchD}, res); err != nil || res[0].Status != dlock.Success {
		t.Fatalf("batch unlock: %v %v", err, res[0].Status)
	}
}

// TestRouterLearnsNewMembers: a Router dials a cluster whose shard s0 has
// one member and holds a lock there; a standby of s0 then joins. The
// Router gives s0's Client the new member (it asks for the map while it
// holds locks), so that when s0's primary is killed, the Client recovers
// on the standby, promoted, and keeps its hold; the recovery report names
// the shard.
func TestRouterLearnsNewMembers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 3*time.Minute)
	c := newShardCluster(t, 2, 1)
	reports := make(chan dlock.RecoveryReport, 16)
	r, err := dlock.DialRouter(ctx, &dlock.Config{Addrs: []string{c.addrs["s1"][0]}, AutoRecover: true,
		SessionTimeout: 10 * time.Second, DialTimeout: 2 * time.Second,
		OnRecover: func(rep dlock.RecoveryReport) { reports <- rep }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var name string
	for i := 0; name == "" && i < 1000; i++ {
		if n := fmt.Sprintf("members/%d", i); r.ShardOf(n) == "s0" {
			name = n
		}
	}
	l := openServing(ctx, t, r, name)
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatalf("trylock: %v %v", ok, err)
	}
	standby := freeAddr(t)
	c.addrs["s0"] = append(c.addrs["s0"], standby)
	c.procs["s0"] = append(c.procs["s0"], c.start("s0", standby))
	c.waitPrimaries(1)
	for i := 0; i < 300; i++ {
		m := r.Map()
		if s := m.Shards[m.Slots[dlock.SlotOf(name)]]; len(s.Addrs) == 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if m := r.Map(); len(m.Shards[m.Slots[dlock.SlotOf(name)]].Addrs) != 2 {
		t.Fatalf("the router's map lacks s0's standby: %+v", m.Shards)
	}
	time.Sleep(time.Second) // (the Client's members follow the map)
	c.procs["s0"][0].kill()
	select {
	case rep := <-reports:
		if rep.Err != nil || rep.Shard != "s0" || rep.Addr != standby || len(rep.Kept) != 1 || rep.Kept[0] != l {
			t.Fatalf("recovery: shard %q addr %s (standby %s), kept %d, lost %d, err %v",
				rep.Shard, rep.Addr, standby, len(rep.Kept), len(rep.Lost), rep.Err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("s0's client did not recover on the standby")
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("unlock after the failover: %v", err)
	}
}

// TestReconnectDuringMove: a plain Client (no Router: it cannot hand its
// holds over) holds an RW lock of a slot that then moves; its connection to
// the source breaks and it reconnects to the same server while the move
// waits for it. The source answers "moved" to its hold query; recovery
// keeps the hold nonetheless (it is real until unlocked), the unlock
// succeeds on the source, and the move then completes.
func TestReconnectDuringMove(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 3*time.Minute)
	c := newShardCluster(t, 2, 1)
	p := newProxy(t, c.addrs["s0"][0])
	reports := make(chan dlock.RecoveryReport, 4)
	k, err := dlock.Dial(ctx, p.ln.Addr().String(), &dlock.Config{AutoRecover: true, SessionTimeout: 5 * time.Second,
		OnRecover: func(rep dlock.RecoveryReport) { reports <- rep }})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	r := c.router(ctx, c.addrs["s0"][0])
	var name string
	for i := 0; name == "" && i < 1000; i++ {
		if n := fmt.Sprintf("{reconnect%d}", i); r.ShardOf(n) == "s0" {
			name = n
		}
	}
	l, err := k.OpenLock(ctx, name, dlock.LockOptions{Type: dlock.RW})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatalf("trylock: %v %v", ok, err)
	}
	cli, err := ha.Dial(strings.Split(c.eps, ","), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	slot := dlock.SlotOf(name)
	if _, err := ha.MoveSlots(ctx, cli, c.name, ha.Ranges{{slot, slot}}, "s1"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		if m, err := dlock.FetchShardMap(ctx, c.addrs["s0"][0], nil); err == nil && m.Shards[m.Slots[slot]].Name == "s1" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Break the connection; the proxy lets the client back in.
	p.mu.Lock()
	for _, nc := range p.conns {
		nc.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	select {
	case rep := <-reports:
		if rep.Err != nil || rep.NewPrimary || len(rep.Kept) != 1 || rep.Kept[0] != l || len(rep.Lost) != 0 {
			t.Fatalf("recovery: err %v, new primary %v, kept %d, lost %d", rep.Err, rep.NewPrimary, len(rep.Kept), len(rep.Lost))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no recovery report")
	}
	if st := c.read(); len(st.Moves) != 1 {
		t.Fatalf("the move ended while the hold was on the source: %+v", st.Moves)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("unlock on the source after the reconnection: %v", err)
	}
	for i := 0; i < 400 && len(c.read().Moves) != 0; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if st := c.read(); len(st.Moves) != 0 {
		t.Fatalf("the move did not end after the unlock: %+v", st.Moves)
	}
}
