package dlock_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// TestSessionExpiredReportsHoldsLost: a client whose server is gone for
// longer than its session timeout reports every hold lost (never keeps it
// silently) and stops recovering.
func TestSessionExpiredReportsHoldsLost(t *testing.T) {
	ctx := testCtx(t)
	srv := dlocktest.NewServer(t, nil)
	reports := make(chan dlock.RecoveryReport, 4)
	c, err := dlock.Dial(ctx, srv.Addr, &dlock.Config{AutoRecover: true, SessionTimeout: 500 * time.Millisecond,
		OnRecover: func(r dlock.RecoveryReport) { reports <- r }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := open(t, c, "held", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	mustTry(t, l, false, true)
	lost := time.Now()
	srv.Close()
	select {
	case r := <-reports:
		if !errors.Is(r.Err, dlock.ErrSessionExpired) || len(r.Lost) != 1 || r.Lost[0] != l || l.Held() {
			t.Fatalf("report %+v, held %v: want ErrSessionExpired with the lock lost", r, l.Held())
		}
		if d := time.Since(lost); d < 500*time.Millisecond {
			t.Fatalf("holds reported lost after %v, before the session timeout", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no report after the session timeout")
	}
}
