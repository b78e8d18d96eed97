package dlock_test

// Tests of leases, session timeouts, deadlines and recovery deadlines run in
// testing/synctest bubbles against in-memory servers (dlocktest.NewPipeServer):
// time passes only when every goroutine of the bubble is blocked, so a
// one-second lease runs out at once, and the tests can assert the exact
// instant at which the server acted.

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
)

// pipeSwitch routes the clients' dials to the current in-memory server, so
// that a test can replace the primary "on the same address".
type pipeSwitch struct {
	mu     sync.Mutex
	cur    *dlocktest.Server
	refuse bool // dials fail: the server seems down
}

func (p *pipeSwitch) setRefuse(v bool) {
	p.mu.Lock()
	p.refuse = v
	p.mu.Unlock()
}

func (p *pipeSwitch) set(s *dlocktest.Server) {
	p.mu.Lock()
	p.cur = s
	p.mu.Unlock()
}

func (p *pipeSwitch) dial(ctx context.Context, network, address string) (net.Conn, error) {
	p.mu.Lock()
	s, refuse := p.cur, p.refuse
	p.mu.Unlock()
	if refuse {
		return nil, errors.New("connection refused (pipeSwitch)")
	}
	return s.DialContext(ctx, network, address)
}

// dialVia registers a client through sw, closed when the test ends.
func dialVia(t *testing.T, sw *pipeSwitch, cfg dlock.Config) *dlock.Client {
	t.Helper()
	cfg.DialContext = sw.dial
	c, err := dlock.Dial(context.Background(), "pipe", &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestBlockingLockWokenOnUnlockAndExpiry: a blocked Lock is granted when the
// holder unlocks, and when the holder's lease runs out — exactly then, on
// the server's whole-second clock.
func TestBlockingLockWokenOnUnlockAndExpiry(t *testing.T) {
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.Fair} {
		t.Run(typ.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				srv := dlocktest.NewPipeServer(t, nil)
				ctx := context.Background()
				a, b := srv.Dial(t), srv.Dial(t)
				name := "wake-" + typ.String()
				la := open(t, a, name, dlock.LockOptions{Type: typ, TTL: 3 * time.Second})
				lb := open(t, b, name, dlock.LockOptions{Type: typ, TTL: time.Minute})

				// Woken on unlock.
				mustTry(t, la, false, true)
				got := make(chan error, 1)
				go func() { got <- lb.Lock(ctx) }()
				synctest.Wait()
				if n := waiters(srv, lb); n != 1 {
					t.Fatalf("%d waiters, want b queued", n)
				}
				if err := la.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
				if err := <-got; err != nil {
					t.Fatalf("Lock woken by unlock: %v", err)
				}
				if err := lb.Unlock(ctx); err != nil {
					t.Fatal(err)
				}

				// Woken on expiry: a's 3-second lease runs out while b
				// waits. The server counts whole seconds: a lease granted
				// within second s lasts through second s+3, so it ends
				// between 3 and 4 seconds after the grant.
				time.Sleep(300 * time.Millisecond) // off a second boundary
				start := time.Now()
				mustTry(t, la, false, true)
				go func() { got <- lb.Lock(ctx) }()
				if err := <-got; err != nil {
					t.Fatalf("Lock woken by expiry: %v", err)
				}
				waited := time.Since(start)
				if waited < 3*time.Second || waited > 4*time.Second {
					t.Errorf("granted %v after a's 3-second lease began, want within [3 s, 4 s]", waited)
				}
				if !lb.Held() {
					t.Fatal("b does not hold the lock after the grant")
				}
				if err := la.Unlock(ctx); !errors.Is(err, dlock.ErrFail) {
					t.Errorf("Unlock of the expired, re-taken hold = %v, want ErrFail", err)
				}
				if err := lb.Unlock(ctx); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

// TestHolderDisconnect: an RW lock (no lease) is freed when its holder
// deregisters (at once) or when the session of a holder that vanished
// expires (exactly SessionTimeout after the server saw the connection go).
func TestHolderDisconnect(t *testing.T) {
	for _, how := range []string{"shutdown", "close"} {
		t.Run(how, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const session = 7 * time.Second
				srv := dlocktest.NewPipeServer(t, &dlockserver.Config{SessionTimeout: session})
				ctx := context.Background()
				a, b := srv.Dial(t), srv.Dial(t)
				name := "rw-" + how // RW locks never expire: only the disconnect frees them
				la := open(t, a, name, dlock.LockOptions{Type: dlock.RW})
				lb := open(t, b, name, dlock.LockOptions{Type: dlock.RW})
				mustTry(t, la, false, true)
				got := make(chan error, 1)
				go func() { got <- lb.Lock(ctx) }()
				synctest.Wait()
				if n := waiters(srv, lb); n != 1 {
					t.Fatalf("%d waiters, want b queued", n)
				}
				start := time.Now()
				want := time.Duration(0)
				if how == "shutdown" {
					if err := a.Shutdown(ctx); err != nil {
						t.Fatal(err)
					}
				} else {
					a.Close()
					want = session
				}
				if err := <-got; err != nil {
					t.Fatalf("Lock after holder %s: %v", how, err)
				}
				if waited := time.Since(start); waited != want {
					t.Errorf("granted %v after the holder's %s, want %v", waited, how, want)
				}
			})
		})
	}
}

// TestLockDeadlineAndCancel: a blocked Lock returns DeadlineExceeded at its
// deadline (not before), a cancelled one Canceled; either way the request is
// withdrawn and nothing is granted behind the caller's back.
func TestLockDeadlineAndCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		srv := dlocktest.NewPipeServer(t, nil)
		ctx := context.Background()
		a, b, c := srv.Dial(t), srv.Dial(t), srv.Dial(t)
		for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair} {
			name := "dl-" + typ.String()
			la := open(t, a, name, dlock.LockOptions{Type: typ})
			lb := open(t, b, name, dlock.LockOptions{Type: typ})
			lc := open(t, c, name, dlock.LockOptions{Type: typ})
			mustTry(t, la, false, true)

			start := time.Now()
			dctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			err := lb.Lock(dctx)
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%v: Lock past its deadline = %v, want DeadlineExceeded", typ, err)
			}
			if waited := time.Since(start); waited < 1500*time.Millisecond {
				t.Fatalf("%v: DeadlineExceeded after %v, before the 1.5 s deadline", typ, waited)
			}

			cctx, cancel := context.WithCancel(ctx)
			got := make(chan error, 1)
			go func() { got <- lb.Lock(cctx) }()
			synctest.Wait()
			if n := waiters(srv, lb); n != 1 {
				select {
				case err := <-got:
					t.Fatalf("%v: Lock returned %v before it was cancelled", typ, err)
				default:
				}
				t.Fatalf("%v: %d waiters, want b queued", typ, n)
			}
			cancel()
			if err := <-got; !errors.Is(err, context.Canceled) {
				t.Fatalf("%v: cancelled Lock = %v, want Canceled", typ, err)
			}
			synctest.Wait()
			if n := waiters(srv, lb); n != 0 {
				t.Fatalf("%v: %d waiters left after the cancel", typ, n)
			}
			if lb.Held() {
				t.Fatalf("%v: b holds the lock after giving up", typ)
			}
			if err := la.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			// Nothing was granted to b behind its back: c gets the lock at once.
			mustTry(t, lc, false, true)
			if err := lc.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestRecoveryConflicts: two clients report the same atomic lock; the later
