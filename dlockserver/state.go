package dlockserver

import (
	"sync"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/umo"
	"github.com/dlock-io/dlock/internal/wire"
)

// The server's state, apart from its I/O: serverState holds the clients,
// the lock and object tables, their stripes and the mutexes that guard
// them, and its methods are the transitions. A connection decodes a
// request, reads the time from the server's clock, calls the state with it
// and queues what the state returns: the reply to the requester as a value,
// and what goes to other connections — grants, answers to withdrawn
// requests, connections to close — in an outbox that the caller sends once
// the state's mutexes are released (outbox.send). The state never writes
// to a connection and never reads the clock; it is tested without a socket
// (state_test.go).
//
// # Lock order
//
// A goroutine takes these mutexes in this order, never the reverse:
//
//	Server.mu.g → stripe.mu (in index order) → Server.objMu → conn.wmu → Server.evMu → conn.outMu
//
// Server.mu is the server-wide lock. Locking it (Server.mu.Lock) takes its
// own mutex g and then the mutex of every stripe, in index order: a
// transition — registering, opening and releasing locks, recovery,
// heartbeats, statistics, admin requests, timer events, a connection that
// closes — runs with the whole state still and may read and change any
// stripe. It guards the mode (ready or recovering, the HA role and fence),
// the client registry, the connections, the shape of the lock table
// (which locks exist and who has them open), and the counters kept outside
// the stripes.
//
// A request on a lock that exists — a lock command, a blocking request or
// its withdrawal — takes only the mutex of the stripe that owns the lock id
// (opLock): since every transition holds that mutex too, the request sees
// the server-wide state stable, and requests on locks of different stripes
// share no mutex and no written cache line except the fencing-token
// counter. A batch holds the stripes of its items for the whole batch,
// each taken once, in index order (opLockSet), and runs its items in
// order. In a highly available cluster a request takes g before its
// stripe, so that the fence and token checks run one request at a time,
// as they did when one mutex guarded all.
//
// Server.objMu guards the atomic64 object table: object requests hold a
// stripe (any, for create/get/release/destroy) and objMu, so they do not
// serialise with lock requests, nor take the whole server to create one.
//
// conn.wmu guards a connection's index of its queued requests, which grants
// in any stripe update. Server.evMu guards the deadline heap and its timer.
// conn.outMu guards a connection's output buffer: grants and withdrawn
// requests are queued there after the state's mutexes are released (an
// outbox); a few rare replies (durable objects, registration in a cluster)
// are still appended with the server's mutex held.
//
// # More cores
//
// The design is a reader-writer lock sharded by stripe: the requests of
// unrelated locks scale with cores while two cores rarely want the same
// stripe, which holds with numStripes several times the core count as long
// as the ids spread over the stripes (ids are allocated sequentially or
// from a hash of the name). Transitions pay for it: they take numStripes
// mutexes, about 0.1 µs for 16 (5 µs under the race detector), which is
// fine for operations that are rare next to lock commands; more cores want
// more stripes, at that cost. A request reads the clock (the monotonic
// one only) before it takes its stripe. Beyond that, what unrelated
// requests still share is the fencing-token counter (one atomic add per
// grant, on a cache line of its own: tokens increase across all locks) and,
// for locks with queued waiters, the deadline heap (which could be split
// per stripe the same way). BenchmarkStateParallel measures the speed-up.

// serverState is the server's state (see above). It is embedded in Server;
// srv gives the transitions the hooks of a highly available or sharded
// cluster, the logger and the deadline heap.
type serverState struct {
	srv *Server

	// mu guards the server-wide state; requests on existing locks take
	// only their stripe's mutex (the lock order is above).
	mu       modeMutex
	state    uint8 // wire.StateReady or wire.StateWaitClientReinit
	recovery int   // clients still to finish recovery
	locks    *lockcore.Table
	objs     *umo.Table // its contents guarded by objMu too
	objMu    sync.Mutex
	clients  map[int32]*client
	stats    dlock.Stats // counters kept outside the stripes
	stripes  [numStripes]stripe
}

