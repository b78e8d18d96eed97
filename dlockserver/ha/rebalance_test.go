package ha_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlockserver/ha"
)

// TestRebalancePlan: a shard that joins a two-shard map gets a third of the
// slots (341), taken from the others' highest slots; every slot stays owned once;
// an even split plans nothing; unassigned slots are handed out first.
func TestRebalancePlan(t *testing.T) {
	st := ha.ShardsStatus{Shards: []ha.ShardStatus{
		{Name: "a", Slots: ha.Ranges{{0, 511}}},
		{Name: "b", Slots: ha.Ranges{{512, 1023}}},
	}}
	plan := ha.Rebalance(st, []string{"c"})
	if len(plan) != 1 || plan[0].To != "c" {
		t.Fatalf("plan %+v", plan)
	}
	if want := (ha.Ranges{{342, 511}, {853, 1023}}); !equalRanges(plan[0].Slots, want) {
		t.Fatalf("moves %v, want %v", plan[0].Slots, want)
	}
	// Applied, the split is even: 342, 341, 341 (the most loaded keeps the
	// extra slot, so that fewer move).
	owner := map[int]string{}
	for k := 0; k < 342; k++ {
		owner[k] = "a"
	}
	for k := 512; k < 853; k++ {
		owner[k] = "b"
	}
	for _, r := range plan[0].Slots {
		for k := r[0]; k <= r[1]; k++ {
			if owner[k] != "" {
				t.Fatalf("slot %d moved twice", k)
			}
			owner[k] = "c"
		}
	}
	count := map[string]int{}
	for _, s := range owner {
		count[s]++
	}
	if len(owner) != dlockserver.NumSlots || count["a"] != 342 || count["c"] != 341 || count["b"] != 341 {
		t.Fatalf("after the plan: %v over %d slots", count, len(owner))
	}
	if p := ha.Rebalance(ha.ShardsStatus{Shards: []ha.ShardStatus{
		{Name: "a", Slots: ha.Ranges{{0, 341}}}, {Name: "b", Slots: ha.Ranges{{342, 682}}}, {Name: "c", Slots: ha.Ranges{{683, 1023}}},
	}}, nil); len(p) != 0 {
		t.Fatalf("an even split planned %+v", p)
	}
	// Unassigned slots (1000-1023) go to the underloaded shard first.
	p := ha.Rebalance(ha.ShardsStatus{Shards: []ha.ShardStatus{
		{Name: "a", Slots: ha.Ranges{{0, 511}}}, {Name: "b", Slots: ha.Ranges{{512, 999}}},
	}}, nil)
	if len(p) != 1 || p[0].To != "b" || !equalRanges(p[0].Slots, ha.Ranges{{1000, 1023}}) {
		t.Fatalf("plan with unassigned slots: %+v", p)
	}
}

func equalRanges(a, b ha.Ranges) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// shardLoad is clients contending for locks of a sharded cluster through
// routers, writing to a fenced store under each hold.
type shardLoad struct {
	names  []string
	store  []fencedStore
	grants []atomic.Int64 // per name
	lost   atomic.Int64   // unlocks that failed: holds lost
	errs   chan string    // the first ones
	// unlockRetries counts unlocks answered "not ready" (and retried).
	unlockRetries atomic.Int64
	stop          chan struct{}
	wg            sync.WaitGroup
}

