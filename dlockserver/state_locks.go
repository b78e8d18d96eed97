package dlockserver

import (
	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// The requests on locks, as transitions of the server's state: each takes
// the time at, the requesting connection c (whose registered client makes
// the request and to which the blocking requests' answers go later), and
// an outbox for what goes to connections; it returns the requester's reply.
// The lock hot path (lockOp, batchLockOp, cancel) holds only the stripes of
// its locks; the others hold the whole server (Server.mu).

// opGate answers a request on a lock that cannot run now: c has no
// registered client, or the server is recovering. Called with a stripe or
// mu held.
func (s *serverState) opGate(c *conn) dlock.Status {
	switch {
	case c.client == nil:
		return dlock.ErrGeneric
	case s.state != wire.StateReady:
		return dlock.ErrNotReady
	}
	return dlock.Success
}

// lockOp runs the lock command m (TLockOp) with request id reqID: it
// returns the reply, or queued when m is a blocking request that waits (its
// answer goes to an outbox when it is granted or withdrawn).
func (s *serverState) lockOp(at instant, c *conn, reqID uint32, m *wire.LockOp, out *outbox) (r lockcore.Reply, queued bool) {
	st := s.stripeOf(m.LockID)
	s.opLock(st)
	if r.Status = s.opGate(c); r.Status != dlock.Success {
	} else if m.Flags&wire.FlagBlock != 0 {
		r, queued = st.acquire(at, c, c.client.id, reqID, m, out)
	} else {
		r = st.exec(at, c.client.id, m.LockID, dlock.Cmd(m.Cmd), dlock.LockState(m.Arg), out)
	}
	s.opUnlock(st)
	return r, queued
}

// batchLockOp runs the commands of m independently, in order, and writes
// their replies to res. It holds the stripes of its locks for the whole
// batch, each taken once, in index order (the lock order): a batch of 31
// on locks spread over every stripe takes numStripes mutexes instead of
// 31, and its entries still run in entry order (the fencing tokens of its
// grants increase in that order).
func (s *serverState) batchLockOp(at instant, c *conn, m *wire.BatchLockOp, res *wire.BatchLockResult, out *outbox) {
	res.N = m.N
	if m.N == 0 {
		return
	}
	var need stripeSet
	for i := 0; i < m.N; i++ {
		need.add(m.Items[i].LockID)
	}
	s.opLockSet(need)
	gate := s.opGate(c)
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		r := lockcore.Reply{Status: gate}
		if gate == dlock.Success {
			r = s.stripeOf(it.LockID).exec(at, c.client.id, it.LockID, dlock.Cmd(it.Cmd), dlock.LockState(it.Arg), out)
		}
		res.Items[i] = wire.LockResult{Status: int32(r.Status), State: r.State, Token: r.Token}
	}
	s.opUnlockSet(need)
}

// cancel withdraws the queued request reqID of connection c (TCancel); its
// answer goes to out. A request already answered is left alone.
func (s *serverState) cancel(at instant, c *conn, reqID uint32, out *outbox) {
	tag := c.tag(reqID)
	w := c.waiter(tag)
	if w == nil {
		return // already answered
	}
	st := s.stripeOf(w.lockID)
	s.opLock(st)
	if st.waits[tag] == w { // not granted or withdrawn meanwhile
		st.withdraw(at, w, giveUp, out)
	}
	s.opUnlock(st)
}

// abandon gives up the fair ticket in m (TAbandon), so that the hand-over
// need not wait for it. It has no reply.
func (s *serverState) abandon(at instant, c *conn, m *wire.LockOp, out *outbox) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.opGate(c) != dlock.Success {
		return
	}
	st := s.stripeOf(m.LockID)
	l, _ := st.lookup(c.client.id, m.LockID)
	if l == nil {
		return
	}
	st.deliver(at, l.Abandon(at.sec, dlock.LockState(m.Arg).Fair(), dlock.Cmd(m.Cmd).Shared(), st.wake[:0]), out)
	st.schedule(m.LockID, l)
}