// outbox collects what a transition sends to connections: answers to
// queued blocking requests (grants, withdrawals), and connections to close.
// Each connection keeps one for the requests it handles, so the hot path
// reuses its memory. The caller sends it once it holds no mutex of the
// state.
type outbox struct {
	msgs   []outMsg
	closes []*conn
}

// outMsg is the answer r to request reqID of connection c.
type outMsg struct {
	c     *conn
	reqID uint32
	r     lockcore.Reply
}

// add queues the answer r to request reqID of c.
func (o *outbox) add(c *conn, reqID uint32, r *lockcore.Reply) {
	o.msgs = append(o.msgs, outMsg{c: c, reqID: reqID, r: *r})
}

// closeConn queues closing c (a client that re-registered elsewhere).
func (o *outbox) closeConn(c *conn) { o.closes = append(o.closes, c) }

// send queues every answer on its connection, closes what is to be closed,
// and empties o. Called with no mutex of the state held.
func (o *outbox) send() {
	for i := range o.msgs {
		m := &o.msgs[i]
		m.c.sendLock(m.reqID, &m.r)
		m.c = nil
	}
	o.msgs = o.msgs[:0]
	for i, c := range o.closes {
		c.raw.Close()
		o.closes[i] = nil
	}
	o.closes = o.closes[:0]
}

// numStripes is the number of stripes of the lock and object ids: enough
// for the 2 to 4 cores a dlock server is sized for.
const numStripes = 16

// stripe is the part of the state that belongs to the locks and objects
// whose id is congruent to its index modulo numStripes: their queued
// requests, their pending timer events, and the counters and observations
// that requests on them update.
type stripe struct {
	mu sync.Mutex
	s  *serverState

	stats dlock.Stats      // DLock debug counters (summed in Server.Stats)
	wake  []lockcore.Grant // scratch for grants
	// Queued blocking requests, by tag and by (client, lock).
	waits map[uint64]*waiter
	byCL  map[clientLock][]*waiter
	// scheduled maps a lock id to the second of its pending event.
	scheduled map[int32]uint32
	obs       lockObs

	_ [64]byte // keep the next stripe's mutex off this one's cache line
}

// clientLock is the key of a client's queued requests on one lock.
type clientLock struct{ client, lock int32 }

// waiter is a blocking lock request queued in a lock.
type waiter struct {
	c          *conn
	tag        uint64
	reqID      uint32
	lockID     int32
	client     int32
	keepTicket bool
	shared     bool
	since      int64 // clock nanoseconds when it was queued
}

// instant is one reading of the server's clock: the second the lock state
// machines use, and nanoseconds for the wait and hold times.
type instant struct {
	sec uint32
	ns  int64
}

// instant reads the clock: what a caller passes to the state. It reads
// only the monotonic clock (clock.elapsed): time.Now reads the wall clock
// too, which took 30% of BenchmarkStateParallel's time on the 2-core VM.
func (s *Server) instant() instant {
	ns := int64(s.clk.elapsed())
	return instant{sec: s.clk.secondsAt(ns), ns: ns}
}

// stripeOf returns the stripe owning lock (or object) id.
func (s *serverState) stripeOf(id int32) *stripe {
	return &s.stripes[uint32(id)%numStripes]
}

// initStripes empties every stripe (New, and an HA reset of the state).
// Called with mu held.
func (s *serverState) initStripes() {
	for i := range s.stripes {
		st := &s.stripes[i]
		st.s = s
		st.waits = make(map[uint64]*waiter)
		st.byCL = make(map[clientLock][]*waiter)
		st.scheduled = make(map[int32]uint32)
	}
}

// forgetWaiters drops every queued request and pending event without an
// answer (an HA primary that stops serving forgets its state and closes
// every connection). Called with mu held.
func (s *Server) forgetWaiters() {
	for c := range s.conns {
		c.wmu.Lock() // its reader may be looking a TCancel up
		c.waiting = nil
		c.wmu.Unlock()
	}
	for i := range s.stripes {
		st := &s.stripes[i]
		clear(st.waits)
		clear(st.byCL)
		clear(st.scheduled)
	}
	s.evMu.Lock()
	s.events = s.events[:0]
	s.evMu.Unlock()
}

