package dlock_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// TestBatchSameIDHandlesNoDeadlock: a handle kept after Release and the
// handle of the same lock opened again share the lock id. Two batches that
// name both, in opposite orders, run at once: each takes the handles in
// one order that does not depend on the entries' order, so neither waits
// for the other forever.
func TestBatchSameIDHandlesNoDeadlock(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	c := srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	// A lock's id is a hash of its name when that id is free (and fits):
	// find a name whose lock, opened again, gets its old id back.
	var old, cur *dlock.Lock
	for i := 0; i < 16 && (old == nil || old.ID() != cur.ID()); i++ {
		name := fmt.Sprintf("s%d", i)
		old = open(t, c, name, opts)
		if err := old.Release(ctx); err != nil {
			t.Fatal(err)
		}
		cur = open(t, c, name, opts)
	}
	if old == cur || old.ID() != cur.ID() {
		t.Fatalf("no lock opened again got its id back (last: %d, %d)", old.ID(), cur.ID())
	}
	const rounds = 300
	done := make(chan error, 2)
	run := func(a, b *dlock.Lock) {
		res := make([]dlock.Result, 2)
		for range rounds {
			err := c.BatchTryLock(ctx, []dlock.LockRequest{{Lock: a}, {Lock: b}}, res)
			if err == nil {
				err = c.BatchUnlock(ctx, []*dlock.Lock{a, b}, res)
			}
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}
	go run(old, cur)
	go run(cur, old)
	timeout := time.After(20 * time.Second)
	for range 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("two batches over the same two handles in opposite orders did not finish in 20 s: they wait for each other's handle")
		}
	}
}
