package ha_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

// durableCluster starts etcd and two dlockd with -durable-objects and
// returns it with the primary's index.
func durableCluster(t *testing.T) (*cluster, int) {
	t.Helper()
	c := newCluster(t, 2, nil)
	for i := range c.extra {
		c.extra[i] = []string{"-durable-objects"}
	}
	c.start(0)
	c.waitMembers(1)
	c.start(1)
	return c, c.waitMembers(2)
}

// recovered waits for cl's recovery report against a new primary and
// checks that it lost nothing.
func recovered(t *testing.T, cl *haClient, what string) {
	t.Helper()
	r := awaitReport(t, cl)
	if r.Err != nil || !r.NewPrimary || len(r.Lost) != 0 || len(r.LostObjects) != 0 {
		t.Fatalf("%s: recovery %+v", what, r)
	}
}

// TestDurableObjectsSurviveFailover: with -durable-objects, values set by
// fetch-and-add and compare-and-swap, the outcome of a failed
// compare-and-swap, a destroyed object and the clients' references all
// survive SIGKILL of the primary, three times in a row; the clients' handles
// keep working and no object is reported lost.
func TestDurableObjectsSurviveFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 5*time.Minute)
	c, _ := durableCluster(t)
	a, b := c.dial(ctx, 0), c.dial(ctx, 1)

	ca, err := a.CreateAtomic64(ctx, "counter", 7, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.OpenAtomic64(ctx, "counter", dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := a.CreateAtomic64(ctx, "gone", 1, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := gone.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := gone.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	want := uint64(7)
	for round := 0; round < 3; round++ {
		if old, err := ca.FetchAndAdd(ctx, 5); err != nil || old != want {
			t.Fatalf("round %d: fetch-and-add = %d, %v; want %d", round, old, err, want)
		}
		want += 5
		if ok, err := cb.CompareAndSwap(ctx, want, want*2); err != nil || !ok {
			t.Fatalf("round %d: compare-and-swap %d → %d: %v %v", round, want, want*2, ok, err)
		}
		want *= 2
		if ok, err := ca.CompareAndSwap(ctx, want+1, 0); err != nil || ok {
			t.Fatalf("round %d: compare-and-swap of a wrong value: %v %v", round, ok, err)
		}

		p := c.waitMembers(2)
		c.procs[p].kill()
		recovered(t, a, "client a")
		recovered(t, b, "client b")
		for _, h := range []*dlock.Atomic64{ca, cb} {
			if v, err := h.Load(ctx); err != nil || v != want {
				t.Fatalf("round %d: after the failover the value is %d (%v), want %d", round, v, err, want)
			}
		}
		if _, err := a.OpenAtomic64(ctx, "gone", dlock.Atomic64Options{}); !errors.Is(err, dlock.ErrObjectNotCreate) {
			t.Fatalf("round %d: a destroyed object came back: %v", round, err)
		}
		c.start(p)
	}
	// The references came through too: b releases its own, a (the owner)
	// destroys the object.
	if err := cb.Release(ctx); err != nil {
		t.Fatalf("release after failovers: %v", err)
	}
	if err := ca.Release(ctx); err != nil {
		t.Fatalf("release after failovers: %v", err)
	}
	if err := ca.Destroy(ctx); err != nil {
		t.Fatalf("destroy by the owner after failovers: %v", err)
	}
}

// TestDurableFetchAndAddLostReply: clients add 1 in a loop while the
// primary fails: killed with SIGKILL, or cut off from etcd while clients
// still reach it (its last commits fail). Each call that returned a value
// was applied once and survives; each that failed with ErrConnLost (its
// reply lost with the connection: the outcome the client cannot know) was
// applied at most once (and only the call in flight when the connection
// broke can have been); every other failure was not applied. So after the
// failover the value is at least the acknowledged additions and at most
// those plus the unknown ones: never an addition applied twice, never one
// acknowledged and lost.
func TestDurableFetchAndAddLostReply(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	t.Run("kill", func(t *testing.T) {
		c, p := durableCluster(t)
		faaThroughFailover(t, c, func() { c.procs[p].kill() })
	})
	t.Run("cut-off", func(t *testing.T) {
		c := newCluster(t, 2, nil)
		px := newProxy(t, c.etcd[0].client[len("http://"):])
		c.extra[0] = []string{"-durable-objects", "-etcd", "http://" + px.ln.Addr().String()}
		c.extra[1] = []string{"-durable-objects"}
		c.start(0)
		if c.waitMembers(1) != 0 {
			t.Fatal("member 0 is not the primary")
		}
		c.start(1)
		c.waitMembers(2)
		faaThroughFailover(t, c, px.sever)
	})
}

// faaThroughFailover runs the adding clients, calls fail while they run,
// and checks the value after the failover.
func faaThroughFailover(t *testing.T, c *cluster, fail func()) {
	ctx := testCtx(t, 5*time.Minute)
	const workers = 4
	var clients []*haClient
	var handles []*dlock.Atomic64
	for i := 0; i < workers; i++ {
		cl := c.dial(ctx, i%2)
		var h *dlock.Atomic64
		var err error
		if i == 0 {
			h, err = cl.CreateAtomic64(ctx, "n", 0, dlock.Atomic64Options{})
		} else {
			h, err = cl.OpenAtomic64(ctx, "n", dlock.Atomic64Options{})
		}
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, cl)
		handles = append(handles, h)
	}

	var (
		mu             sync.Mutex
		acked, unknown uint64
		failures       = map[string]int{}
	)
	killed := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(h *dlock.Atomic64) {
			defer wg.Done()
			afterKill := 0
			inRun := false // since the last success, a call failed
			// Bounded: until 200 acknowledged additions after the kill,
			// or 20 000 calls.
			for n := 0; n < 20000 && afterKill < 200; n++ {
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := h.FetchAndAdd(cctx, 1)
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					acked++
				case errors.Is(err, dlock.ErrConnLost), errors.Is(err, context.DeadlineExceeded):
					// Only the call in flight when the connection broke
					// may have been applied: those after it, until the
					// client recovered, were not sent.
					if !inRun {
						unknown++
					}
					failures["connection lost or timed out"]++
				default:
					failures[err.Error()]++
				}
				inRun = err != nil
				mu.Unlock()
				select {
				case <-killed:
					if err == nil {
						afterKill++
					} else {
						time.Sleep(20 * time.Millisecond)
					}
				default:
				}
			}
		}(handles[i])
	}
	time.Sleep(500 * time.Millisecond)
	fail()
	close(killed)
	wg.Wait()
	for i, cl := range clients {
		recovered(t, cl, "client "+string(rune('a'+i)))
	}
	v, err := handles[0].Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("value %d: %d acknowledged, %d unknown; failures %v", v, acked, unknown, failures)
	if v < acked {
		t.Errorf("value %d below the %d acknowledged additions: an acknowledged one was lost", v, acked)
	}
	if v > acked+unknown {
		t.Errorf("value %d above the %d acknowledged + %d unknown additions: one was applied twice or a refused one applied",
			v, acked, unknown)
	}
}