// modeMutex is Server.mu: see the lock order above.
type modeMutex struct {
	g       sync.Mutex
	stripes *[numStripes]stripe
}

// Lock takes the whole server: g, then every stripe in index order.
func (m *modeMutex) Lock() {
	m.g.Lock()
	for i := range m.stripes {
		m.stripes[i].mu.Lock()
	}
}

// Unlock releases what Lock took.
func (m *modeMutex) Unlock() {
	for i := len(m.stripes) - 1; i >= 0; i-- {
		m.stripes[i].mu.Unlock()
	}
	m.g.Unlock()
}

// opLock takes what a request on a lock or object of stripe st needs: the
// stripe's mutex, after g in a highly available cluster.
func (s *serverState) opLock(st *stripe) {
	if s.srv.ha != nil {
		s.mu.g.Lock()
	}
	st.mu.Lock()
}

// opUnlock releases what opLock took.
func (s *serverState) opUnlock(st *stripe) {
	st.mu.Unlock()
	if s.srv.ha != nil {
		s.mu.g.Unlock()
	}
}

// stripeSet is a set of stripes, one bit per index.
type stripeSet uint64

// A stripeSet has a bit for every stripe.
var _ [64 - numStripes]struct{}

// add puts the stripe of lock or object id in the set.
func (ss *stripeSet) add(id int32) { *ss |= 1 << (uint32(id) % numStripes) }

// opLockSet is opLock for the stripes of set: each taken once, in index
// order.
func (s *serverState) opLockSet(set stripeSet) {
	if s.srv.ha != nil {
		s.mu.g.Lock()
	}
	for i := range s.stripes {
		if set&(1<<i) != 0 {
			s.stripes[i].mu.Lock()
		}
	}
}

// opUnlockSet releases what opLockSet took.
func (s *serverState) opUnlockSet(set stripeSet) {
	for i := len(s.stripes) - 1; i >= 0; i-- {
		if set&(1<<i) != 0 {
			s.stripes[i].mu.Unlock()
		}
	}
	if s.srv.ha != nil {
		s.mu.g.Unlock()
	}
}

// queued returns the number of queued blocking requests. Called with mu
// held.
func (s *serverState) queued() int {
	n := 0
	for i := range s.stripes {
		n += len(s.stripes[i].waits)
	}
	return n
}

// lookup finds lock id for client, answering what the upstream data plane
// answers for an unknown lock.
func (st *stripe) lookup(client, id int32) (*lockcore.Lock, dlock.Status) {
	l := st.s.locks.Lock(id)
	if l == nil {
		st.stats.Inc(dlock.StatEInvalLockOffset)
		return nil, dlock.ErrInval
	}
	if !l.Referenced(client) {
		return nil, dlock.ErrLockNotGet
	}
	return l, dlock.Success
}

// exec runs one non-blocking command and returns its reply; grants it
// causes go to out.
func (st *stripe) exec(at instant, client, id int32, cmd dlock.Cmd, arg dlock.LockState, out *outbox) lockcore.Reply {
	l, status := st.lookup(client, id)
	if l == nil {
		return lockcore.Reply{Status: status}
	}
	r, wake := l.Exec(at.sec, client, cmd, arg, &st.stats, st.wake[:0])
	st.observeOp(id, l, client, cmd, &r, at)
	if len(wake) > 0 {
		st.deliver(at, wake, out)
	}
	if l.Waiters() > 0 {
		st.schedule(id, l)
	}
	return r
}

