package dlockserver

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// TestStripesPartitionTheState: a request on a lock of one stripe goes
// through while another stripe is held, and a transition (Server.mu)
// waits for every stripe.
func TestStripesPartitionTheState(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const client = 7
	s.mu.Lock()
	a, _ := s.locks.Get(client, []byte("a"), dlock.Atomic, 0, 0)
	b, _ := s.locks.Get(client, []byte("b"), dlock.Atomic, 0, 0)
	s.mu.Unlock()
	sa, sb := s.stripeOf(a), s.stripeOf(b)
	if sa == sb {
		t.Fatalf("locks %d and %d share a stripe", a, b)
	}
	sa.mu.Lock() // a request on a, in progress
	done := make(chan dlock.Status)
	go func() {
		s.opLock(sb)
		var out outbox
		r := sb.exec(s.instant(), client, b, dlock.CmdExclusiveTrylock, dlock.AtomicState{Owner: client, Timeout: 30}.State(), &out)
		s.opUnlock(sb)
		done <- r.Status
	}()
	select {
	case st := <-done:
		if st != dlock.Success {
			t.Fatalf("trylock on b: %v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request on lock b waited for the stripe of lock a")
	}
	locked := make(chan struct{})
	go func() {
		s.mu.Lock()
		close(locked)
		s.mu.Unlock()
	}()
	select {
	case <-locked:
		t.Fatal("Server.mu was taken while a stripe was held")
	case <-time.After(50 * time.Millisecond):
	}
	sa.mu.Unlock()
	select {
	case <-locked:
	case <-time.After(10 * time.Second):
		t.Fatal("Server.mu not taken after the stripe was released")
	}
}

// The tests below drive the server's state directly (serverState's
// methods), as a connection does, with connections that have no socket:
// what a transition sends is read from the outbox it returns.

// stateConn returns a connection of s without a socket (one end of a
// net.Pipe, for the remote address and for closing it) and the other end.
func stateConn(t *testing.T, s *Server, seq uint64) (*conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return newConn(s, a, seq), b
}

// registered returns a connection whose client registered with TInit.
func registered(t *testing.T, s *Server, seq uint64) *conn {
	t.Helper()
	c, _ := stateConn(t, s, seq)
	var out outbox
	rep, st, keep := s.register(s.instant(), c, &out)
	if st != dlock.Success || !keep || rep.ClientID == 0 || c.client == nil || c.client.id != rep.ClientID {
		t.Fatalf("register: %+v %v %v", rep, st, keep)
	}
	if len(out.msgs) != 0 {
		t.Fatalf("register sent %d answers", len(out.msgs))
	}
	return c
}

// opened opens the ATOMIC lock name for c's client.
func opened(t *testing.T, s *Server, c *conn, name string) int32 {
	t.Helper()
	id, st := s.getLock(c, &wire.GetLock{Desc: []byte(name), Type: uint8(dlock.Atomic)})
	if st != dlock.Success {
		t.Fatalf("get lock %q: %v", name, st)
	}
	return id
}

// atomicOp returns a TLockOp of cmd on lock id by c's client, blocking if
// block is set.
func atomicOp(c *conn, id int32, cmd dlock.Cmd, block bool) *wire.LockOp {
	m := &wire.LockOp{LockID: id, Cmd: uint8(cmd)}
	m.Arg = dlock.AtomicState{Owner: c.client.id, Timeout: 1 << 30}.State()
	if block {
		m.Flags = wire.FlagBlock
	}
	return m
}

func mustLock(t *testing.T, s *Server, c *conn, id int32) lockcore.Reply {
	t.Helper()
	var out outbox
	r, queued := s.lockOp(s.instant(), c, 1, atomicOp(c, id, dlock.CmdExclusiveTrylock, false), &out)
	if r.Status != dlock.Success || queued || len(out.msgs) != 0 {
		t.Fatalf("trylock: %v queued=%v sent=%d", r.Status, queued, len(out.msgs))
	}
	return r
}

// queue makes c's client wait for lock id with request reqID.
func queue(t *testing.T, s *Server, c *conn, id int32, reqID uint32) {
	t.Helper()
	var out outbox
	r, queued := s.lockOp(s.instant(), c, reqID, atomicOp(c, id, dlock.CmdExclusiveTrylock, true), &out)
	if !queued || len(out.msgs) != 0 {
		t.Fatalf("blocking trylock not queued: %v sent=%d", r.Status, len(out.msgs))
	}
}

// TestStateGrantGoesToTheWaiter: an unlock answers its requester and
// returns the grant of the request queued on another connection, with a
// newer token, and nothing else.
func TestStateGrantGoesToTheWaiter(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := registered(t, s, 1), registered(t, s, 2)
	id := opened(t, s, a, "l")
	if opened(t, s, b, "l") != id {
		t.Fatal("the same name opened two locks")
	}
	held := mustLock(t, s, a, id)
	queue(t, s, b, id, 42)
	if b.waiter(b.tag(42)) == nil {
		t.Fatal("the queued request is not indexed on its connection")
	}
	var out outbox
	r, queued := s.lockOp(s.instant(), a, 2, atomicOp(a, id, dlock.CmdExclusiveUnlock, false), &out)
	if r.Status != dlock.Success || queued {
		t.Fatalf("unlock: %v queued=%v", r.Status, queued)
	}
	if len(out.msgs) != 1 {
		t.Fatalf("unlock sent %d answers, want the one grant", len(out.msgs))
	}
	g := out.msgs[0]
	if g.c != b || g.reqID != 42 || g.r.Status != dlock.Success || g.r.Token <= held.Token {
		t.Fatalf("grant %+v to conn %d; want request 42 of conn %d, token above %d", g.r, g.c.seq, b.seq, held.Token)
	}
	if got := dlock.LockState(g.r.State).Atomic().Owner; got != b.client.id {
		t.Fatalf("granted lock owned by %d, want %d", got, b.client.id)
	}
	if b.waiter(b.tag(42)) != nil {
		t.Fatal("the granted request is still indexed")
	}
}

// TestStateCancelAnswersTheRequester: TCancel of a queued request returns
// its answer (ErrTimeout) for its own connection; a second one, nothing.
func TestStateCancelAnswersTheRequester(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := registered(t, s, 1), registered(t, s, 2)
	id := opened(t, s, a, "l")
	opened(t, s, b, "l")
	mustLock(t, s, a, id)
	queue(t, s, b, id, 7)
	var out outbox
	s.cancel(s.instant(), b, 7, &out)
	if len(out.msgs) != 1 || out.msgs[0].c != b || out.msgs[0].reqID != 7 || out.msgs[0].r.Status != dlock.ErrTimeout {
		t.Fatalf("cancel sent %+v, want ErrTimeout to request 7 of b", out.msgs)
	}
	out.msgs = out.msgs[:0]
	s.cancel(s.instant(), b, 7, &out)
	if len(out.msgs) != 0 {
		t.Fatalf("a second cancel sent %+v", out.msgs)
	}
	if info, _ := s.LockInfo(id); info.Waiters != 0 {
		t.Fatalf("%d waiters left", info.Waiters)
	}
}

// TestStateConnLostWithdrawsItsWaiters: the requests queued from a
// connection that closed are withdrawn without an answer, its client
// becomes abnormal, and the next grant skips them.
func TestStateConnLostWithdrawsItsWaiters(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b, c := registered(t, s, 1), registered(t, s, 2), registered(t, s, 3)
	id := opened(t, s, a, "l")
	opened(t, s, b, "l")
	opened(t, s, c, "l")
	mustLock(t, s, a, id)
	queue(t, s, b, id, 1) // first in line
	queue(t, s, c, id, 1)
	var out outbox
	s.mu.Lock()
	cl := s.connLost(s.instant(), b, &out)
	s.mu.Unlock()
	if cl == nil || cl.conn != nil || cl.id != b.client.id {
		t.Fatalf("the client of the closed connection is not abnormal: %+v", cl)
	}
	if len(out.msgs) != 0 {
		t.Fatalf("a closed connection's requests were answered: %+v", out.msgs)
	}
	if info, _ := s.LockInfo(id); info.Waiters != 1 {
		t.Fatalf("%d waiters, want 1", info.Waiters)
	}
	if b.waiter(b.tag(1)) != nil {
		t.Fatal("the withdrawn request is still indexed")
	}
	s.lockOp(s.instant(), a, 2, atomicOp(a, id, dlock.CmdExclusiveUnlock, false), &out)
	if len(out.msgs) != 1 || out.msgs[0].c != c || out.msgs[0].r.Status != dlock.Success {
		t.Fatalf("unlock sent %+v, want the grant to c", out.msgs)
	}
}

// TestStateDeregisterGrantsWaiters: a client that deregisters with a hold
// lets the request queued behind it in, and the connection is to close.
func TestStateDeregisterGrantsWaiters(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := registered(t, s, 1), registered(t, s, 2)
	id := opened(t, s, a, "l")
	opened(t, s, b, "l")
	mustLock(t, s, a, id)
	queue(t, s, b, id, 9)
	var out outbox
	st, keep := s.deregister(s.instant(), a, &out)
	if st != dlock.Success || keep {
		t.Fatalf("deinit: %v keep=%v", st, keep)
	}
	if len(out.msgs) != 1 || out.msgs[0].c != b || out.msgs[0].reqID != 9 || out.msgs[0].r.Status != dlock.Success {
		t.Fatalf("deinit sent %+v, want the grant to request 9 of b", out.msgs)
	}
	if s.Clients() != 1 || a.client != nil {
		t.Fatal("the client was not removed")
	}
}

// TestStateRecovery: a server started to recover from two clients refuses
// new clients and lock requests, takes back the clients and their uploads,
// replaces a returning client's old connection (closed through the outbox),
// and becomes ready when both finished.
func TestStateRecovery(t *testing.T) {
	s, err := New(Config{RecoveryClients: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out outbox
	fresh, _ := stateConn(t, s, 1)
	if _, st, keep := s.register(s.instant(), fresh, &out); st != dlock.ErrNotReady || keep {
		t.Fatalf("init while recovering: %v keep=%v", st, keep)
	}
	back := func(seq uint64, id int32) *conn {
		c, _ := stateConn(t, s, seq)
		rep, st, keep := s.reregister(s.instant(), c, id, &out)
		if st != dlock.Success || !keep || rep.ClientID != id || rep.ServerState != wire.StateWaitClientReinit {
			t.Fatalf("reinit of %d: %+v %v %v", id, rep, st, keep)
		}
		return c
	}
	a := back(2, 11)
	// a uploads the lock it holds.
	var up wire.UpdateLocks
	up.N = 1
	up.Items[0] = wire.UpdateLock{ID: 5, Type: uint8(dlock.Atomic), Hold: wire.HoldExclusive, Token: 77, Desc: []byte("held"),
		State: dlock.AtomicState{Owner: 11, Timeout: s.now() + 3600}.State()}
	var ids wire.IDs
	if st := s.updateLocks(a, &up, &ids); st != dlock.Success || ids.N != 1 || ids.IDs[0] <= 0 {
		t.Fatalf("upload: %v %+v", st, ids.IDs[:ids.N])
	}
	lock := ids.IDs[0]
	if r, _ := s.lockOp(s.instant(), a, 1, atomicOp(a, lock, dlock.CmdExclusiveUnlock, false), &out); r.Status != dlock.ErrNotReady {
		t.Fatalf("lock command while recovering: %v", r.Status)
	}
	if st := s.reinitDone(a); st != dlock.Success || s.Ready() {
		t.Fatalf("first reinit done: %v ready=%v", st, s.Ready())
	}
	// a comes back on another connection: the old one is to close, and
	// a finished client counts as recovering again.
	old := a
	a = back(3, 11)
	if len(out.closes) != 1 || out.closes[0] != old || old.client != nil {
		t.Fatalf("old connection not handed over for closing: %v", out.closes)
	}
	oldPeerClosed := make(chan error, 1)
	go func() { _, err := io.ReadAll(old.raw); oldPeerClosed <- err }() // returns once it is closed
	out.send()
	select {
	case <-oldPeerClosed:
	case <-time.After(10 * time.Second):
		t.Fatal("sending the outbox did not close the old connection")
	}
	if st := s.reinitDone(a); st != dlock.Success || s.Ready() {
		t.Fatalf("reinit done again: %v ready=%v", st, s.Ready())
	}
	b := back(4, 12)
	if st := s.reinitDone(b); st != dlock.Success || !s.Ready() {
		t.Fatalf("last reinit done: %v ready=%v", st, s.Ready())
	}
	if st := s.reinitDone(b); st != dlock.ErrGeneric {
		t.Fatalf("a second reinit done: %v", st)
	}
	// Ready: the upload stands, the hold is a's with its token.
	if st := s.lockQuery(s.instant(), a, &wire.ID{ID: lock}); st != dlock.Success {
		t.Fatalf("a does not hold the uploaded lock: %v", st)
	}
	r, _ := s.lockOp(s.instant(), a, 1, atomicOp(a, lock, dlock.CmdExclusiveUnlock, false), &out)
	if r.Status != dlock.Success {
		t.Fatalf("unlock of the recovered hold: %v", r.Status)
	}
}

// TestStateHotPathAllocatesNothing: a trylock and an unlock, and an unlock
// that grants a queued request, allocate nothing in the state (the
// outbox is reused).
func TestStateHotPathAllocatesNothing(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a, b := registered(t, s, 1), registered(t, s, 2)
	id := opened(t, s, a, "l")
	opened(t, s, b, "l")
	lock, unlock := atomicOp(a, id, dlock.CmdExclusiveTrylock, false), atomicOp(a, id, dlock.CmdExclusiveUnlock, false)
	bLock := atomicOp(b, id, dlock.CmdExclusiveTrylock, true)
	bUnlock := atomicOp(b, id, dlock.CmdExclusiveUnlock, false)
	cycle := func() {
		if r, _ := s.lockOp(s.instant(), a, 1, lock, &a.ob); r.Status != dlock.Success {
			t.Fatalf("trylock: %v", r.Status)
		}
		if r, _ := s.lockOp(s.instant(), a, 2, unlock, &a.ob); r.Status != dlock.Success {
			t.Fatalf("unlock: %v", r.Status)
		}
	}
	cycle()
	if n := testing.AllocsPerRun(100, cycle); n != 0 {
		t.Errorf("trylock+unlock: %v allocations, want 0", n)
	}
	// The grant: queueing allocates the waiter, the unlock that grants it
	// nothing.
	var ms runtime.MemStats
	var grantAllocs uint64
	const rounds = 50
	for i := 0; i < rounds+1; i++ {
		cycleLock := func() {
			if r, _ := s.lockOp(s.instant(), a, 1, lock, &a.ob); r.Status != dlock.Success {
				t.Fatalf("trylock: %v", r.Status)
			}
			if _, queued := s.lockOp(s.instant(), b, 3, bLock, &b.ob); !queued {
				t.Fatal("not queued")
			}
		}
		cycleLock()
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		s.lockOp(s.instant(), a, 2, unlock, &a.ob)
		runtime.ReadMemStats(&ms)
		if i > 0 { // the first round grows the outbox
			grantAllocs += ms.Mallocs - before
		}
		if len(a.ob.msgs) != 1 || a.ob.msgs[0].c != b {
			t.Fatalf("unlock sent %+v", a.ob.msgs)
		}
		a.ob.msgs = a.ob.msgs[:0]
		if r, _ := s.lockOp(s.instant(), b, 4, bUnlock, &b.ob); r.Status != dlock.Success {
			t.Fatalf("b unlock: %v", r.Status)
		}
	}
	if grantAllocs != 0 {
		t.Errorf("unlock with a grant: %v allocations per round, want 0", float64(grantAllocs)/rounds)
	}
}
