package dlock_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

// recoverManually runs DLock's recovery sequence for c against addr.
func recoverManually(t *testing.T, c *dlock.Client, addr string) {
	t.Helper()
	ctx := testCtx(t)
	if err := c.Reinit(ctx, addr); err != nil {
		t.Fatalf("client %d: Reinit: %v", c.ID(), err)
	}
	for {
		err := c.UpdateAllLocks(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, dlock.ErrAgain) {
			t.Fatalf("client %d: UpdateAllLocks: %v", c.ID(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.ReinitDone(ctx); err != nil {
		t.Fatalf("client %d: ReinitDone: %v", c.ID(), err)
	}
}

// TestRecoveryManual: clients holding atomic, RW (shared and exclusive) and
// fair locks rebuild a new primary's state with Reinit, UpdateAllLocks and
// ReinitDone; meanwhile the server answers ErrNotReady; afterwards the same
// clients hold the same locks, objects are gone, and tokens continue upward.
func TestRecoveryManual(t *testing.T) {
	ctx := testCtx(t)
	old := dlocktest.NewServer(t, nil)
	a, b, c := old.Dial(t), old.Dial(t), old.Dial(t)
	opts := func(typ dlock.LockType) dlock.LockOptions { return dlock.LockOptions{Type: typ, TTL: time.Minute} }
	atomicA := open(t, a, "atomic", opts(dlock.Atomic))
	atomicB := open(t, b, "atomic", opts(dlock.Atomic))
	rwA := open(t, a, "rw-shared", opts(dlock.RW))
	rwB := open(t, b, "rw-shared", opts(dlock.RW))
	rwC := open(t, c, "rw-excl", opts(dlock.RW))
	fairB := open(t, b, "fair", opts(dlock.Fair))
	fairC := open(t, c, "fair", opts(dlock.Fair))
	mustTry(t, atomicA, false, true)
	mustTry(t, rwA, true, true)
	mustTry(t, rwB, true, true)
	mustTry(t, rwC, false, true)
	mustTry(t, fairB, false, true)
	mustTry(t, fairC, false, false) // c queues with a ticket
	tokenBefore := atomicA.Token()
	obj, err := a.CreateAtomic64(ctx, "gone", 5, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	old.Close() // the primary dies

	srv := dlocktest.NewServer(t, &dlockserver.Config{RecoveryClients: 3})
	if _, err := dlock.Dial(ctx, srv.Addr, nil); !errors.Is(err, dlock.ErrNotReady) {
		t.Fatalf("new client during recovery: %v, want ErrNotReady", err)
	}
	recoverManually(t, a, srv.Addr)
	if _, err := atomicA.TryLock(ctx); !errors.Is(err, dlock.ErrNotReady) {
		t.Errorf("lock op while others recover: %v, want ErrNotReady", err)
	}
	if err := a.Heartbeat(ctx); !errors.Is(err, dlock.ErrNotReady) {
		t.Errorf("heartbeat while recovering: %v, want ErrNotReady", err)
	}
	// a registers again after its upload and ReinitDone (a connection
	// blip): allowed; the server waits for it to finish again.
	recoverManually(t, a, srv.Addr)
	// b starts recovering, then restarts (reinit again before uploading).
	if err := b.Reinit(ctx, srv.Addr); err != nil {
		t.Fatal(err)
	}
	recoverManually(t, b, srv.Addr)
	if srv.Ready() {
		t.Fatal("ready before the third client finished")
	}
	recoverManually(t, c, srv.Addr)
	if !srv.Ready() {
		t.Fatal("not ready after all three clients finished")
	}

	// Who holds what is as before the crash.
	for _, l := range []*dlock.Lock{atomicA, rwA, rwB, rwC, fairB} {
		if !l.Held() {
			t.Errorf("%s lost its hold in the client cache", l.Name())
		}
	}
	kept, lost, err := a.Revalidate(ctx)
	if err != nil || len(kept) != 2 || len(lost) != 0 {
		t.Errorf("a: Revalidate kept %d lost %d err %v; want 2, 0", len(kept), len(lost), err)
	}
	mustTry(t, atomicB, false, false)
	if info, _ := srv.Lock(rwA.ID()); info.State.RW().RCount != 2 {
		t.Errorf("rw-shared: rcount %d after recovery, want 2", info.State.RW().RCount)
	}
	if ok, _ := open(t, a, "rw-excl", opts(dlock.RW)).TryRLock(ctx); ok {
		t.Error("rw-excl: a reader got in beside the recovered writer")
	}
	// The recovered fair holder can unlock, and the queued ticket is served next.
	if err := fairB.Unlock(ctx); err != nil {
		t.Fatalf("fair: recovered holder unlock: %v", err)
	}
	mustTry(t, fairC, false, true)
	if tok := fairC.Token(); tok <= tokenBefore {
		t.Errorf("token after recovery %d not above %d from the old primary", tok, tokenBefore)
	}
	// Objects do not survive.
	if _, err := obj.Load(ctx); !errors.Is(err, dlock.ErrObjectNotGet) {
		t.Errorf("object after recovery: %v, want ErrObjectNotGet", err)
	}
	if err := atomicA.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	mustTry(t, atomicB, false, true)
}

// TestRecoveryConflicts: two clients report the same atomic lock; the later
// expiry wins (SEMANTICS.md §9) and the loser learns it on re-validation.
func TestRecoveryConflicts(t *testing.T) {
	ctx := testCtx(t)
	old := dlocktest.NewServer(t, nil)
	a, b := old.Dial(t), old.Dial(t)
	la := open(t, a, "x", dlock.LockOptions{Type: dlock.Atomic, TTL: 2 * time.Second})
	lb := open(t, b, "x", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	mustTry(t, la, false, true)
	waitFor(t, "a's lease to run out", func() bool { ok, _ := lb.TryLock(ctx); return ok })
	// a still believes it holds the lock; b holds it with a later expiry.
	old.Close()

	srv := dlocktest.NewServer(t, &dlockserver.Config{RecoveryClients: 2})
	recoverManually(t, a, srv.Addr)
	recoverManually(t, b, srv.Addr)
	_, lostA, err := a.Revalidate(ctx)
	if err != nil || len(lostA) != 1 {
		t.Fatalf("a: Revalidate lost %v, %v; want its stale hold lost", lostA, err)
	}
	keptB, _, err := b.Revalidate(ctx)
	if err != nil || len(keptB) != 1 {
		t.Fatalf("b: Revalidate kept %v, %v; want its hold kept", keptB, err)
	}
	if info, _ := srv.Lock(lb.ID()); info.State.Atomic().Owner != b.ID() {
		t.Errorf("owner %d after the merge, want b %d", info.State.Atomic().Owner, b.ID())
	}
}

// TestRecoveryDeadline: a client that never returns does not keep the
// server in recovery past RecoveryTimeout, and the reported locks stay.
func TestRecoveryDeadline(t *testing.T) {
	ctx := testCtx(t)
	old := dlocktest.NewServer(t, nil)
	a := old.Dial(t)
	la := open(t, a, "kept", dlock.LockOptions{Type: dlock.RW})
	mustTry(t, la, false, true)
	old.Close()

	srv := dlocktest.NewServer(t, &dlockserver.Config{RecoveryClients: 2, RecoveryTimeout: 300 * time.Millisecond})
	recoverManually(t, a, srv.Addr)
	waitFor(t, "the recovery deadline", srv.Ready)
	if kept, _, err := a.Revalidate(ctx); err != nil || len(kept) != 1 {
		t.Fatalf("Revalidate after the deadline: kept %d, %v", len(kept), err)
	}
	if _, err := srv.Dial(t).OpenLock(ctx, "kept", dlock.LockOptions{Type: dlock.RW}); err != nil {
		t.Fatal(err)
	}
}

// TestAutoRecover: with AutoRecover on, clients recover by themselves when
// the primary is replaced on the same address, and say what survived.
func TestAutoRecover(t *testing.T) {
	ctx := testCtx(t)
	old := dlocktest.NewServer(t, nil)
	addr := old.Addr
	reports := make(chan dlock.RecoveryReport, 2)
	cfg := &dlock.Config{AutoRecover: true, OnRecover: func(r dlock.RecoveryReport) { reports <- r }}
	a, err := dlock.Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := dlock.Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	la := open(t, a, "auto", dlock.LockOptions{Type: dlock.Fair, TTL: time.Minute})
	lb := open(t, b, "short", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Second})
	mustTry(t, la, false, true)
	mustTry(t, lb, false, true)
	old.Close()
	time.Sleep(2100 * time.Millisecond) // b's one-second lease runs out during the outage

	srv, err := dlockserver.New(dlockserver.Config{RecoveryClients: 2})
	if err != nil {
		t.Fatal(err)
	}
	ln := listenOn(t, addr)
	go srv.Serve(ln)
	defer srv.Close()

	for range 2 {
		select {
		case r := <-reports:
			if r.Err != nil || !r.NewPrimary {
				t.Errorf("report %+v", r)
			}
			switch {
			case len(r.Kept) == 1 && r.Kept[0] == la:
			case len(r.Lost) == 1 && r.Lost[0] == lb:
			default:
				t.Errorf("report kept %v lost %v; want a's fair lock kept, b's expired lock lost", r.Kept, r.Lost)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no recovery report")
		}
	}
	if lb.Held() {
		t.Error("b still believes it holds the lock whose lease ran out")
	}
	if err := la.Unlock(ctx); err != nil {
		t.Errorf("unlock after automatic recovery: %v", err)
	}
}

// listenOn listens on addr again, retrying while the old listener's port is
// being released.
func listenOn(t *testing.T, addr string) net.Listener {
	t.Helper()
	var err error
	for range 100 {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("listen %s: %v", addr, err)
	return nil
}