// TestDurableObjectsDroppedByPlainMember: when a member without
// -durable-objects takes over, the objects are lost (and reported so), and
// a durable member elected after it does not bring back their old values.
func TestDurableObjectsDroppedByPlainMember(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 3*time.Minute)
	c := newCluster(t, 2, nil)
	c.extra[0] = []string{"-durable-objects"}
	c.start(0)
	if c.waitMembers(1) != 0 {
		t.Fatal("member 0 is not the primary")
	}
	c.start(1)
	c.waitMembers(2)
	cl := c.dial(ctx, 0)
	o, err := cl.CreateAtomic64(ctx, "old", 5, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.procs[0].kill() // member 1, not durable, takes over
	if r := awaitReport(t, cl); len(r.LostObjects) != 1 || r.LostObjects[0] != o {
		t.Fatalf("objects not reported lost by the plain member: %+v", r)
	}
	c.start(0)
	c.waitMembers(2)
	c.procs[1].kill() // member 0, durable, takes over again
	if r := awaitReport(t, cl); len(r.LostObjects) != 0 || r.Err != nil {
		t.Fatalf("recovery: %+v", r)
	}
	if _, err := cl.OpenAtomic64(ctx, "old", dlock.Atomic64Options{}); !errors.Is(err, dlock.ErrObjectNotCreate) {
		t.Fatalf("an object lost on the plain member came back: %v", err)
	}
}