// startLoad starts workers clients, each through its own router seeded
// with seeds, cycling over names: open (again after any error), trylock,
// write to the name's fenced store, unlock.
func startLoad(ctx context.Context, c *shardCluster, workers int, names []string, seeds ...string) *shardLoad {
	ld := &shardLoad{names: names, store: make([]fencedStore, len(names)), grants: make([]atomic.Int64, len(names)),
		stop: make(chan struct{}), errs: make(chan string, 5)}
	for w := 0; w < workers; w++ {
		r := c.router(ctx, seeds...)
		ld.wg.Add(1)
		go func() {
			defer ld.wg.Done()
			ls := make([]*dlock.Lock, len(names))
			for n := w; n < 10000000; n++ {
				select {
				case <-ld.stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				k := n % len(names)
				cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				var err error
				if ls[k] == nil {
					ls[k], err = r.OpenLock(cctx, names[k], dlock.LockOptions{Type: dlock.Atomic, TTL: 10 * time.Second})
				}
				ok := false
				if err == nil {
					ok, err = ls[k].TryLock(cctx)
				}
				cancel()
				if err != nil {
					ls[k] = nil // moved, frozen or its shard gone: open it again through the router
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if !ok {
					time.Sleep(time.Millisecond)
					continue
				}
				ld.grants[k].Add(1)
				ld.store[k].enter(ls[k].Token())
				time.Sleep(time.Millisecond)
				ld.store[k].exit()
				// A shard raising its token floor at the end of a move
				// answers "not ready" until its reservation is written:
				// the hold is kept, the unlock is retried.
				for try := 0; try < 100; try++ {
					uctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					err = ls[k].Unlock(uctx)
					cancel()
					if !errors.Is(err, dlock.ErrNotReady) {
						break
					}
					ld.unlockRetries.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
				if err != nil {
					if ld.lost.Add(1) <= 5 {
						ld.errs <- fmt.Sprintf("unlock %s (token %d) on %s: %v", names[k], ls[k].Token(), r.ShardOf(names[k]), err)
					}
					ls[k] = nil
				}
			}
		}()
	}
	return ld
}

// grantsOf sums the grants of the names in idx.
func (ld *shardLoad) grantsOf(idx []int) int64 {
	var n int64
	for _, k := range idx {
		n += ld.grants[k].Load()
	}
	return n
}

// finish stops the workers and checks the oracle: no two holders and no
// stale token in any store, no hold lost.
func (ld *shardLoad) finish(t *testing.T) {
	t.Helper()
	close(ld.stop)
	ld.wg.Wait()
	var total int64
	for k := range ld.store {
		s := &ld.store[k]
		if s.overlaps != 0 || s.stale != 0 {
			t.Errorf("lock %s: %d overlaps, %d stale tokens in %d writes", ld.names[k], s.overlaps, s.stale, s.writes)
		}
		total += ld.grants[k].Load()
	}
	if n := ld.lost.Load(); n != 0 {
		close(ld.errs)
		for e := range ld.errs {
			t.Log(e)
		}
		t.Errorf("%d unlocks failed: holds lost", n)
	}
	t.Logf("%d grants over %d locks, %d unlocks retried after \"not ready\"", total, len(ld.names), ld.unlockRetries.Load())
}

// namesInSlots returns n names whose slots satisfy in, and n that do not.
func namesInSlots(prefix string, n int, in func(int) bool) (inside, outside []string) {
	for i := 0; (len(inside) < n || len(outside) < n) && i < 1000000; i++ {
		name := fmt.Sprintf("%s/%d", prefix, i)
		if in(dlock.SlotOf(name)) {
			if len(inside) < n {
				inside = append(inside, name)
			}
		} else if len(outside) < n {
			outside = append(outside, name)
		}
	}
	return inside, outside
}

// slotCounts counts each shard's slots.
func slotCounts(st ha.ShardsStatus) map[string]int {
	count := map[string]int{}
	for _, s := range st.Shards {
		count[s.Name] += 0
		for _, rg := range s.Slots {
			count[s.Name] += rg[1] - rg[0] + 1
		}
	}
	return count
}

// waitShardSlots waits until shard has slots in the map and no move runs.
func (c *shardCluster) waitShardSlots(shard string, d time.Duration) ha.ShardsStatus {
	c.t.Helper()
	deadline := time.Now().Add(d)
	var st ha.ShardsStatus
	for time.Now().Before(deadline) {
		st = c.read()
		if slotCounts(st)[shard] > 0 && len(st.Moves) == 0 {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("shard %s got no slots within %v: %+v", shard, d, st)
	return st
}

// TestShardJoinsUnderLoad: a fourth shard joins a three-shard cluster
// while clients contend for locks, some in the slots it will be given.
// Without any operator command its primary moves it its share: each of
// the four shards owns a quarter of the slots within ±20%, every slot
// once. The fenced stores see no two holders and no stale token, no unlock
// fails, and the moved locks are granted by the new shard afterwards.
func TestShardJoinsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 4*time.Minute)
	c := newShardCluster(t, 3, 1)
	// The slots the join will move (the plan is deterministic).
	plan := ha.Rebalance(c.read(), []string{"s3"})
	if len(plan) != 1 {
		t.Fatalf("plan %+v", plan)
	}
	moving, staying := namesInSlots("join", 6, func(k int) bool { return contains(plan[0].Slots, k) })
	names := append(moving, staying...)
	movedIdx := []int{0, 1, 2, 3, 4, 5}
	ld := startLoad(ctx, c, 4, names, c.allAddrs()...)
	time.Sleep(time.Second)

	addr := freeAddr(t)
	c.addrs["s3"] = []string{addr}
	c.procs["s3"] = []*proc{c.start("s3", addr)}
	st := c.waitShardSlots("s3", 2*time.Minute)
	count := slotCounts(st)
	t.Logf("slots after the join: %v", count)
	total := 0
	for _, s := range []string{"s0", "s1", "s2", "s3"} {
		if n := count[s]; n < dlockserver.NumSlots/4*8/10 || n > dlockserver.NumSlots/4*12/10 {
			t.Errorf("shard %s owns %d slots, not within ±20%% of %d", s, n, dlockserver.NumSlots/4)
		}
		total += count[s]
	}
	if total != dlockserver.NumSlots || st.Unassigned != 0 {
		t.Errorf("%d slots owned, %d unassigned", total, st.Unassigned)
	}
	c.shards = append(c.shards, "s3")
	c.waitMaps(1)
	after := ld.grantsOf(movedIdx)
	time.Sleep(2 * time.Second)
	if ld.grantsOf(movedIdx) == after {
		t.Error("no grant of a moved lock after the join")
	}
	ld.finish(t)
	r := c.router(ctx, addr)
	for _, nm := range moving {
		if got := r.ShardOf(nm); got != "s3" {
			t.Errorf("%s routes to %s after the join", nm, got)
		}
	}
}

// TestShardRemoved: "dlockctl cluster remove s2" hands s2's slots to s0
// and s1 while clients contend for locks, some on s2, and while a hold
// taken on s2 before lasts into the removal (its unlock succeeds); then s2
// is out of the map, its process stops (SIGTERM), and the clients keep
// working: the former s2 locks are granted by the others. The fenced
// stores see no two holders and no stale token, no unlock fails.
func TestShardRemoved(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 4*time.Minute)
	c := newShardCluster(t, 3, 1)
	r := c.router(ctx, c.addrs["s0"][0])
	var onS2, elsewhere []string
	for i := 0; (len(onS2) < 6 || len(elsewhere) < 6) && i < 100000; i++ {
		nm := fmt.Sprintf("rm/%d", i)
		if r.ShardOf(nm) == "s2" {
			if len(onS2) < 6 {
				onS2 = append(onS2, nm)
			}
		} else if len(elsewhere) < 6 {
			elsewhere = append(elsewhere, nm)
		}
	}
	long := openServing(ctx, t, r, onS2[5])
	if ok, err := long.TryLock(ctx); !ok || err != nil {
		t.Fatalf("the long hold: %v %v", ok, err)
	}
	names := append(onS2[:5], elsewhere...)
	s2Idx := []int{0, 1, 2, 3, 4}
	ld := startLoad(ctx, c, 4, names, c.addrs["s0"][0], c.addrs["s1"][0])
	time.Sleep(time.Second)

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
		out, err := ctl("remove", "-etcd", c.eps, "-cluster", c.name, "-timeout", "150s", "s2")
		done <- result{out, err}
	}()
	time.Sleep(2 * time.Second)
	if err := long.Unlock(ctx); err != nil {
		t.Fatalf("unlocking the hold taken before the removal: %v", err)
	}
	res := <-done
	if res.err != nil || !strings.Contains(res.out, "shard s2 owns no slots and is out of the slot map") {
		t.Fatalf("dlockctl cluster remove: %v\n%s", res.err, res.out)
	}
	t.Logf("dlockctl cluster remove:\n%s", res.out)
	st := c.read()
	count := slotCounts(st)
	if len(st.Shards) != 2 || count["s0"] != 512 || count["s1"] != 512 || st.Unassigned != 0 || len(st.Moves) != 0 {
		t.Fatalf("after the removal: %v, %d unassigned, moves %+v", count, st.Unassigned, st.Moves)
	}
	if out, err := ctl("-etcd", c.eps, "-cluster", c.name); err != nil || !strings.Contains(out, "removed  s2") {
		t.Fatalf("dlockctl cluster after the removal: %v\n%s", err, out)
	}
	// s2's process stops; the clients keep working.
	c.procs["s2"][0].signal(syscall.SIGTERM)
	select {
	case <-c.procs["s2"][0].done:
	case <-time.After(30 * time.Second):
		t.Fatal("s2 did not stop on SIGTERM")
	}
	c.shards = []string{"s0", "s1"}
	c.waitMaps(1)
	stopped := ld.grantsOf(s2Idx)
	time.Sleep(2 * time.Second)
	if ld.grantsOf(s2Idx) == stopped {
		t.Error("no grant of a former s2 lock after s2 stopped")
	}
	ld.finish(t)
	// Without its members the shard is no longer listed.
	if out, err := ctl("-etcd", c.eps, "-cluster", c.name); err != nil || strings.Contains(out, "s2") {
		t.Fatalf("dlockctl cluster after s2 stopped: %v\n%s", err, out)
	}
	// An unknown shard is refused.
	if out, err := ctl("remove", "-etcd", c.eps, "-cluster", c.name, "s9"); err == nil || !strings.Contains(out, "not in") {
		t.Fatalf("removing an unknown shard: %v\n%s", err, out)
	}
}

// TestShardDownNotMoved: with one shard's only process killed, nothing
// moves its slots away: a fourth shard that joins meanwhile waits (listed
// as joined) and the map stays as it was; once the killed shard is back,
// the new shard is given its share.
func TestShardDownNotMoved(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	testCtx(t, 4*time.Minute)
	c := newShardCluster(t, 3, 1)
	before := c.read()
	c.procs["s1"][0].kill()
	addr := freeAddr(t)
	c.addrs["s3"] = []string{addr}
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(buildDlockctl(t), append([]string{"cluster"}, args...)...).CombinedOutput()
		return string(out), err
	}
	// Once s1's lease ran out it has no primary (a move planned before that
	// would wait for s1 to let go).
	for i := 0; i < 200; i++ {
		down := false
		for _, s := range c.read().Shards {
			down = down || s.Name == "s1" && s.Primary == nil
		}
		if down {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.procs["s3"] = []*proc{c.start("s3", addr)}
	var out string
	for i := 0; i < 300 && !strings.Contains(out, "joined   s3"); i++ {
		out, _ = ctl("-etcd", c.eps, "-cluster", c.name)
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "joined   s3") {
		t.Fatalf("s3 is not listed as joined:\n%s", out)
	}
	// Several lease TTLs: s1's election key is long gone.
	for end := time.Now().Add(4 * ttl); time.Now().Before(end); {
		st := c.read()
		if st.Version != before.Version || len(st.Moves) != 0 {
			t.Fatalf("the map changed while s1 was down: version %d → %d, moves %+v, slots %v",
				before.Version, st.Version, st.Moves, slotCounts(st))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, s := range c.read().Shards {
		if s.Name == "s1" && s.Primary != nil {
			t.Fatalf("s1 has a primary: %+v", s.Primary)
		}
	}
	// Back, s1 lets go of what s3 is given.
	c.procs["s1"][0] = c.start("s1", c.addrs["s1"][0])
	st := c.waitShardSlots("s3", 2*time.Minute)
	count := slotCounts(st)
	if count["s0"] != 256 || count["s1"] != 256 || count["s2"] != 256 || count["s3"] != 256 {
		t.Fatalf("after s1 came back: %v", count)
	}
}

// TestPlanLeaving: a leaving shard's slots are split between the others
// (the most loaded first gets the odd slot), and a shard joining meanwhile
// gets its share of them too; a leaving shard never receives slots.
func TestPlanLeaving(t *testing.T) {
	three := ha.ShardsStatus{Shards: []ha.ShardStatus{
		{Name: "a", Slots: ha.Ranges{{0, 340}}}, {Name: "b", Slots: ha.Ranges{{341, 681}}}, {Name: "c", Slots: ha.Ranges{{682, 1023}}},
	}}
	plan := ha.Plan(ha.Balance{Status: three, Leaving: []string{"c"}})
	if len(plan) != 2 || plan[0].To != "a" || !equalRanges(plan[0].Slots, ha.Ranges{{682, 852}}) ||
		plan[1].To != "b" || !equalRanges(plan[1].Slots, ha.Ranges{{853, 1023}}) {
		t.Fatalf("plan %+v", plan)
	}
	plan = ha.Plan(ha.Balance{Status: three, Leaving: []string{"c"}, Joined: []string{"d"}})
	got := map[string]int{}
	for _, p := range plan {
		if p.To == "c" {
			t.Fatalf("the leaving shard receives %v", p.Slots)
		}
		for _, r := range p.Slots {
			if r[0] < 682 {
				t.Fatalf("%s takes %v from a shard that stays", p.To, r)
			}
			got[p.To] += r[1] - r[0] + 1
		}
	}
	// a and b keep 341 each and d's share is 341: they split c's 342.
	if got["d"] != 341 || got["a"]+got["b"] != 1 {
		t.Fatalf("moved %v", got)
	}
}
