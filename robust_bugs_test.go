package dlock_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// TestRobustnessReentrantAfterSessionLoss: a client holds a lock, its path
// to the server is cut (black-holed, then severed) for longer than the
// session timeout, so the server removes it and grants the lock to another
// client. A Lock (or RLock) the cut-off client makes meanwhile must not
// return nil: it does not hold the lock any more (found by
// TestRobustnessRecoveryBlip, where a reentrant RLock answered from the
// cache succeeded while another client held the lock exclusively).
// An RW reentry, answered by the cache, now first confirms the hold with the
// server.
func TestRobustnessReentrantAfterSessionLoss(t *testing.T) {
	for _, typ := range []dlock.LockType{dlock.RW, dlock.Atomic} {
		t.Run(typ.String(), func(t *testing.T) {
			ctx := testCtx(t)
			srv := dlocktest.NewServer(t, &dlockserver.Config{SessionTimeout: time.Second})
			p := newFaultProxy(t, srv.Addr)
			a, err := dlock.Dial(ctx, srv.Addr, &dlock.Config{AutoRecover: true, DialTimeout: time.Second, DialContext: p.dial})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			b := srv.Dial(t)
			opts := dlock.LockOptions{Type: typ, TTL: 30 * time.Second}
			la := open(t, a, "x", opts)
			lb := open(t, b, "x", opts)
			if err := la.Lock(ctx); err != nil {
				t.Fatal(err)
			}
			p.setRefuse(true) // the server seems down to a: its recovery cannot reconnect
			p.sever()
			// The server notices the loss, keeps a's session for 1 s, then
			// removes a and hands the lock to b.
			bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := lb.Lock(bctx); err != nil {
				t.Fatalf("b never got the lock after a's session expired: %v", err)
			}
			actx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			if err := la.Lock(actx); err == nil {
				t.Errorf("a's Lock returned nil while b holds the lock (a's session was removed by the server)")
			}
			if la.Held() {
				t.Logf("a's cache still says it holds the lock")
			}
			p.setRefuse(false)
		})
	}
}

// TestRobustnessUnlockDuringRecovery: a client holds an RW lock when the
// primary dies; while the new primary waits for another client, the holder
// recovers automatically and calls Unlock. Whatever Unlock answers must be
// true: if it says the client does not hold the lock, the lock must not
// come back as the client's when recovery finishes. (In a soak of
// TestRobustnessRecoveryBlip, an Unlock retried across a dropped connection
// during recovery answered ErrLockNotGet, the hold was restored, and every
// later Lock of that worker was a local reentry; this test covers the plain
// case, which answers ErrNotReady.)
func TestRobustnessUnlockDuringRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var sw pipeSwitch
		old := dlocktest.NewPipeServer(t, nil)
		sw.set(old)
		a := dialVia(t, &sw, dlock.Config{AutoRecover: true})
		b := dialVia(t, &sw, dlock.Config{})
		la := open(t, a, "r", dlock.LockOptions{Type: dlock.RW})
		lb := open(t, b, "r", dlock.LockOptions{Type: dlock.RW})
		mustTry(t, la, false, true)
		old.Close()
		srv := dlocktest.NewPipeServer(t, &dlockserver.Config{RecoveryClients: 2})
		sw.set(srv)
		time.Sleep(5 * time.Second) // a re-registers and uploads; the server waits for b
		uerr := la.Unlock(ctx)
		t.Logf("Unlock during recovery: %v (held after: %v)", uerr, la.Held())
		recoverManually(t, b, "pipe")
		time.Sleep(5 * time.Second) // a's recovery finishes
		synctest.Wait()
		if uerr == nil || errors.Is(uerr, dlock.ErrNotReady) || unknownOutcome(uerr) {
			return // nothing claimed that a lost the lock
		}
		// Unlock said a does not hold the lock: then b can take it.
		ok, err := lb.TryLock(ctx)
		if err != nil || !ok {
			t.Errorf("Unlock during recovery said %v, yet after recovery a holds the lock (held %v) and b's TryLock = %v, %v", uerr, la.Held(), ok, err)
		}
	})
}

// holdUpload is a connection that holds back the client's lock upload to a
// new primary (TUpdateLocks) until release is closed.
type holdUpload struct {
	net.Conn
	release chan struct{}
}

func (c *holdUpload) Write(p []byte) (int, error) {
	if containsFrame(p, wire.TUpdateLocks) {
		<-c.release
	}
	return c.Conn.Write(p)
}

// TestRobustnessUnlockWhileUploading: while a client's automatic recovery
// is uploading its locks to a new primary, the client's Unlock of a lock it
// holds answers ErrLockNotGet ("lock not opened by this client"), yet the
// upload then restores the hold: the caller was told it does not hold a
// lock it still holds, and nobody else can take it. (Found in a soak of
// TestRobustnessRecoveryBlip: the worker believed its unlock failed for
// good, and the lock was never free again.) DLock's C API answers
// DLOCK_LOCK_NOT_GET for a parked lock; the Go API should say what
// happened: not ready, try again.
func TestRobustnessUnlockWhileUploading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var sw pipeSwitch
		old := dlocktest.NewPipeServer(t, nil)
		sw.set(old)
		release := make(chan struct{})
		var relOnce sync.Once
		defer relOnce.Do(func() { close(release) })
		cfg := &dlock.Config{AutoRecover: true, DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			nc, err := sw.dial(ctx, network, address)
			if err != nil {
				return nil, err
			}
			return &holdUpload{Conn: nc, release: release}, nil
		}}
		a, err := dlock.Dial(ctx, "pipe", cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		la := open(t, a, "r", dlock.LockOptions{Type: dlock.RW})
		mustTry(t, la, false, true)
		old.Close()
		srv := dlocktest.NewPipeServer(t, &dlockserver.Config{RecoveryClients: 1})
		sw.set(srv)
		time.Sleep(time.Second) // a re-registers; its upload is held back
		synctest.Wait()
		uerr := la.Unlock(ctx)
		relOnce.Do(func() { close(release) })
		for !srv.Ready() {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second) // a's recovery finishes
		lb := open(t, srv.Dial(t), "r", dlock.LockOptions{Type: dlock.RW})
		ok, err := lb.TryLock(ctx)
		if errors.Is(uerr, dlock.ErrLockNotGet) && !ok {
			t.Errorf("Unlock during the upload = %v, yet after recovery a holds the lock (Held %v) and another client's TryLock = %v, %v", uerr, la.Held(), ok, err)
		}
		t.Logf("Unlock during the upload: %v; another client's TryLock after recovery: %v, %v", uerr, ok, err)
	})
}