// acquire runs a blocking request of connection c: granted now (the reply,
// false), or queued (true; its answer goes to an outbox later).
func (st *stripe) acquire(at instant, c *conn, client int32, reqID uint32, m *wire.LockOp, out *outbox) (lockcore.Reply, bool) {
	l, status := st.lookup(client, m.LockID)
	if l == nil {
		return lockcore.Reply{Status: status}, false
	}
	cmd := dlock.Cmd(m.Cmd)
	arg := dlock.LockState(m.Arg)
	w := lockcore.Waiter{Tag: c.tag(reqID), Client: client, Mode: dlock.Exclusive}
	if cmd.Shared() {
		w.Mode = dlock.Shared
	}
	switch l.Type() {
	case dlock.Atomic:
		w.Expire = arg.Atomic().Timeout
	case dlock.Fair:
		f := arg.Fair()
		w.Expire = f.Timeout
		if cmd == dlock.CmdExclusiveTicketTrylock || cmd == dlock.CmdSharedTicketTrylock {
			w.Ticket, w.HasTicket = f, true
		}
	}
	switch cmd {
	case dlock.CmdExclusiveTrylock, dlock.CmdSharedTrylock, dlock.CmdExclusiveTicketTrylock, dlock.CmdSharedTicketTrylock:
	default:
		return lockcore.Reply{Status: dlock.ErrInval}, false
	}
	if c.waiter(w.Tag) != nil {
		return lockcore.Reply{Status: dlock.ErrInval}, false // that request id is queued already
	}
	r, queued, wake := l.Acquire(at.sec, w, &st.stats, st.wake[:0])
	st.deliver(at, wake, out)
	if !queued {
		st.observeImmediate(m.LockID, l, client, cmd, &r, at)
	} else {
		st.index(&waiter{c: c, tag: w.Tag, reqID: reqID, lockID: m.LockID, client: client,
			keepTicket: m.Flags&wire.FlagKeepTicket != 0, shared: w.Mode == dlock.Shared, since: at.ns})
		st.observeQueued(m.LockID, l, at)
		if m.WaitMillis > 0 {
			st.s.srv.push(event{at: st.s.srv.clk.atNanos(at.ns).Add(time.Duration(m.WaitMillis) * time.Millisecond), kind: evWait, tag: w.Tag, lock: m.LockID})
		}
	}
	st.schedule(m.LockID, l)
	return r, queued
}

// index records a queued request in the stripe and on its connection.
func (st *stripe) index(w *waiter) {
	st.waits[w.tag] = w
	k := clientLock{w.client, w.lockID}
	st.byCL[k] = append(st.byCL[k], w)
	w.c.wmu.Lock()
	if w.c.waiting == nil {
		w.c.waiting = make(map[uint64]*waiter)
	}
	w.c.waiting[w.tag] = w
	w.c.wmu.Unlock()
}

// unindex forgets a request that was answered or withdrawn.
func (st *stripe) unindex(w *waiter) {
	delete(st.waits, w.tag)
	k := clientLock{w.client, w.lockID}
	ws := st.byCL[k]
	for i, x := range ws {
		if x == w {
			ws[i] = ws[len(ws)-1]
			ws[len(ws)-1] = nil
			ws = ws[:len(ws)-1]
			break
		}
	}
	if len(ws) == 0 {
		delete(st.byCL, k)
	} else {
		st.byCL[k] = ws
	}
	w.c.wmu.Lock()
	delete(w.c.waiting, w.tag)
	w.c.wmu.Unlock()
}

// Why a queued blocking request is withdrawn, which decides its answer.
type withdrawal uint8

const (
	giveUp     withdrawal = iota // TCancel or its deadline: the lock's answer (ErrTimeout, or ErrAgain with the ticket kept if asked)
	lockGone                     // its client let go of the lock: ErrLockNotGet
	clientGone                   // its client was removed: ErrClientNotInit
	connGone                     // its connection is gone: no answer
)

// withdraw takes the queued request w off its lock, answers it as why
// says, and grants whoever that lets in; the answers go to out.
func (st *stripe) withdraw(at instant, w *waiter, why withdrawal, out *outbox) {
	st.unindex(w)
	l := st.s.locks.Lock(w.lockID)
	if l == nil {
		return
	}
	r, _, wake := l.Cancel(at.sec, w.tag, why == giveUp && w.keepTicket, st.wake[:0])
	switch why {
	case lockGone:
		r.Status = dlock.ErrLockNotGet
	case clientGone:
		r.Status = dlock.ErrClientNotInit
	}
	if why != connGone {
		out.add(w.c, w.reqID, &r)
	}
	st.deliver(at, wake, out)
	st.schedule(w.lockID, l)
}

