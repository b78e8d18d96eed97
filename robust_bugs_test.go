package dlock_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

// TestRobustnessReentrantAfterSessionLoss: a client holds a lock, its path
// to the server is cut (black-holed, then severed) for longer than the
// session timeout, so the server removes it and grants the lock to another
// client. A Lock (or RLock) the cut-off client makes meanwhile must not
// return nil: it does not hold the lock any more (found by
// TestRobustnessRecoveryBlip, where a reentrant RLock answered from the
// cache succeeded while another client held the lock exclusively).
//
// It fails on the current client (the cache answers a reentrant hold
// without asking the server whether the hold survived); until that is
// fixed it runs only with DLOCK_KNOWN_BUGS=1.
func TestRobustnessReentrantAfterSessionLoss(t *testing.T) {
	if os.Getenv("DLOCK_KNOWN_BUGS") == "" {
		t.Skip("known safety bug (a reentrant Lock answered from the cache after the server removed the client); run with DLOCK_KNOWN_BUGS=1")
	}
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
