package dlock_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

// frameCounter wraps the client's connections and counts the request
// frames it writes, by type (the client writes whole frames).
type frameCounter struct {
	mu     sync.Mutex
	frames map[byte]int
	buf    []byte
}

type countingConn struct {
	net.Conn
	fc *frameCounter
}

func (c countingConn) Write(b []byte) (int, error) {
	c.fc.mu.Lock()
	c.fc.buf = append(c.fc.buf, b...)
	for len(c.fc.buf) >= 16 {
		n := 16 + int(binary.LittleEndian.Uint32(c.fc.buf[8:12]))
		if len(c.fc.buf) < n {
			break
		}
		c.fc.frames[c.fc.buf[3]]++
		c.fc.buf = c.fc.buf[n:]
	}
	c.fc.mu.Unlock()
	return c.Conn.Write(b)
}

// take returns the counts since the last call.
func (fc *frameCounter) take() map[byte]int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	m := fc.frames
	fc.frames = map[byte]int{}
	return m
}

func dialCounting(t *testing.T, addr string) (*dlock.Client, *frameCounter) {
	t.Helper()
	fc := &frameCounter{frames: map[byte]int{}}
	var d net.Dialer
	c, err := dlock.Dial(testCtx(t), addr, &dlock.Config{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			nc, err := d.DialContext(ctx, network, address)
			if err != nil {
				return nil, err
			}
			return countingConn{nc, fc}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fc.take() // registration
	return c, fc
}

// Frame types as PROTOCOL.md numbers them.
const (
	typeGetLock     = 0x10
	typeLockOp      = 0x20
	typeOpenLockOp  = 0x27
	typeLockOpReply = 0xA0
)

// TestOpenAndLockOneRequest: the first use of a lock is one request
// (TOpenLockOp) and one reply, for every lock type, trylock and blocking;
// the later uses are plain lock requests; a contender's open-and-trylock
// finds the lock busy without taking it.
func TestOpenAndLockOneRequest(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	c, fc := dialCounting(t, srv.Addr)
	other := srv.Dial(t)
	for _, typ := range lockTypes {
		opts := dlock.LockOptions{Type: typ, TTL: time.Minute}
		name := "one-request/" + typ.String()
		l, ok, err := c.OpenAndTryLock(ctx, name, opts)
		if err != nil || !ok || l == nil || !l.Held() || l.Token() == 0 {
			t.Fatalf("%v: OpenAndTryLock = %v, %v, %v (held %v, token %d)", typ, l, ok, err, l != nil && l.Held(), l.Token())
		}
		if got := fc.take(); fmt.Sprint(got) != fmt.Sprint(map[byte]int{typeOpenLockOp: 1}) {
			t.Fatalf("%v: OpenAndTryLock sent %v, want one TOpenLockOp", typ, got)
		}
		// Another client: opened, not taken.
		ol, ok, err := other.OpenAndTryLock(ctx, name, opts)
		if err != nil || ok || ol == nil || ol.ID() != l.ID() {
			t.Fatalf("%v: contender's OpenAndTryLock = %v, %v, %v; want the handle, false", typ, ol, ok, err)
		}
		if typ == dlock.Fair {
			if err := ol.Unlock(ctx); err != nil { // give the ticket up
				t.Fatal(err)
			}
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		fc.take()
		// The handle is open: a second open-and-lock is one plain lock request.
		l2, err := c.OpenAndLock(ctx, name, opts)
		if err != nil || l2 != l || !l.Held() {
			t.Fatalf("%v: second OpenAndLock = %v, %v; want the same handle, held", typ, l2, err)
		}
		if got := fc.take(); fmt.Sprint(got) != fmt.Sprint(map[byte]int{typeLockOp: 1}) {
			t.Fatalf("%v: second OpenAndLock sent %v, want one TLockOp", typ, got)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		// OpenLock of the name returns the same handle.
		if l3 := open(t, c, name, opts); l3 != l {
			t.Fatalf("%v: OpenLock after OpenAndTryLock returned another handle", typ)
		}
		fc.take()
		// A blocking first use, waiting for the other client's hold (taken
		// with an open-and-lock too: a lock first opened with OpenLock may
		// have an id the client cannot predict, see TestOpenAndLockMispredicted).
		name = "one-request-block/" + typ.String()
		h, ok, err := other.OpenAndTryLock(ctx, name, opts)
		if err != nil || !ok {
			t.Fatalf("%v: other's OpenAndTryLock = %v, %v", typ, ok, err)
		}
		got := make(chan error, 1)
		var bl *dlock.Lock
		go func() {
			var err error
			bl, err = c.OpenAndLock(ctx, name, opts)
			got <- err
		}()
		waitFor(t, "the open-and-lock to queue", func() bool { return waiters(srv, h) == 1 })
		if err := h.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil || bl == nil || !bl.Held() || bl.ID() != h.ID() {
			t.Fatalf("%v: blocking OpenAndLock = %v (handle %v)", typ, err, bl)
		}
		if got := fc.take(); fmt.Sprint(got) != fmt.Sprint(map[byte]int{typeOpenLockOp: 1}) {
			t.Fatalf("%v: blocking OpenAndLock sent %v, want one TOpenLockOp", typ, got)
		}
		if err := bl.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		fc.take()
	}
}

// TestOpenAndLockErrors: the open's errors are OpenLock's, with a nil
// handle and nothing left open or held.
func TestOpenAndLockErrors(t *testing.T) {
	srv := dlocktest.NewServer(t, &dlockserver.Config{MaxLocks: 2})
	ctx := testCtx(t)
	c := srv.Dial(t)
	other := srv.Dial(t)
	open(t, other, "fair", dlock.LockOptions{Type: dlock.Fair})
	for _, tc := range []struct {
		name string
		opts dlock.LockOptions
		want error
	}{
		{"", dlock.LockOptions{}, dlock.ErrInval},
		{strings.Repeat("x", dlock.MaxDescLen+1), dlock.LockOptions{}, dlock.ErrInval},
		{"bad-type", dlock.LockOptions{Type: 7}, dlock.ErrInval},
		{"bad-ttl", dlock.LockOptions{TTL: -time.Second}, dlock.ErrInval},
		{"fair", dlock.LockOptions{Type: dlock.Atomic}, dlock.ErrGeneric}, // type mismatch
	} {
		l, ok, err := c.OpenAndTryLock(ctx, tc.name, tc.opts)
		if l != nil || ok || !errors.Is(err, tc.want) {
			t.Errorf("OpenAndTryLock(%.20q, %+v) = %v, %v, %v; want nil, false, %v", tc.name, tc.opts, l, ok, err, tc.want)
		}
		l, err = c.OpenAndLock(ctx, tc.name, tc.opts)
		if l != nil || !errors.Is(err, tc.want) {
			t.Errorf("OpenAndLock(%.20q, %+v) = %v, %v; want nil, %v", tc.name, tc.opts, l, err, tc.want)
		}
	}
	if n := srv.Locks(); n != 1 {
		t.Fatalf("server has %d locks after failed opens, want 1", n)
	}
	// The limit: one more lock fits, the next does not.
	if _, ok, err := c.OpenAndTryLock(ctx, "second", dlock.LockOptions{}); err != nil || !ok {
		t.Fatalf("OpenAndTryLock(second) = %v, %v", ok, err)
	}
	l, ok, err := c.OpenAndTryLock(ctx, "third", dlock.LockOptions{})
	if l != nil || ok || !errors.Is(err, dlock.ErrServerNoResource) {
		t.Fatalf("OpenAndTryLock past MaxLocks = %v, %v, %v; want ErrServerNoResource", l, ok, err)
	}
	// A deadline already passed: nothing sent.
	dctx, cancel := context.WithTimeout(ctx, -time.Second)
	defer cancel()
	if l, err := c.OpenAndLock(dctx, "second", dlock.LockOptions{}); l != nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OpenAndLock past its deadline = %v, %v", l, err)
	}
}

// TestOpenAndLockTimeout: a blocking open-and-lock whose ctx ends returns
// the open handle, not held, and leaves no waiter behind.
func TestOpenAndLockTimeout(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	c := srv.Dial(t)
	h := open(t, srv.Dial(t), "timeout", dlock.LockOptions{Type: dlock.Fair})
	mustTry(t, h, false, true)
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	l, err := c.OpenAndLock(wctx, "timeout", dlock.LockOptions{Type: dlock.Fair})
	if l == nil || !errors.Is(err, context.DeadlineExceeded) || l.Held() {
		t.Fatalf("OpenAndLock under a held lock = %v, %v; want the handle, DeadlineExceeded", l, err)
	}
	if n := waiters(srv, h); n != 0 {
		t.Fatalf("%d waiters left", n)
	}
	if err := h.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	mustTry(t, l, false, true)
}

// collidingNames returns two names whose djb2 hashes differ only in the sign
// bit: the first's is positive, so the server gives it that id, which is the
// id an open-and-lock predicts for the second. djb2 of n bytes is linear in
// them (a polynomial in 33), so adding the balanced base-33 digits of 2^31
// to a 7-byte name adds 2^31 to its hash.
func collidingNames(t *testing.T) (string, string) {
	t.Helper()
	djb2 := func(s []byte) uint32 {
		h := uint32(5381)
		for _, c := range s {
			h = h*33 + uint32(c)
		}
		return h
	}
	a := []byte("mmmmmmm")
	b := []byte("mmmmmmm")
	v := int64(1) << 31
	for i := len(b) - 1; i >= 0; i-- {
		r := v % 33
		if r > 16 {
			r -= 33
		}
		b[i] = byte(int64(b[i]) + r)
		v = (v - r) / 33
	}
	if v != 0 || djb2(a)^djb2(b) != 0x80000000 {
		t.Fatalf("no collision: %q %#x, %q %#x", a, djb2(a), b, djb2(b))
	}
	if djb2(a)&0x80000000 != 0 {
		a, b = b, a
	}
	return string(a), string(b)
}

// TestOpenAndLockMispredicted: when the predicted id belongs to another lock
// (on the server, or in the client's own table), the open-and-lock still
// opens and locks the right lock, in two round trips.
func TestOpenAndLockMispredicted(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := collidingNames(t)
	x := srv.Dial(t)
	la := open(t, x, a, dlock.LockOptions{}) // takes the id b would predict
	mustTry(t, la, false, true)
	c, fc := dialCounting(t, srv.Addr)
	for _, cl := range []*dlock.Client{c, x} { // the other client; the same client
		lb, ok, err := cl.OpenAndTryLock(ctx, b, dlock.LockOptions{})
		if err != nil || !ok || lb == nil || lb.Name() != b || lb.ID() == la.ID() {
			t.Fatalf("OpenAndTryLock(%q) = %v, %v, %v", b, lb, ok, err)
		}
		if info, _ := srv.LockInfo(lb.ID()); info.State.Atomic().Owner != cl.ID() {
			t.Fatalf("server: lock %d held by %d; want %d", lb.ID(), info.State.Atomic().Owner, cl.ID())
		}
		if err := lb.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := fc.take(); fmt.Sprint(got) != fmt.Sprint(map[byte]int{typeOpenLockOp: 1, typeLockOp: 2}) {
		t.Fatalf("mispredicted open-and-lock sent %v, want a TOpenLockOp, then the lock and the unlock", got)
	}
	if !la.Held() {
		t.Fatal("the other lock lost its hold")
	}
	if info, _ := srv.LockInfo(la.ID()); info.State.Atomic().Owner != x.ID() {
		t.Fatal("the lock under the predicted id changed hands")
	}
	// A lock opened with OpenLock under a non-positive hash (another id than
	// the prediction) is found by an open-and-lock of the same client.
	if l := open(t, c, a, dlock.LockOptions{}); l.ID() != la.ID() {
		t.Fatal("ids differ between clients")
	}
	lb := open(t, c, b, dlock.LockOptions{})
	got, ok, err := c.OpenAndTryLock(ctx, b, dlock.LockOptions{})
	if err != nil || !ok || got != lb {
		t.Fatalf("OpenAndTryLock of an open name = %v, %v, %v; want its handle", got, ok, err)
	}
}

// TestOpenAndLockLostReply: the reply to an open-and-lock is lost with the
// connection; the client reconnects and releases the hold it never learned
// of, so another client gets the lock.
func TestOpenAndLockLostReply(t *testing.T) {
	for _, typ := range lockTypes {
		t.Run(typ.String(), func(t *testing.T) {
			ctx := testCtx(t)
			srv := dlocktest.NewServer(t, nil)
			p := newFaultProxy(t, srv.Addr)
			reports := make(chan dlock.RecoveryReport, 8)
			x, err := dlock.Dial(ctx, p.Addr(), &dlock.Config{AutoRecover: true,
				OnRecover: func(r dlock.RecoveryReport) { reports <- r }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { x.Close() })
			h := srv.Dial(t)
			opts := dlock.LockOptions{Type: typ, TTL: time.Minute}
			p.blackholeReplies()
			got := make(chan error, 1)
			go func() {
				_, _, err := x.OpenAndTryLock(ctx, "lost-open", opts)
				got <- err
			}()
			waitFor(t, "the server to open the lock", func() bool { return srv.Locks() == 1 })
			lh := open(t, h, "lost-open", opts)
			waitFor(t, "the grant to x", func() bool {
				info, _ := srv.LockInfo(lh.ID())
				switch typ {
				case dlock.Atomic:
					return info.State.Atomic().Owner == x.ID()
				case dlock.RW:
					return info.State.RW().Owner == x.ID()
				}
				return info.State.Fair().Mx == 1 // x's ticket 0, granted at once
			})
			time.Sleep(20 * time.Millisecond)
			p.sever()
			if err := <-got; !errors.Is(err, dlock.ErrConnLost) {
				t.Fatalf("OpenAndTryLock = %v, want ErrConnLost", err)
			}
			select {
			case r := <-reports:
				if r.Err != nil {
					t.Fatal(r.Err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("no recovery report")
			}
			if ok, err := lh.TryLock(ctx); err != nil || !ok {
				t.Fatalf("after x recovered, TryLock = %v, %v; want the lost grant released", ok, err)
			}
			if o := x.Outcomes(); o.Unknown == 0 || o.Resolved != o.Unknown || o.Released == 0 {
				t.Fatalf("outcomes %+v: want the unknown outcome resolved and a hold released", o)
			}
			// x opens the name again and finds it held by h.
			lx, ok, err := x.OpenAndTryLock(ctx, "lost-open", opts)
			if err != nil || ok || lx == nil || lx.Held() {
				t.Fatalf("x's OpenAndTryLock after recovery = %v, %v, %v; want the handle, not held", lx, ok, err)
			}
		})
	}
}

// TestOpenAndLockConcurrent: goroutines of one client open-and-lock and
// open the same name at once: one handle, every hold counted once (a hold
// of a lock the client holds is reentrant), and after as many unlocks the
// lock is free for another client.
func TestOpenAndLockConcurrent(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	c := srv.Dial(t)
	other := srv.Dial(t)
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW} {
		name := "concurrent/" + typ.String()
		opts := dlock.LockOptions{Type: typ, TTL: time.Minute}
		const n = 8
		handles := make([]*dlock.Lock, 2*n)
		held := make([]bool, 2*n)
		errs := make([]error, 2*n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(2)
			go func() {
				defer wg.Done()
				handles[i], held[i], errs[i] = c.OpenAndTryLock(ctx, name, opts)
			}()
			go func() {
				defer wg.Done()
				handles[n+i], errs[n+i] = c.OpenLock(ctx, name, opts)
			}()
		}
		wg.Wait()
		holds := 0
		for i, l := range handles {
			if errs[i] != nil || l != handles[0] {
				t.Fatalf("%v: call %d: %v, %v; want the one handle", typ, i, l, errs[i])
			}
			if held[i] {
				holds++
			}
		}
		if holds != n {
			t.Fatalf("%v: %d of %d open-and-trylocks hold the lock; want all (reentrant)", typ, holds, n)
		}
		ol := open(t, other, name, opts)
		mustTry(t, ol, false, false)
		for range holds {
			if err := handles[0].Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		}
		mustTry(t, ol, false, true)
		if err := ol.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenAndLockSharded: a server of a sharded cluster refuses an
// open-and-lock of a name its shard does not own, like an OpenLock of it
// (ErrMoved, nothing opened), and serves the names it owns in one request.
func TestOpenAndLockSharded(t *testing.T) {
	ctx := testCtx(t)
	srv := dlocktest.NewServer(t, nil)
	slots := make([]int, dlockserver.NumSlots)
	for i := range slots {
		slots[i] = i % 2 // shard "a" owns the even slots, "b" the odd ones
	}
	m := dlockserver.ShardMap{Version: 1, Shards: []dlockserver.Shard{{Name: "a", Addrs: []string{srv.Addr}}, {Name: "b", Addrs: []string{"127.0.0.1:1"}}},
		Slots: slots}
	if err := srv.SetShardMap("a", m); err != nil {
		t.Fatal(err)
	}
	var mine, other string
	for i := 0; mine == "" || other == ""; i++ {
		n := fmt.Sprintf("sharded/%d", i)
		if dlockserver.SlotOf([]byte(n))%2 == 0 {
			mine = n
		} else {
			other = n
		}
	}
	c, fc := dialCounting(t, srv.Addr)
	if l, ok, err := c.OpenAndTryLock(ctx, other, dlock.LockOptions{}); l != nil || ok || !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("OpenAndTryLock of another shard's name = %v, %v, %v; want ErrMoved", l, ok, err)
	}
	if _, err := c.OpenLock(ctx, other, dlock.LockOptions{}); !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("OpenLock of another shard's name = %v; want ErrMoved", err)
	}
	if n := srv.Locks(); n != 0 {
		t.Fatalf("%d locks opened for names of another shard", n)
	}
	fc.take()
	if l, ok, err := c.OpenAndTryLock(ctx, mine, dlock.LockOptions{}); err != nil || !ok || !l.Held() {
		t.Fatalf("OpenAndTryLock of an owned name = %v, %v, %v", l, ok, err)
	}
	if got := fc.take(); fmt.Sprint(got) != fmt.Sprint(map[byte]int{typeOpenLockOp: 1}) {
		t.Fatalf("sent %v, want one TOpenLockOp", got)
	}
}
