package dlock_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

// TestDialContextUsedByRecovery checks that Config.DialContext makes every
// connection: the first one, and the one automatic recovery opens after the
// first is severed under the client.
func TestDialContextUsedByRecovery(t *testing.T) {
	ctx := testCtx(t)
	srv := dlocktest.NewServer(t, nil)
	var mu sync.Mutex
	var conns []net.Conn
	var dials atomic.Int32
	recovered := make(chan dlock.RecoveryReport, 1)
	cfg := &dlock.Config{
		AutoRecover: true,
		OnRecover:   func(r dlock.RecoveryReport) { recovered <- r },
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			dials.Add(1)
			if network != "tcp" || address != srv.Addr {
				return nil, errors.New("unexpected " + network + " " + address)
			}
			var d net.Dialer
			nc, err := d.DialContext(ctx, network, address)
			if err == nil {
				mu.Lock()
				conns = append(conns, nc)
				mu.Unlock()
			}
			return nc, err
		},
	}
	c, err := dlock.Dial(ctx, srv.Addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.OpenLock(ctx, "seam", dlock.LockOptions{Type: dlock.RW})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("Dial used DialContext %d times, want 1", n)
	}
	mu.Lock()
	conns[0].Close() // sever the client's connection under it
	mu.Unlock()
	select {
	case r := <-recovered:
		if r.Err != nil || len(r.Kept) != 1 {
			t.Fatalf("recovery report %+v", r)
		}
	case <-ctx.Done():
		t.Fatal("no recovery")
	}
	if n := dials.Load(); n < 2 {
		t.Fatalf("recovery did not dial through DialContext (%d dials)", n)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("unlock after recovery: %v", err)
	}
}

// TestServeConn serves a connection the test made itself (one end of a
// net.Pipe) and checks that ServeConn returns when the client leaves and
// that a shut-down server refuses one.
func TestServeConn(t *testing.T) {
	ctx := testCtx(t)
	srv, err := dlockserver.New(dlockserver.Config{})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	cfg := &dlock.Config{DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
		cli, s := net.Pipe()
		go func() { served <- srv.ServeConn(s) }()
		return cli, nil
	}}
	c, err := dlock.Dial(ctx, "in-memory", cfg)
	if err != nil {
		t.Fatal(err)
	}
	o, err := c.CreateAtomic64(ctx, "n", 40, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := o.FetchAndAdd(ctx, 2); err != nil || v != 40 {
		t.Fatalf("FetchAndAdd = %d, %v", v, err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ServeConn = %v", err)
		}
	case <-ctx.Done():
		t.Fatal("ServeConn did not return after the client left")
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	_, s := net.Pipe()
	if err := srv.ServeConn(s); !errors.Is(err, dlockserver.ErrServerClosed) {
		t.Fatalf("ServeConn on a closed server = %v", err)
	}
}

// TestPipeServerSessionTimeout runs in a synctest bubble against the
// in-memory server: a client whose connection is lost keeps its lock for
// exactly the session timeout, then the waiter behind it is granted —
// with no real second slept.
func TestPipeServerSessionTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := dlocktest.NewPipeServer(t, &dlockserver.Config{SessionTimeout: 30 * time.Second})
		ctx := context.Background()
		a, b := srv.Dial(t), srv.Dial(t)
		opts := dlock.LockOptions{Type: dlock.RW}
		la, _ := a.OpenLock(ctx, "s", opts)
		lb, err := b.OpenLock(ctx, "s", opts)
		if err != nil {
			t.Fatal(err)
		}
		if err := la.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		lost := time.Now()
		a.Close() // no deregistration: the server keeps a for its session
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := lb.Lock(wctx); err != nil {
			t.Fatalf("waiter: %v", err)
		}
		if waited := time.Since(lost); waited != 30*time.Second {
			t.Fatalf("granted after %v, want the 30 s session timeout", waited)
		}
	})
}