// expiry wins and the loser learns it on re-validation.
func TestRecoveryConflicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var sw pipeSwitch
		old := dlocktest.NewPipeServer(t, nil)
		sw.set(old)
		a, b := dialVia(t, &sw, dlock.Config{}), dialVia(t, &sw, dlock.Config{})
		la := open(t, a, "x", dlock.LockOptions{Type: dlock.Atomic, TTL: 2 * time.Second})
		lb := open(t, b, "x", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
		mustTry(t, la, false, true)
		time.Sleep(3 * time.Second) // a's 2-second lease runs out (whole seconds: within 3 s)
		mustTry(t, lb, false, true)
		// a still believes it holds the lock; b holds it with a later expiry.
		old.Close()

		srv := dlocktest.NewPipeServer(t, &dlockserver.Config{RecoveryClients: 2})
		sw.set(srv)
		recoverManually(t, a, "pipe")
		recoverManually(t, b, "pipe")
		_, lostA, err := a.Revalidate(ctx)
		if err != nil || len(lostA) != 1 {
			t.Fatalf("a: Revalidate lost %v, %v; want its stale hold lost", lostA, err)
		}
		keptB, _, err := b.Revalidate(ctx)
		if err != nil || len(keptB) != 1 {
			t.Fatalf("b: Revalidate kept %v, %v; want its hold kept", keptB, err)
		}
		if info, _ := srv.LockInfo(lb.ID()); info.State.Atomic().Owner != b.ID() {
			t.Errorf("owner %d after the merge, want b %d", info.State.Atomic().Owner, b.ID())
		}
	})
}

