package dlock_test

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// deadlineConn counts the reads on a connection that ended at a read
// deadline.
type deadlineConn struct {
	net.Conn
	expired *atomic.Int64
}

func (c deadlineConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.expired.Add(1)
	}
	return n, err
}

// waitQueued waits until lock name has n blocking requests queued on the
// server.
func waitQueued(t *testing.T, c *dlock.Client, name string, n int) {
	t.Helper()
	for range 500 {
		infos, err := c.Locks(testCtx(t), name)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) == 1 && len(infos[0].Waiters) == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: %d requests never queued", name, n)
}

// dialDeadlines dials a client whose connections count the reads that end
// at a read deadline.
func dialDeadlines(t *testing.T, srv *dlocktest.Server) (*dlock.Client, *atomic.Int64) {
	t.Helper()
	expired := new(atomic.Int64)
	var d net.Dialer
	cfg := srv.ClientConfig()
	cfg.DialContext = func(ctx context.Context, network, address string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, address)
		if err != nil {
			return nil, err
		}
		return deadlineConn{nc, expired}, nil
	}
	c, err := dlock.Dial(testCtx(t), srv.Addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, expired
}

// waitExpired waits until n has passed was.
func waitExpired(t *testing.T, n *atomic.Int64, was int64) {
	t.Helper()
	for range 1000 {
		if n.Load() > was {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the waiting Lock's quick wait never ended")
}

// TestContendedLockWaitsWithoutWakeups: a blocking Lock on a contended lock
// is not woken while it waits (each wake costs the CPU every hand-over
// needs) once a Lock on its connection had to wait, and a cancel still ends
// such a wait at once and withdraws the request.
func TestContendedLockWaitsWithoutWakeups(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	waiter, expired := dialDeadlines(t, srv)
	holder := srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	const name = "handover/contended"
	hl := open(t, holder, name, opts)
	wl := open(t, waiter, name, opts)
	// A ctx that can be cancelled and has no deadline: the Lock must be
	// able to stop its read when it ends.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for round := range 4 {
		mustTry(t, hl, false, true)
		before := expired.Load()
		done := make(chan error, 1)
		go func() { done <- wl.Lock(ctx) }()
		waitQueued(t, holder, name, 1)
		if round == 0 {
			waitExpired(t, expired, before) // the first wait outlasts the quick wait
		} else {
			time.Sleep(20 * time.Millisecond) // a wait well past the quick wait
		}
		if err := hl.Unlock(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("round %d: Lock: %v", round, err)
		}
		if n := expired.Load() - before; round > 0 && n != 0 {
			t.Errorf("round %d: the waiting Lock was woken by %d read deadline(s), want none", round, n)
		}
		if err := wl.Unlock(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}

	// Cancelled while it waits: Lock returns ctx's error promptly, and the
	// request is withdrawn (the lock is free once the holder lets go).
	mustTry(t, hl, false, true)
	done := make(chan error, 1)
	go func() { done <- wl.Lock(ctx) }()
	waitQueued(t, holder, name, 1)
	time.Sleep(20 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled Lock: %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cancelled Lock did not return")
	}
	waitQueued(t, holder, name, 0)
	if err := hl.Unlock(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	mustTry(t, wl, false, true)
	if wl.Held() != true {
		t.Fatal("waiter does not hold the lock it just took")
	}
}

// TestQuickLockBackToQuickWait: once blocking Locks on a connection are
// answered at once again, they go back to the quick wait, which costs no
// allocation: an uncontended Lock allocates no more than a TryLock.
func TestQuickLockBackToQuickWait(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	waiter, expired := dialDeadlines(t, srv)
	holder := srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	const name = "handover/quick"
	hl := open(t, holder, name, opts)
	wl := open(t, waiter, name, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One Lock that has to wait.
	mustTry(t, hl, false, true)
	done := make(chan error, 1)
	before := expired.Load()
	go func() { done <- wl.Lock(ctx) }()
	waitQueued(t, holder, name, 1)
	waitExpired(t, expired, before)
	if err := hl.Unlock(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := wl.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	lockUnlock := func() {
		if err := wl.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := wl.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tryUnlock := func() {
		mustTry(t, wl, false, true)
		if err := wl.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	lockUnlock() // answered at once: back to the quick wait
	lock := testing.AllocsPerRun(200, lockUnlock)
	try := testing.AllocsPerRun(200, tryUnlock)
	if lock > try {
		t.Errorf("uncontended Lock+Unlock: %.2f allocations, TryLock+Unlock %.2f: want no more", lock, try)
	}
}
