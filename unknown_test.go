package dlock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

// lostGrantSetup: client x reaches the server through a fault proxy with
// automatic recovery; h holds the lock directly.
type lostGrantSetup struct {
	srv     *dlocktest.Server
	p       *faultProxy
	x       *dlock.Client
	lx, lh  *dlock.Lock
	reports chan dlock.RecoveryReport
}

func newLostGrant(t *testing.T, typ dlock.LockType) *lostGrantSetup {
	t.Helper()
	ctx := testCtx(t)
	s := &lostGrantSetup{srv: dlocktest.NewServer(t, nil), reports: make(chan dlock.RecoveryReport, 8)}
	s.p = newFaultProxy(t, s.srv.Addr)
	x, err := dlock.Dial(ctx, s.p.Addr(), &dlock.Config{AutoRecover: true,
		OnRecover: func(r dlock.RecoveryReport) { s.reports <- r }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	s.x = x
	h := s.srv.Dial(t)
	opts := dlock.LockOptions{Type: typ, TTL: time.Minute}
	s.lx = open(t, x, "lost-grant", opts)
	s.lh = open(t, h, "lost-grant", opts)
	return s
}

// recovered waits for x's recovery report.
func (s *lostGrantSetup) recovered(t *testing.T) dlock.RecoveryReport {
	t.Helper()
	select {
	case r := <-s.reports:
		if r.Err != nil {
			t.Fatalf("recovery report: %v", r.Err)
		}
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no recovery report")
	}
	return dlock.RecoveryReport{}
}

// freeForOthers checks that the lock is free on the server right after x
// recovered: h takes it at once, and x does not believe it holds it.
func (s *lostGrantSetup) freeForOthers(t *testing.T) {
	t.Helper()
	ctx := testCtx(t)
	if s.lx.Held() {
		t.Fatal("x believes it holds the lock after a failed call")
	}
	ok, err := s.lh.TryLock(ctx)
	if err != nil || !ok {
		t.Fatalf("after x recovered, another client's TryLock = %v, %v; want true (x's unknown grant released)", ok, err)
	}
	if o := s.x.Outcomes(); o.Unknown == 0 || o.Resolved != o.Unknown || o.Released == 0 {
		t.Fatalf("outcomes %+v: want the unknown outcome resolved and a hold released", o)
	}
	if err := s.lh.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestLostGrantReleased: x waits in a blocking Lock; its path to the server
// is black-holed; the holder unlocks, so the server grants x, but the grant
// is stuck; the connection is then severed. x's Lock fails, x reconnects to
// the same server, and the hold it never learned of is released.
func TestLostGrantReleased(t *testing.T) {
	for _, typ := range lockTypes {
		t.Run(typ.String(), func(t *testing.T) {
			ctx := testCtx(t)
			s := newLostGrant(t, typ)
			mustTry(t, s.lh, false, true)
			got := make(chan error, 1)
			go func() { got <- s.lx.Lock(ctx) }()
			waitFor(t, "x queued", func() bool { return waiters(s.srv, s.lx) == 1 })
			s.p.blackhole()
			if err := s.lh.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the grant to x", func() bool { return waiters(s.srv, s.lx) == 0 })
			time.Sleep(20 * time.Millisecond) // let the grant reach the proxy's socket
			s.p.sever()
			err := <-got
			if err == nil || !errors.Is(err, dlock.ErrConnLost) {
				t.Fatalf("x's Lock = %v, want ErrConnLost", err)
			}
			s.recovered(t)
			s.freeForOthers(t)
		})
	}
}

// TestLostGrantAfterGiveUp: x's ctx ends while the link is black-holed, so
// its withdrawal is stuck too; once the grace for the server's answer ends,
// the client closes the connection, and the grant is released when it is
// connected again.
func TestLostGrantAfterGiveUp(t *testing.T) {
	ctx := testCtx(t)
	s := newLostGrant(t, dlock.RW)
	mustTry(t, s.lh, false, true)
	lctx, cancel := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() { got <- s.lx.Lock(lctx) }()
	waitFor(t, "x queued", func() bool { return waiters(s.srv, s.lx) == 1 })
	s.p.blackhole()
	if err := s.lh.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the grant to x", func() bool { return waiters(s.srv, s.lx) == 0 })
	cancel()
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("x's Lock = %v, want Canceled", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Lock did not return after its ctx ended and the grace passed")
	}
	s.p.heal() // the client closed the connection itself; new ones pass
	s.recovered(t)
	s.freeForOthers(t)
}

// TestLostBatchGrantReleased: a batch trylock whose reply is lost.
func TestLostBatchGrantReleased(t *testing.T) {
	ctx := testCtx(t)
	s := newLostGrant(t, dlock.RW)
	s.p.blackholeReplies()
	got := make(chan error, 1)
	var res [1]dlock.Result
	go func() {
		got <- s.x.BatchTryLock(ctx, []dlock.LockRequest{{Lock: s.lx}}, res[:])
	}()
	waitFor(t, "the server to grant the batch", func() bool {
		info, _ := s.srv.LockInfo(s.lx.ID())
		return info.State.RW().Owner == s.x.ID()
	})
	time.Sleep(20 * time.Millisecond)
	s.p.sever()
	if err := <-got; !errors.Is(err, dlock.ErrConnLost) {
		t.Fatalf("batch = %v, want ErrConnLost", err)
	}
	if res[0].Status == dlock.Success {
		t.Fatal("batch entry reported success without a reply")
	}
	s.recovered(t)
	s.freeForOthers(t)
}

// TestLostAsyncGrantReleased: an operation begun with Start whose caller
// stops waiting (the C API's async lock) and whose reply is then lost.
func TestLostAsyncGrantReleased(t *testing.T) {
	ctx := testCtx(t)
	s := newLostGrant(t, dlock.Atomic)
	s.p.blackholeReplies()
	st, _, _, wait := lockStart(s.lx, dlock.OpLockExclusive, 60)
	if wait == nil {
		t.Fatalf("Start answered locally: %v", st)
	}
	waitFor(t, "the server to grant the async request", func() bool {
		info, _ := s.srv.LockInfo(s.lx.ID())
		return info.State.Atomic().Owner == s.x.ID()
	})
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, _, err := wait(wctx)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	s.p.sever()
	if err := <-done; err == nil {
		t.Fatal("async wait without a reply returned nil")
	}
	s.recovered(t)
	s.freeForOthers(t)
}

// TestLostUnlockResolved: an unlock whose reply is lost leaves the client
// believing it holds the lock; resolving on reconnection corrects that.
func TestLostUnlockResolved(t *testing.T) {
	ctx := testCtx(t)
	s := newLostGrant(t, dlock.RW)
	mustTry(t, s.lx, false, true)
	s.p.blackholeReplies()
	got := make(chan error, 1)
	go func() { got <- s.lx.Unlock(ctx) }()
	waitFor(t, "the server to apply the unlock", func() bool {
		info, _ := s.srv.LockInfo(s.lx.ID())
		return info.State.RW().Owner == 0
	})
	time.Sleep(20 * time.Millisecond)
	s.p.sever()
	if err := <-got; !errors.Is(err, dlock.ErrConnLost) {
		t.Fatalf("Unlock = %v, want ErrConnLost", err)
	}
	r := s.recovered(t)
	if s.lx.Held() {
		t.Fatal("x still believes it holds the lock its unlock released")
	}
	if len(r.Lost) != 1 || r.Lost[0] != s.lx {
		t.Fatalf("report lost %v, want the unlocked lock", r.Lost)
	}
	if o := s.x.Outcomes(); o.Lost != 1 || o.Resolved != o.Unknown {
		t.Fatalf("outcomes %+v", o)
	}
	mustTry(t, s.lh, false, true)
}

// TestRecoveryConnectionBlip: a new primary waits for two clients; client a
// uploads its locks and loses its connection before ReinitDone. a registers
// again at once, and the server becomes ready as soon as both finished —
// without waiting for a's session to expire — with a's locks kept.
func TestRecoveryConnectionBlip(t *testing.T) {
	ctx := testCtx(t)
	old := dlocktest.NewServer(t, nil)
	a, err := dlock.Dial(ctx, old.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := dlock.Dial(ctx, old.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	la := open(t, a, "blip-rw", dlock.LockOptions{Type: dlock.RW})
	lf := open(t, a, "blip-fair", dlock.LockOptions{Type: dlock.Fair, TTL: time.Minute})
	mustTry(t, la, true, true)
	mustTry(t, lf, true, true)
	old.Close()

	srv := dlocktest.NewServer(t, &dlockserver.Config{RecoveryClients: 2, SessionTimeout: -1})
	p := newFaultProxy(t, srv.Addr)
	if err := a.Reinit(ctx, p.Addr()); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateAllLocks(ctx); err != nil {
		t.Fatal(err)
	}
	p.sever() // before ReinitDone
	start := time.Now()
	if err := a.Reinit(ctx, srv.Addr); err != nil {
		t.Fatalf("Reinit after a blip during recovery: %v", err)
	}
	if err := a.UpdateAllLocks(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.ReinitDone(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.Ready() {
		t.Fatal("ready before b came back")
	}
	recoverManually(t, b, srv.Addr)
	waitFor(t, "the server to become ready", srv.Ready)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ready %v after the blip", d)
	}
	kept, lost, err := a.Revalidate(ctx)
	if err != nil || len(kept) != 2 || len(lost) != 0 {
		t.Fatalf("Revalidate = kept %d lost %d, %v; want both kept", len(kept), len(lost), err)
	}
	info, _ := srv.LockInfo(la.ID())
	if n := info.State.RW().RCount; n != 1 {
		t.Fatalf("rw shared count after uploading twice = %d, want 1", n)
	}
	// b cannot write-lock what a holds shared; a unlocks, then b can.
	lb := open(t, b, "blip-rw", dlock.LockOptions{Type: dlock.RW})
	mustTry(t, lb, false, false)
	if err := la.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	mustTry(t, lb, false, true)
}