// deliver puts the answers of granted requests in out.
func (st *stripe) deliver(at instant, wake []lockcore.Grant, out *outbox) {
	if len(wake) > 0 && st.s.srv.ha != nil && !st.s.srv.haMayGrant() {
		return // a fenced primary pushes nothing; its state is about to go
	}
	for i := range wake {
		g := &wake[i]
		w := st.waits[g.Tag]
		if w == nil {
			continue
		}
		st.unindex(w)
		st.s.srv.shardWithhold(w.lockID, &g.Reply) // sharded: a slot taken away grants nothing
		st.observeGrant(w, &g.Reply, at.ns)
		out.add(w.c, w.reqID, &g.Reply)
	}
	if cap(wake) > cap(st.wake) {
		st.wake = wake[:0]
	}
}

// schedule makes sure the lock's next self-driven event (lease expiry, end
// of a hand-over window) is in the deadline heap.
func (st *stripe) schedule(id int32, l *lockcore.Lock) {
	at, ok := l.NextEvent()
	if !ok {
		delete(st.scheduled, id)
		return
	}
	if cur, ok := st.scheduled[id]; ok && cur == at {
		return
	}
	st.scheduled[id] = at
	st.s.srv.push(event{at: st.s.srv.clk.at(at), kind: evLock, lock: id, sec: at})
}

// cancelWaitersOn answers client's queued requests on lock id before the
// client lets go of the lock. Called with mu held.
func (s *serverState) cancelWaitersOn(at instant, client, id int32, out *outbox) {
	st := s.stripeOf(id)
	for {
		ws := st.byCL[clientLock{client, id}]
		if len(ws) == 0 {
			return
		}
		st.withdraw(at, ws[len(ws)-1], lockGone, out)
	}
}

// dropConnWaiters abandons the blocking requests queued from c: nobody
// would receive their answers. Called with mu held.
func (s *serverState) dropConnWaiters(at instant, c *conn, out *outbox) {
	for _, w := range c.waiting {
		s.stripeOf(w.lockID).withdraw(at, w, connGone, out)
	}
}

// releaseLock lets client go of lock id: its queued requests there are
// answered, its holds released (granting whoever waits behind them), its
// reference dropped, and the lock deleted with its last reference. Called
// with mu held.
func (s *serverState) releaseLock(at instant, client, id int32, out *outbox) dlock.Status {
	st := s.stripeOf(id)
	s.cancelWaitersOn(at, client, id, out)
	st.forgetHold(id, client)
	status, wake := s.locks.Release(at.sec, client, id, st.wake[:0])
	st.deliver(at, wake, out)
	if l := s.locks.Lock(id); l != nil {
		st.schedule(id, l)
	}
	return status
}

// removeClient deletes a client and everything it holds: its queued
// requests are answered, its holds released and whoever waits behind them
// granted, lock by lock in id order. Called with mu held.
func (s *serverState) removeClient(at instant, cl *client, out *outbox) {
	if c := cl.conn; c != nil {
		for _, w := range c.waiting {
			if w.client == cl.id {
				s.stripeOf(w.lockID).withdraw(at, w, clientGone, out)
			}
		}
	}
	for _, id := range s.locks.ClientLocks(cl.id, nil) {
		s.releaseLock(at, cl.id, id, out)
	}
	s.srv.haObjectsTouched(cl.id)
	s.objMu.Lock()
	s.objs.RemoveClient(at.sec, cl.id)
	s.objMu.Unlock()
	delete(s.clients, cl.id)
	if cl.conn != nil && cl.conn.client == cl {
		cl.conn.client = nil
	}
}

// holds answers TLockQuery: Success when client holds lock id at at (an
// ATOMIC or FAIR hold whose lease ran out does not count), ErrFail when it
// does not, ErrLockNotGet when it has no reference. Called with mu held.
func (s *serverState) holds(at instant, client, id int32) dlock.Status {
	l, status := s.stripeOf(id).lookup(client, id)
	if l == nil {
		return status
	}
	if holding(l, client, at.sec) {
		return dlock.Success
	}
	return dlock.ErrFail
}
