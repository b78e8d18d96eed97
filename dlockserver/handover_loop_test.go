package dlockserver_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

// waitWaiters waits until lock name has n blocking requests queued.
func waitWaiters(t *testing.T, c *dlock.Client, name string, n int) {
	t.Helper()
	for range 500 {
		infos, err := c.Locks(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if len(infos) == 1 && len(infos[0].Waiters) == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: never %d queued requests", name, n)
}

// TestLoopHandlesGrantedUnlockFirst: when an event loop finds, in one pass,
// the unlock of the connection it last sent a grant to and another
// connection's request, it handles the unlock first and writes the grant
// before it handles the other request, so the hand-over waits for neither.
// Observed through fencing tokens (one counter for every lock): the waiter
// the unlock grants gets a lower token than the other request, which
// arrived at the server before the unlock; and the waiter has its grant
// while the other request is held up.
func TestLoopHandlesGrantedUnlockFirst(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("event loops serve connections on Linux only")
	}
	srv := dlocktest.NewServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Three clients served by one loop (x, y, z), and one more (w).
	byLoop := map[any][]*dlock.Client{}
	var trio []*dlock.Client
	for i := 0; i < 64 && trio == nil; i++ {
		c := srv.Dial(t)
		lp := dlockserver.LoopOf(srv.Server, c.ID())
		if lp == nil {
			t.Fatal("connection not served by an event loop")
		}
		byLoop[lp] = append(byLoop[lp], c)
		if len(byLoop[lp]) == 3 {
			trio = byLoop[lp]
		}
	}
	if trio == nil {
		t.Fatal("no event loop serves three of 64 connections")
	}
	x, y, z := trio[0], trio[1], trio[2]
	w := srv.Dial(t)

	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	openOn := func(c *dlock.Client, name string) *dlock.Lock {
		l, err := c.OpenLock(ctx, name, opts)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	const name = "order/contended"
	xl, wl := openOn(x, name), openOn(w, name)
	// Holding a stripe holds up the requests on its locks and those of the
	// connections that look their client up there. x's unlock needs xl's
	// stripe and x's home stripe; y's lock is on neither.
	stripe := func(l *dlock.Lock) int { return int(l.ID()) % dlockserver.NumStripes }
	xNeeds := map[int]bool{stripe(xl): true, dlockserver.HomeStripe(srv.Server, x.ID()): true}
	var ym *dlock.Lock
	for i := range 64 {
		l := openOn(y, fmt.Sprintf("order/other/%d", i))
		if !xNeeds[stripe(l)] {
			ym = l
			break
		}
	}
	if ym == nil {
		t.Fatal("no lock on a stripe x does not need")
	}
	// z's lock is on a stripe of its own: holding that stripe stalls the
	// loop in the middle of a pass.
	var zl *dlock.Lock
	for i := range 64 {
		l := openOn(z, fmt.Sprintf("order/stall/%d", i))
		if s := stripe(l); !xNeeds[s] && s != stripe(ym) && s != dlockserver.HomeStripe(srv.Server, z.ID()) {
			zl = l
			break
		}
	}
	if zl == nil {
		t.Fatal("no lock on a free stripe")
	}

	// x gets the lock by a grant (w held it), then w queues behind x.
	if ok, err := wl.TryLock(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	xDone := make(chan error, 1)
	go func() { xDone <- xl.Lock(ctx) }()
	waitWaiters(t, w, name, 1)
	if err := wl.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-xDone; err != nil {
		t.Fatal(err)
	}
	wDone := make(chan error, 1)
	go func() { wDone <- wl.Lock(ctx) }()
	waitWaiters(t, w, name, 1)

	// Stall the loop on z's request (held at its lock's stripe); meanwhile
	// y's request and then x's unlock arrive, so that the loop finds both
	// ready, in that order, in its next pass.
	until := func(what string, cond func() bool) {
		t.Helper()
		for range 2000 {
			if cond() {
				return
			}
			time.Sleep(time.Millisecond)
		}
		t.Fatalf("never %s", what)
	}
	xProbe := dlockserver.LoopProbe(srv.Server, x.ID())
	yProbe := dlockserver.LoopProbe(srv.Server, y.ID())
	zProbe := dlockserver.LoopProbe(srv.Server, z.ID())
	release := dlockserver.HoldStripe(srv.Server, zl.ID())
	zDone := make(chan error, 1)
	go func() {
		_, err := zl.TryLock(ctx)
		zDone <- err
	}()
	// Stalled: in a pass, z's request read, for 20 ms on end (a pass that
	// only serves a heartbeat ends within microseconds).
	held := 0
	until("the loop stalled on z's request", func() bool {
		if busy, n := zProbe(); busy && n == 0 {
			held++
		} else {
			held = 0
		}
		return held == 20
	})
	yDone := make(chan error, 1)
	go func() {
		ok, err := ym.TryLock(ctx)
		if err == nil && !ok {
			err = fmt.Errorf("TryLock of a free lock failed")
		}
		yDone <- err
	}()
	until("y's request arrived", func() bool { _, n := yProbe(); return n > 0 })
	xUnlock := make(chan error, 1)
	go func() { xUnlock <- xl.Unlock(ctx) }()
	until("x's unlock arrived", func() bool { _, n := xProbe(); return n > 0 })
	// The next pass handles x's unlock, writes w's grant, then stalls on
	// y's request (its stripe held): w gets its grant while the pass is
	// still going, so the grant did not wait for the rest of the pass.
	releaseY := dlockserver.HoldStripe(srv.Server, ym.ID())
	release()
	select {
	case err := <-wDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		releaseY()
		t.Fatal("w got no grant while the pass was held up on y's request: the unlock was not handled first, or its grant waited for the rest of the pass")
	}
	releaseY()

	for _, ch := range []chan error{zDone, yDone, xUnlock} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if tw, ty := wl.Token(), ym.Token(); tw >= ty {
		t.Errorf("the unlock's grant got token %d, the request that arrived before it %d: the unlock was not handled first", tw, ty)
	}
}