// TestRecoveryDeadline: a client that never returns does not keep the
// server in recovery past RecoveryTimeout — it becomes ready exactly then —
// and the reported locks stay.
func TestRecoveryDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var sw pipeSwitch
		old := dlocktest.NewPipeServer(t, nil)
		sw.set(old)
		a := dialVia(t, &sw, dlock.Config{})
		la := open(t, a, "kept", dlock.LockOptions{Type: dlock.RW})
		mustTry(t, la, false, true)
		old.Close()

		const deadline = 30 * time.Second
		start := time.Now()
		srv := dlocktest.NewPipeServer(t, &dlockserver.Config{RecoveryClients: 2, RecoveryTimeout: deadline})
		sw.set(srv)
		recoverManually(t, a, "pipe")
		for !srv.Ready() {
			time.Sleep(10 * time.Millisecond)
		}
		if took := time.Since(start); took < deadline || took > deadline+10*time.Millisecond {
			t.Errorf("ready after %v, want the %v recovery deadline", took, deadline)
		}
		if kept, _, err := a.Revalidate(ctx); err != nil || len(kept) != 1 {
			t.Fatalf("Revalidate after the deadline: kept %d, %v", len(kept), err)
		}
		if _, err := srv.Dial(t).OpenLock(ctx, "kept", dlock.LockOptions{Type: dlock.RW}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestAutoRecover: with AutoRecover on, clients recover by themselves when
// the primary is replaced, and say what survived: a lease that ran out
// during the outage is reported lost.
func TestAutoRecover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		var sw pipeSwitch
		old := dlocktest.NewPipeServer(t, nil)
		sw.set(old)
		reports := make(chan dlock.RecoveryReport, 2)
		cfg := dlock.Config{AutoRecover: true, OnRecover: func(r dlock.RecoveryReport) { reports <- r }}
		a, b := dialVia(t, &sw, cfg), dialVia(t, &sw, cfg)
		la := open(t, a, "auto", dlock.LockOptions{Type: dlock.Fair, TTL: time.Minute})
		lb := open(t, b, "short", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Second})
		mustTry(t, la, false, true)
		mustTry(t, lb, false, true)
		old.Close()
		time.Sleep(2100 * time.Millisecond) // b's one-second lease runs out during the outage

		srv := dlocktest.NewPipeServer(t, &dlockserver.Config{RecoveryClients: 2})
		sw.set(srv)
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
			case <-time.After(time.Minute):
				t.Fatal("no recovery report")
			}
		}
		if lb.Held() {
			t.Error("b still believes it holds the lock whose lease ran out")
		}
		if err := la.Unlock(ctx); err != nil {
			t.Errorf("unlock after automatic recovery: %v", err)
		}
	})
}

// TestAutoRecoverWaitsForReady: a client holding nothing reports its
// recovery only once the new primary is ready — not while it waits for
// another client, however long that takes.
func TestAutoRecoverWaitsForReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sw pipeSwitch
		old := dlocktest.NewPipeServer(t, nil)
		sw.set(old)
		reports := make(chan dlock.RecoveryReport, 2)
		dialVia(t, &sw, dlock.Config{AutoRecover: true, OnRecover: func(r dlock.RecoveryReport) { reports <- r }})
		b := dialVia(t, &sw, dlock.Config{})
		old.Close()
		srv := dlocktest.NewPipeServer(t, &dlockserver.Config{RecoveryClients: 2})
		sw.set(srv)
		time.Sleep(time.Minute) // a finishes its part; the server waits for b
		synctest.Wait()
		if n := srv.Clients(); n != 1 {
			t.Fatalf("%d clients re-registered, want a", n)
		}
		select {
		case r := <-reports:
			t.Fatalf("report %+v while the server is not ready", r)
		default:
		}
		recoverManually(t, b, "pipe")
		select {
		case r := <-reports:
			if r.Err != nil || !srv.Ready() {
				t.Fatalf("report %+v, ready %v", r, srv.Ready())
			}
		case <-time.After(time.Minute):
			t.Fatal("no report after the server became ready")
		}
	})
}

// TestRemovedClientHandles: once the server removed a client (its session
// ran out while it could not reconnect), its handles answer
// ErrClientRemovedByServer.
func TestRemovedClientHandles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const session = 10 * time.Second
		srv := dlocktest.NewPipeServer(t, &dlockserver.Config{SessionTimeout: session})
		ctx := context.Background()
		var sw pipeSwitch
		sw.set(srv)
		reports := make(chan dlock.RecoveryReport, 8)
		var conns []net.Conn
		var mu sync.Mutex
		cfg := &dlock.Config{AutoRecover: true, OnRecover: func(r dlock.RecoveryReport) { reports <- r },
			DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
				nc, err := sw.dial(ctx, network, address)
				if err == nil {
					mu.Lock()
					conns = append(conns, nc)
					mu.Unlock()
				}
				return nc, err
			}}
		c, err := dlock.Dial(ctx, "pipe", cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		l := open(t, c, "removed", dlock.LockOptions{Type: dlock.RW})
		mustTry(t, l, false, true)
		sw.setRefuse(true)
		mu.Lock()
		conns[0].Close() // severed; reconnecting fails
		mu.Unlock()
		start := time.Now()
		for srv.Clients() != 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if waited := time.Since(start); waited < session || waited > session+time.Second {
			t.Errorf("client removed %v after the loss, want the %v session timeout", waited, session)
		}
		sw.setRefuse(false)
		var rep dlock.RecoveryReport
		select {
		case rep = <-reports:
		case <-time.After(time.Minute):
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
	})
}
