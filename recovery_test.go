package dlock_test

import (
	"errors"
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
	if info, _ := srv.LockInfo(rwA.ID()); info.State.RW().RCount != 2 {
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
