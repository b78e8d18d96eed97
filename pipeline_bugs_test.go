package dlock_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// goroutineBlockedIn reports whether some goroutine is blocked on a mutex
// inside fn (a function name as runtime stacks print it).
func goroutineBlockedIn(fn string) bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "sync.(*Mutex).Lock") && strings.Contains(g, fn) {
			return true
		}
	}
	return false
}

// TestPipelineStartSendsBeforeWaiting: a pipeline request on a lock that a
// batch of another goroutine holds, while that batch waits for a lock of one
// of the pipeline's requests not sent yet, sends that request before it
// waits; otherwise each waits for the other for ever.
func TestPipelineStartSendsBeforeWaiting(t *testing.T) {
	ctx := testCtx(t)
	srv := dlocktest.NewServer(t, nil)
	c := srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	l1 := open(t, c, "sendfirst/1", opts)
	l2 := open(t, c, "sendfirst/2", opts)
	if l1.ID() > l2.ID() {
		l1, l2 = l2, l1 // the batch takes l1 first, then waits for l2
	}
	p := c.NewPipeline()
	var r1, r2 dlock.Request
	if err := p.TryLock(&r2, l2); err != nil { // not sent yet
		t.Fatal(err)
	}
	batch := make(chan error, 1)
	go func() {
		res := make([]dlock.Result, 2)
		batch <- c.BatchTryLock(ctx, []dlock.LockRequest{{Lock: l1}, {Lock: l2}}, res)
	}()
	waitFor(t, "the batch to wait for the second lock", func() bool { return goroutineBlockedIn("(*lockSet).lock") })
	started := make(chan error, 1)
	go func() { started <- p.TryLock(&r1, l1) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the pipeline's TryLock and the batch wait for each other")
	}
	if err := <-batch; err != nil {
		t.Fatal(err)
	}
	for range 2 {
		r, err := p.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !r.Acquired() || r.Err() != nil {
			t.Fatalf("TryLock of %s = %v, %v; want true (held by the client)", r.Lock().Name(), r.Acquired(), r.Err())
		}
	}
}
