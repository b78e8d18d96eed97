package dlock_test

// Regression tests for the client's safety contract: a Lock that returns nil
// holds the lock; an outcome the client could not see (a reply lost with its
// connection) is resolved when it is connected again; recovery survives a
// client's connection blip; bad arguments are refused; errors say what
// happened and can be tested with errors.Is.

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

var lockTypes = []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair}

// TestLockNilOnlyWhenHeld: Lock on a lock someone else holds, with less than
// a millisecond left on the ctx, never returns nil; and a deadline error comes
// only once the deadline has passed.
func TestLockNilOnlyWhenHeld(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	for _, typ := range lockTypes {
		opts := dlock.LockOptions{Type: typ, TTL: time.Minute}
		la := open(t, a, "held-"+typ.String(), opts)
		lb := open(t, b, "held-"+typ.String(), opts)
		mustTry(t, la, false, true)
		for i := range 200 {
			left := time.Duration(rand.Int64N(int64(time.Millisecond)))
			if i%20 == 0 {
				left = 0
			}
			deadline := time.Now().Add(left)
			dctx, cancel := context.WithDeadline(ctx, deadline)
			err := lb.Lock(dctx)
			cancel()
			if err == nil {
				t.Fatalf("%v: Lock with %v left returned nil while another client holds the lock", typ, left)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%v: Lock with %v left = %v, want DeadlineExceeded", typ, left, err)
			}
			if now := time.Now(); now.Before(deadline) {
				t.Fatalf("%v: DeadlineExceeded %v before the deadline", typ, deadline.Sub(now))
			}
			if lb.Held() {
				t.Fatalf("%v: b holds the lock after a failed Lock", typ)
			}
		}
		for range 50 {
			deadline := time.Now().Add(20900 * time.Microsecond)
			dctx, cancel := context.WithDeadline(ctx, deadline)
			err := lb.Lock(dctx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%v: Lock = %v, want DeadlineExceeded", typ, err)
			}
			if now := time.Now(); now.Before(deadline) {
				t.Fatalf("%v: DeadlineExceeded %v before the deadline", typ, deadline.Sub(now))
			}
		}
		if err := la.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		// The lock is free: b gets it, and nothing of its failed waits remains.
		mustTry(t, lb, false, true)
		if err := lb.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFairCancelledWaitLeavesNoStaleTicket: a fair TryLock that took a ticket,
// then a Lock whose ctx ended, must not leave the old ticket in the cache.
func TestFairCancelledWaitLeavesNoStaleTicket(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	c1, c2 := srv.Dial(t), srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Fair, TTL: time.Minute}
	f1 := open(t, c1, "fair-ticket", opts)
	f2 := open(t, c2, "fair-ticket", opts)
	mustTry(t, f1, false, true)
	mustTry(t, f2, false, false) // busy: f2 now holds a ticket
	for _, giveUp := range []string{"deadline", "cancel"} {
		var err error
		if giveUp == "deadline" {
			dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			err = f2.Lock(dctx)
			cancel()
		} else {
			cctx, cancel := context.WithCancel(ctx)
			got := make(chan error, 1)
			go func() { got <- f2.Lock(cctx) }()
			waitFor(t, "f2 queued", func() bool { return waiters(srv, f2) == 1 })
			cancel()
			err = <-got
		}
		if err == nil {
			t.Fatalf("%s: Lock returned nil while f1 holds the lock", giveUp)
		}
	}
	if err := f1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	ok, err := f2.TryLock(ctx)
	if err != nil || !ok {
		t.Fatalf("TryLock on the free lock after a cancelled wait = %v, %v; want true, nil", ok, err)
	}
	if err := f2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestBadArguments: every bad argument is ErrInval with the argument named;
// nothing panics, nothing is silently changed.
func TestBadArguments(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	c := srv.Dial(t)
	l := open(t, c, "args", dlock.LockOptions{Type: dlock.Atomic})
	mustTry(t, l, false, true)

	check := func(what string, err error, mention string) {
		t.Helper()
		if !errors.Is(err, dlock.ErrInval) {
			t.Errorf("%s = %v, want ErrInval", what, err)
			return
		}
		if !strings.Contains(err.Error(), mention) {
			t.Errorf("%s = %q, want it to mention %q", what, err, mention)
		}
	}
	_, err := c.OpenLock(ctx, "neg", dlock.LockOptions{Type: dlock.Atomic, TTL: -time.Second})
	check("OpenLock with a negative TTL", err, "TTL")
	_, err = c.OpenLock(ctx, "huge", dlock.LockOptions{Type: dlock.Atomic, TTL: dlock.MaxTTL + time.Second})
	check("OpenLock with a TTL past MaxTTL", err, "TTL")
	_, err = c.OpenLock(ctx, "badtype", dlock.LockOptions{Type: 7})
	check("OpenLock with an unknown type", err, "type")
	_, err = c.OpenLock(ctx, "", dlock.LockOptions{Type: dlock.Atomic})
	check("OpenLock with an empty name", err, "name")
	check("Extend(-5s)", l.Extend(ctx, -5*time.Second), "TTL")
	check("Extend(past MaxTTL)", l.Extend(ctx, dlock.MaxTTL+time.Second), "TTL")

	var res [2]dlock.Result
	err = c.BatchTryLock(ctx, []dlock.LockRequest{{Lock: l}, {Lock: nil}}, res[:])
	check("BatchTryLock with a nil Lock", err, "entry 1")
	err = c.BatchExtend(ctx, []dlock.LockRequest{{Lock: nil}}, res[:])
	check("BatchExtend with a nil Lock", err, "entry 0")
	err = c.BatchTryLock(ctx, []dlock.LockRequest{{Lock: l, TTL: -time.Second}}, res[:])
	check("BatchTryLock with a negative TTL", err, "TTL")
	err = c.BatchExtend(ctx, []dlock.LockRequest{{Lock: l, TTL: -time.Second}}, res[:])
	check("BatchExtend with a negative TTL", err, "TTL")
	err = c.BatchUnlock(ctx, []*dlock.Lock{nil}, res[:])
	check("BatchUnlock with a nil Lock", err, "entry 0")
	err = c.BatchRelease(ctx, []*dlock.Lock{nil})
	check("BatchRelease with a nil Lock", err, "entry 0")
	err = c.BatchOpenLock(ctx, []string{"x"}, dlock.LockOptions{Type: dlock.Atomic, TTL: -1}, make([]*dlock.Lock, 1))
	check("BatchOpenLock with a negative TTL", err, "TTL")

	// The refused calls changed nothing: the hold is intact and extendable.
	if !l.Held() {
		t.Fatal("hold lost after refused calls")
	}
	if err := l.Extend(ctx, time.Minute); err != nil {
		t.Fatalf("Extend after refused calls: %v", err)
	}
}

// TestErrorContract: errors name the operation and the lock, do not stutter,
// and can be tested with errors.Is.
func TestErrorContract(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a := srv.Dial(t)
	open(t, a, "typed", dlock.LockOptions{Type: dlock.Atomic})
	_, err := a.OpenLock(ctx, "typed", dlock.LockOptions{Type: dlock.RW})
	if !errors.Is(err, dlock.ErrGeneric) {
		t.Fatalf("type mismatch = %v, want ErrGeneric", err)
	}
	msg := err.Error()
	for _, want := range []string{"open", `"typed"`, "type"} {
		if !strings.Contains(msg, want) {
			t.Errorf("type mismatch error %q does not mention %s", msg, want)
		}
	}
	if strings.Count(msg, "dlock:") != 1 || strings.Count(msg, "(-1)") > 1 {
		t.Errorf("type mismatch error %q stutters", msg)
	}
	// A long name is not echoed whole.
	long := strings.Repeat("n", dlock.MaxDescLen+1)
	_, err = a.OpenLock(ctx, long, dlock.LockOptions{Type: dlock.Atomic})
	if !errors.Is(err, dlock.ErrInval) || strings.Contains(err.Error(), long) || len(err.Error()) > 200 {
		t.Errorf("open with a %d-byte name = %q", len(long), err)
	}
	// A status as an error does not repeat the package prefix when wrapped.
	l := open(t, a, "unheld", dlock.LockOptions{Type: dlock.Atomic})
	err = l.Unlock(ctx)
	if !errors.Is(err, dlock.ErrAlreadyUnlocked) || strings.Count(err.Error(), "dlock:") != 1 ||
		!strings.Contains(err.Error(), "unlock") || !strings.Contains(err.Error(), `"unheld"`) {
		t.Errorf("unlock of an unheld lock = %q", err)
	}

	// After the connection is lost, errors say so and are testable.
	p := newFaultProxy(t, srv.Addr)
	b, err := dlock.Dial(ctx, p.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	lb := open(t, b, "lost", dlock.LockOptions{Type: dlock.Atomic})
	p.sever()
	waitFor(t, "b notices the loss", func() bool {
		_, err := lb.TryLock(ctx)
		return err != nil
	})
	_, err = lb.TryLock(ctx)
	if !errors.Is(err, dlock.ErrConnLost) || !strings.Contains(err.Error(), `"lost"`) {
		t.Errorf("TryLock after the connection was lost = %v, want ErrConnLost naming the lock", err)
	}
	b.Close()
	_, err = lb.TryLock(ctx)
	if !errors.Is(err, dlock.ErrClosed) {
		t.Errorf("TryLock after Close = %v, want ErrClosed", err)
	}
}

// TestRemovedClientHandles: once the server removed a client (its session
// ran out while it was disconnected), its handles answer
// ErrClientRemovedByServer.
func TestRemovedClientHandles(t *testing.T) {
	srv := dlocktest.NewServer(t, &dlockserver.Config{SessionTimeout: 200 * time.Millisecond})
	ctx := testCtx(t)
	p := newFaultProxy(t, srv.Addr)
	reports := make(chan dlock.RecoveryReport, 8)
	c, err := dlock.Dial(ctx, p.Addr(), &dlock.Config{AutoRecover: true,
		OnRecover: func(r dlock.RecoveryReport) { reports <- r }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := open(t, c, "removed", dlock.LockOptions{Type: dlock.RW})
	mustTry(t, l, false, true)
	p.setRefuse(true)
	p.sever()
	waitFor(t, "the session to expire", func() bool { return srv.Clients() == 0 })
	p.setRefuse(false)
	var rep dlock.RecoveryReport
	select {
	case rep = <-reports:
	case <-time.After(20 * time.Second):
		t.Fatal("no recovery report")
	}
	if !errors.Is(rep.Err, dlock.ErrClientRemovedByServer) || len(rep.Lost) != 1 {
		t.Fatalf("report = %+v; want ErrClientRemovedByServer and the lock lost", rep)
	}
	_, err = l.TryLock(ctx)
	if !errors.Is(err, dlock.ErrClientRemovedByServer) {
		t.Errorf("TryLock of a removed client = %v, want ErrClientRemovedByServer", err)
	}
	err = c.Heartbeat(ctx)
	if !errors.Is(err, dlock.ErrClientRemovedByServer) {
		t.Errorf("Heartbeat of a removed client = %v, want ErrClientRemovedByServer", err)
	}
}