// resolve drops any hold c's client has on lock m.LockID (TResolve: a grant
// whose reply was lost with a connection), and abandons the FAIR ticket in
// m.Arg when it is nonzero. It answers Success when a hold was dropped,
// ErrFail when there was none.
func (s *serverState) resolve(at instant, c *conn, m *wire.LockOp, out *outbox) dlock.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.opGate(c); st != dlock.Success {
		return st
	}
	client := c.client.id
	sp := s.stripeOf(m.LockID)
	l, st := sp.lookup(client, m.LockID)
	if l == nil {
		return st
	}
	held := l.HeldBy(client)
	wake := l.Drop(at.sec, client, sp.wake[:0])
	if l.Type() == dlock.Fair && m.Arg != ([16]byte{}) {
		wake = l.Abandon(at.sec, dlock.LockState(m.Arg).Fair(), dlock.Cmd(m.Cmd).Shared(), wake)
	}
	sp.deliver(at, wake, out)
	sp.schedule(m.LockID, l)
	if !held {
		return dlock.ErrFail
	}
	s.srv.cfg.Logger.Info("released a hold whose grant the client never received", "client", client, "lock", m.LockID)
	return dlock.Success
}

// openResult is what openLockOp did.
type openResult struct {
	status dlock.Status   // the open failed (nothing else is set)
	other  int32          // the lock has this id, not the predicted one: the command did not run
	r      lockcore.Reply // the command ran: its reply, unless queued
	ran    bool
	queued bool
}

// openLockOp opens the lock m.Open (TOpenLockOp) and, if it has the id the
// client predicted, runs m.Op on it, under one hold of Server.mu.
func (s *serverState) openLockOp(at instant, c *conn, reqID uint32, m *wire.OpenLockOp, out *outbox) (res openResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if res.status = s.opGate(c); res.status != dlock.Success {
		return res
	}
	id, st := s.locks.Get(c.client.id, m.Open.Desc, dlock.LockType(m.Open.Type), m.Open.Preferred, m.Open.Lease)
	if st != dlock.Success {
		res.status = st
		return res
	}
	if id != m.Op.LockID {
		res.other = id
		return res
	}
	res.ran = true
	stripe := s.stripeOf(id) // held: mu holds every stripe
	if m.Op.Flags&wire.FlagBlock != 0 {
		res.r, res.queued = stripe.acquire(at, c, c.client.id, reqID, &m.Op, out)
	} else {
		res.r = stripe.exec(at, c.client.id, id, dlock.Cmd(m.Op.Cmd), dlock.LockState(m.Op.Arg), out)
	}
	return res
}

// getLock opens a lock for c's client (TGetLock); m is nil when the
// request did not decode.
func (s *serverState) getLock(c *conn, m *wire.GetLock) (int32, dlock.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.opGate(c); st != dlock.Success {
		return 0, st
	}
	if m == nil {
		return 0, dlock.ErrInval
	}
	return s.locks.Get(c.client.id, m.Desc, dlock.LockType(m.Type), m.Preferred, m.Lease)
}

// batchGetLock opens the locks of m for c's client (TBatchGetLock) and
// writes their ids, or minus a status, to ids; m is nil when the request
// did not decode.
func (s *serverState) batchGetLock(c *conn, m *wire.BatchGetLock, ids *wire.IDs) dlock.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.opGate(c); st != dlock.Success {
		return st
	}
	if m == nil {
		return dlock.ErrInval
	}
	ids.N = m.N
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		lid, st := s.locks.Get(c.client.id, it.Desc, dlock.LockType(it.Type), it.Preferred, it.Lease)
		switch st {
		case dlock.Success:
			ids.IDs[i] = lid
		case dlock.ErrServerNoResource:
			ids.IDs[i] = -int32(dlock.ErrServerNoResource)
		default:
			ids.IDs[i] = -1
		}
	}
	return dlock.Success
}

// releaseOne lets c's client go of lock m.ID (TReleaseLock; see
// releaseLock); m is nil when the request did not decode.
func (s *serverState) releaseOne(at instant, c *conn, m *wire.ID, out *outbox) dlock.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.opGate(c); st != dlock.Success {
		return st
	}
	if m == nil {
		return dlock.ErrInval
	}
	return s.releaseLock(at, c.client.id, m.ID, out)
}

// releaseBatch lets c's client go of the locks of m (TBatchRelease); ids
// the client does not have open are ignored, as in DLock. m is nil when the
// request did not decode.
func (s *serverState) releaseBatch(at instant, c *conn, m *wire.IDs, out *outbox) dlock.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.opGate(c); st != dlock.Success {
		return st
	}
	if m == nil {
		return dlock.ErrInval
	}
	client := c.client.id
	for _, id := range m.IDs[:m.N] {
		if s.locks.Has(client, id) {
			s.releaseLock(at, client, id, out)
		}
	}
	return dlock.Success
}
