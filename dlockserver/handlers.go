package dlockserver

import (
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// register handles TInit and TReinit (SEMANTICS.md §8, §9).
func (c *conn) register(h *wire.Header, body []byte) bool {
	s := c.s
	t := h.Type()
	m := &c.init
	if m.Decode(body) != nil {
		c.reply(t, h.ID(), dlock.ErrInval)
		return t != wire.TInit
	}
	if h.Version() < dlock.MinProtoVersion || m.MinVersion > dlock.ProtoVersion {
		c.reply(t, h.ID(), dlock.ErrProtoNegotiationFail)
		return false
	}
	if m.TPMode != s.cfg.TPMode {
		s.cfg.Logger.Warn("refusing a client: its transport mode differs from the server's", "remote", c.raw.RemoteAddr(),
			"client_tp_mode", m.TPMode, "tp_mode", s.cfg.TPMode)
		c.reply(t, h.ID(), dlock.ErrGeneric)
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(st dlock.Status, keep bool) bool {
		c.reply(t, h.ID(), st)
		return keep
	}
	if t == wire.TInit {
		if c.client != nil {
			return fail(dlock.ErrGeneric, true)
		}
		if s.state != wire.StateReady {
			return fail(dlock.ErrNotReady, false)
		}
		if len(s.clients) >= s.cfg.MaxClients && !s.evictOne() {
			return fail(dlock.ErrServerNoResource, false)
		}
		cl := &client{id: s.newClientID(), conn: c, identity: c.peerID, hasIdentity: c.hasPeer}
		s.clients[cl.id] = cl
		c.client = cl
		if s.ha != nil {
			// Recorded in the cluster before the client learns its id, so
			// that a next primary waits for it.
			epoch := s.ha.epoch
			err := s.haRegister(cl.id)
			if err != nil || s.ha.epoch != epoch || s.clients[cl.id] != cl || !s.haServing() {
				if s.clients[cl.id] == cl {
					delete(s.clients, cl.id)
				}
				c.client = nil
				s.cfg.Logger.Warn("registration not recorded in the cluster", "client", cl.id, "err", err)
				return fail(dlock.ErrNotReady, false)
			}
			s.ha.known[cl.id] = true
		}
		cl.addr = c.remote()
		if s.debugOn() {
			s.cfg.Logger.Debug("client registered", "client", cl.id, "remote", c.remote())
		}
		rep := wire.InitReply{ClientID: cl.id, ServerState: s.state, Version: wire.Version, Flags: s.objFlags(), Epoch: s.haEpoch()}
		c.outMu.Lock()
		c.out = rep.Append(c.out, t, h.ID(), 0)
		c.outMu.Unlock()
		return true
	}

	id := h.Client()
	if id <= 0 || (c.client != nil && c.client.id != id) {
		return fail(dlock.ErrGeneric, true)
	}
	cl := s.clients[id]
	if cl != nil && cl.hasIdentity && (!c.hasPeer || c.peerID != cl.identity) {
		// Another certificate claims this id: impersonation. The holder's
		// connection, if any, is left alone.
		s.stats.Inc(dlock.StatClientIDVerifyFail)
		s.cfg.Logger.Warn("refusing reinit: the client certificate differs from the one that registered the id", "client", id, "remote", c.raw.RemoteAddr())
		return fail(dlock.ErrGeneric, false)
	}
	if cl != nil {
		// A client that registers again — also during recovery, after its
		// connection dropped mid-upload — replaces its old connection; its
		// new upload merges idempotently with what it uploaded before. If
		// it had finished recovering, the server waits for it again.
		if s.state != wire.StateReady && cl.finished {
			cl.finished = false
			s.recovery++
		}
		if old := cl.conn; old != nil && old != c {
			old.client = nil
			s.dropConnWaiters(old)
			old.raw.Close()
		}
	} else {
		if s.state == wire.StateReady || (s.ha != nil && !s.ha.known[id]) {
			// In a cluster, only the registered clients may come back.
			return fail(dlock.ErrClientRemovedByServer, true)
		}
		if len(s.clients) >= s.cfg.MaxClients {
			return fail(dlock.ErrServerNoResource, true)
		}
		cl = &client{id: id, identity: c.peerID, hasIdentity: c.hasPeer}
		s.clients[id] = cl
	}
	cl.conn = c
	cl.reinit = true
	c.client = cl
	cl.addr = c.remote()
	if s.debugOn() {
		s.cfg.Logger.Debug("client re-registered", "client", id, "remote", c.remote())
	}
	rep := wire.InitReply{ClientID: id, ServerState: s.state, Version: wire.Version, Flags: s.objFlags(), Epoch: s.haEpoch()}
	c.outMu.Lock()
	c.out = rep.Append(c.out, t, h.ID(), 0)
	c.outMu.Unlock()
	return true
}

// evictOne removes the abnormal client with the smallest id (SEMANTICS.md §8.3) and
// reports whether there was one. Called with mu held.
func (s *Server) evictOne() bool {
	var victim *client
	for _, cl := range s.clients {
		if cl.conn == nil && (victim == nil || cl.id < victim.id) {
			victim = cl
		}
	}
	if victim == nil {
		return false
	}
	s.cfg.Logger.Info("evicting abnormal client to make room", "client", victim.id, "remote", victim.addr)
	s.removeClient(victim)
	s.haDeregister(victim.id, false)
	return true
}

// control handles heartbeat, deinit, reinit-done, stats and recovery upload.
func (c *conn) control(h *wire.Header, body []byte) bool {
	s := c.s
	t := h.Type()
	s.mu.Lock()
	defer s.mu.Unlock()
	ready := s.state == wire.StateReady
	cl := c.client
	if cl == nil {
		c.reply(t, h.ID(), dlock.ErrGeneric)
		return true
	}
	switch t {
	case wire.THeartbeat:
		if !ready {
			c.reply(t, h.ID(), dlock.ErrNotReady)
			return true
		}
		c.reply(t, h.ID(), dlock.Success)
	case wire.TDeinit:
		if !ready {
			c.reply(t, h.ID(), dlock.ErrNotReady)
			return false
		}
		s.removeClient(cl)
		s.haDeregister(cl.id, true)
		if s.debugOn() {
			s.cfg.Logger.Debug("client deregistered", "client", cl.id, "remote", c.remote())
		}
		c.reply(t, h.ID(), dlock.Success)
		return false
	case wire.TReinitDone:
		if !cl.reinit {
			c.reply(t, h.ID(), dlock.ErrGeneric)
			return true
		}
		cl.reinit = false
		if s.state == wire.StateWaitClientReinit && s.ha != nil {
			s.haReinitDone(cl.id)
		} else if s.state == wire.StateWaitClientReinit && !cl.finished {
			cl.finished = true
			s.recovery--
			if s.recovery <= 0 {
				s.becomeReady()
			}
		}
		c.reply(t, h.ID(), dlock.Success)
	case wire.TLockQuery:
		if !ready {
			c.reply(t, h.ID(), dlock.ErrNotReady)
			return true
		}
		if c.id.Decode(body) != nil {
			c.reply(t, h.ID(), dlock.ErrInval)
			return true
		}
		c.reply(t, h.ID(), s.holds(cl.id, c.id.ID))
	case wire.TStats:
		if !ready {
			c.reply(t, h.ID(), dlock.ErrNotReady)
			return true
		}
		c.stats.Counters = s.stats
		c.outMu.Lock()
		c.out = c.stats.Append(c.out, h.ID(), 0)
		c.outMu.Unlock()
	case wire.TResetStats:
		if !ready {
			c.reply(t, h.ID(), dlock.ErrNotReady)
			return true
		}
		s.stats = dlock.Stats{}
		c.reply(t, h.ID(), dlock.Success)
	case wire.TUpdateLocks:
		if ready || !cl.reinit {
			c.reply(t, h.ID(), dlock.ErrGeneric)
			return true
		}
		if c.upd.Decode(body) != nil {
			c.reply(t, h.ID(), dlock.ErrInval)
			return true
		}
		s.updateLocks(cl, h.ID(), c)
	}
	return true
}

// becomeReady ends recovery. Called with mu held.
func (s *Server) becomeReady() {
	s.state = wire.StateReady
	s.recovery = 0
	s.locks.EndRecovery()
	s.cfg.Logger.Info("recovery complete: server ready", "clients", len(s.clients), "locks", s.locks.Len())
}

// recoveryDeadline ends recovery with the clients that came back. Called
// with mu held.
func (s *Server) recoveryDeadline() {
	if s.state == wire.StateReady {
		return
	}
	var unfinished []int32
	for id, cl := range s.clients {
		if cl.reinit {
			unfinished = append(unfinished, id)
		}
	}
	s.cfg.Logger.Warn("recovery deadline passed: becoming ready with the clients that returned",
		"expected", s.cfg.RecoveryClients, "missing", s.recovery, "returned", len(s.clients),
		"unfinished_clients", unfinished)
	s.becomeReady()
}

// updateLocks merges a recovery upload (SEMANTICS.md §9). Called with mu held.
func (s *Server) updateLocks(cl *client, reqID uint32, c *conn) {
	m := &c.upd
	c.ids.N = m.N
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		c.ids.IDs[i] = s.locks.Merge(cl.id, it.Desc, dlock.LockType(it.Type), it.ID, it.Lease,
			dlock.LockState(it.State), lockcore.Hold(it.Hold), it.Token)
	}
	cl.uploaded = true
	c.outMu.Lock()
	c.out = c.ids.Append(c.out, wire.TUpdateLocks.Reply(), reqID, 0)
	c.outMu.Unlock()
}

// lockLifecycle handles get/release lock and their batches.
func (c *conn) lockLifecycle(h *wire.Header, body []byte) bool {
	s := c.s
	t := h.Type()
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.client == nil {
		c.reply(t, h.ID(), dlock.ErrGeneric)
		return true
	}
	if s.state != wire.StateReady {
		c.reply(t, h.ID(), dlock.ErrNotReady)
		return true
	}
	id := c.client.id
	switch t {
	case wire.TGetLock:
		m := &c.get
		if m.Decode(body) != nil {
			c.reply(t, h.ID(), dlock.ErrInval)
			return true
		}
		lid, st := s.locks.Get(id, m.Desc, dlock.LockType(m.Type), m.Preferred, m.Lease)
		if st != dlock.Success {
			c.reply(t, h.ID(), st)
			return true
		}
		rep := wire.GetLockReply{ID: lid, Lease: m.Lease, Type: m.Type}
		c.outMu.Lock()
		c.out = rep.Append(c.out, h.ID(), 0)
		c.outMu.Unlock()
	case wire.TReleaseLock:
		m := &c.id
		if m.Decode(body) != nil {
			c.reply(t, h.ID(), dlock.ErrInval)
			return true
		}
		s.cancelWaitersOn(id, m.ID)
		s.forgetHold(m.ID, id)
		st, wake := s.locks.Release(s.now(), id, m.ID, s.wake[:0])
		s.deliver(wake)
		if l := s.locks.Lock(m.ID); l != nil {
			s.schedule(m.ID, l)
		}
		c.reply(t, h.ID(), st)
	case wire.TBatchGetLock:
		m := &c.bget
		if m.Decode(body) != nil {
			c.reply(t, h.ID(), dlock.ErrInval)
			return true
		}
		c.ids.N = m.N
		for i := 0; i < m.N; i++ {
			it := &m.Items[i]
			lid, st := s.locks.Get(id, it.Desc, dlock.LockType(it.Type), it.Preferred, it.Lease)
			switch st {
			case dlock.Success:
				c.ids.IDs[i] = lid
			case dlock.ErrServerNoResource:
				c.ids.IDs[i] = -int32(dlock.ErrServerNoResource)
			default:
				c.ids.IDs[i] = -1
			}
		}
		c.outMu.Lock()
		c.out = c.ids.Append(c.out, t.Reply(), h.ID(), 0)
		c.outMu.Unlock()
	case wire.TBatchRelease:
		m := &c.ids
		if m.Decode(body) != nil {
			c.reply(t, h.ID(), dlock.ErrInval)
			return true
		}
		now := s.now()
		for i := 0; i < m.N; i++ {
			lid := m.IDs[i]
			if !s.locks.Has(id, lid) {
				continue // ids the client does not hold are ignored, as in DLock
			}
			s.cancelWaitersOn(id, lid)
			s.forgetHold(lid, id)
			_, wake := s.locks.Release(now, id, lid, s.wake[:0])
			s.deliver(wake)
			if l := s.locks.Lock(lid); l != nil {
				s.schedule(lid, l)
			}
		}
		c.reply(t, h.ID(), dlock.Success)
	}
	return true
}

// cancelWaitersOn answers client's queued requests on lock id before the
// client lets go of the lock. Called with mu held.
func (s *Server) cancelWaitersOn(client, id int32) {
	now := s.now()
	for tag, w := range s.waits {
		if w.client == client && w.lockID == id {
			s.withdraw(now, tag, w, lockGone)
		}
	}
}

// lockOp executes one lock command: the hot path.
func (c *conn) lockOp(h *wire.Header, body []byte) bool {
	m := &c.op
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	r := lockcore.Reply{}
	queued := false
	s.mu.Lock()
	switch {
	case c.client == nil:
		r.Status = dlock.ErrGeneric
	case s.state != wire.StateReady:
		r.Status = dlock.ErrNotReady
	case m.Flags&wire.FlagBlock != 0:
		r, queued = s.acquire(c, h.ID(), m)
	default:
		r = s.exec(s.now(), c.client.id, m.LockID, dlock.Cmd(m.Cmd), dlock.LockState(m.Arg))
	}
	s.mu.Unlock()
	if !queued {
		c.res.State, c.res.Token = r.State, r.Token
		c.outMu.Lock()
		c.out = c.res.Append(c.out, h.ID(), int32(r.Status))
		c.outMu.Unlock()
	}
	return true
}

// lookup finds lock id for client, answering what the upstream data plane
// answers for an unknown lock. Called with mu held.
func (s *Server) lookup(client, id int32) (*lockcore.Lock, dlock.Status) {
	l := s.locks.Lock(id)
	if l == nil {
		s.stats.Inc(dlock.StatEInvalLockOffset)
		return nil, dlock.ErrInval
	}
	if !l.Referenced(client) {
		return nil, dlock.ErrLockNotGet
	}
	return l, dlock.Success
}

// exec runs one non-blocking command at second now. Called with mu held.
func (s *Server) exec(now uint32, client, id int32, cmd dlock.Cmd, arg dlock.LockState) lockcore.Reply {
	l, st := s.lookup(client, id)
	if l == nil {
		return lockcore.Reply{Status: st}
	}
	r, wake := l.Exec(now, client, cmd, arg, &s.stats, s.wake[:0])
	s.observeOp(id, l, client, cmd, &r, now)
	if len(wake) > 0 {
		s.deliver(wake)
	}
	if l.Waiters() > 0 {
		s.schedule(id, l)
	}
	return r
}

// acquire runs a blocking request: granted now, or queued. Called with mu
// held.
func (s *Server) acquire(c *conn, reqID uint32, m *wire.LockOp) (lockcore.Reply, bool) {
	client := c.client.id
	l, st := s.lookup(client, m.LockID)
	if l == nil {
		return lockcore.Reply{Status: st}, false
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
	if _, dup := s.waits[w.Tag]; dup {
		return lockcore.Reply{Status: dlock.ErrInval}, false
	}
	now := s.now()
	r, queued, wake := l.Acquire(now, w, &s.stats, s.wake[:0])
	s.deliver(wake)
	if !queued {
		s.observeImmediate(m.LockID, l, client, cmd, &r, now)
	}
	if queued {
		ns := s.obs.ns // read by s.now() above
		s.waits[w.Tag] = &waiter{c: c, reqID: reqID, lockID: m.LockID, client: client, keepTicket: m.Flags&wire.FlagKeepTicket != 0,
			shared: w.Mode == dlock.Shared, since: ns}
		s.observeQueued(m.LockID, l, ns)
		if m.WaitMillis > 0 {
			s.push(event{at: s.clk.now().Add(time.Duration(m.WaitMillis) * time.Millisecond), kind: evWait, tag: w.Tag})
		}
	}
	s.schedule(m.LockID, l)
	return r, queued
}

// cancel handles TCancel: the client gives up a blocking request.
func (c *conn) cancel(h *wire.Header, body []byte) bool {
	m := &c.id
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	tag := c.tag(uint32(m.ID))
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.waits[tag]; w != nil { // else already answered
		s.withdraw(s.now(), tag, w, giveUp)
	}
	return true
}

// batchLockOp executes up to 31 commands independently, in order.
func (c *conn) batchLockOp(h *wire.Header, body []byte) bool {
	m := &c.bop
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	res := &c.bres
	res.N = m.N
	s.mu.Lock()
	now := s.now() // one clock reading for the whole batch
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		var r lockcore.Reply
		if c.client == nil {
			r.Status = dlock.ErrGeneric
		} else if s.state != wire.StateReady {
			r.Status = dlock.ErrNotReady
		} else {
			r = s.exec(now, c.client.id, it.LockID, dlock.Cmd(it.Cmd), dlock.LockState(it.Arg))
		}
		res.Items[i] = wire.LockResult{Status: int32(r.Status), State: r.State, Token: r.Token}
	}
	s.mu.Unlock()
	c.outMu.Lock()
	c.out = res.Append(c.out, h.ID(), 0)
	c.outMu.Unlock()
	return true
}

// objOp handles fetch-and-add, compare-and-swap and load: the object hot
// path. Like upstream's one-sided atomics they work during recovery.
func (c *conn) objOp(h *wire.Header, body []byte) bool {
	t := h.Type()
	s := c.s
	rep := &c.orep
	*rep = wire.ObjReply{}
	var st dlock.Status
	if t == wire.TObjLoad {
		if c.id.Decode(body) != nil {
			return c.malformed(h)
		}
		rep.ID = c.id.ID
		s.mu.Lock()
		rep.Value, st = s.objs.Load(c.id.ID)
		s.obs.ops[OpLoad][statusSlot(st)]++
	} else {
		m := &c.oop
		if m.Decode(body) != nil {
			return c.malformed(h)
		}
		rep.ID = m.ID
		s.mu.Lock()
		if t == wire.TObjFAA {
			rep.Value, st = s.objs.FetchAndAdd(m.ID, m.A)
			s.obs.ops[OpFetchAndAdd][statusSlot(st)]++
		} else {
			st = s.objs.CompareAndSwap(m.ID, m.A, m.B)
			s.obs.ops[OpCompareAndSwap][statusSlot(st)]++
		}
	}
	// With durable objects the reply waits for the change to be committed.
	deferred := s.ha != nil && s.haObjReply(c, t, h.ID(), rep, st, rep.ID)
	s.mu.Unlock()
	if deferred {
		return true
	}
	c.outMu.Lock()
	c.out = rep.Append(c.out, t, h.ID(), int32(st))
	c.outMu.Unlock()
	return true
}

// objLifecycle handles object create/get/release/destroy.
func (c *conn) objLifecycle(h *wire.Header, body []byte) bool {
	t := h.Type()
	s := c.s
	rep := &c.orep
	*rep = wire.ObjReply{}
	var st dlock.Status
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.client == nil {
		c.reply(t, h.ID(), dlock.ErrGeneric)
		return true
	}
	if s.state != wire.StateReady {
		c.reply(t, h.ID(), dlock.ErrNotReady)
		return true
	}
	id, now := c.client.id, s.now()
	switch t {
	case wire.TObjCreate, wire.TObjGet:
		m := &c.obj
		if m.Decode(body) != nil {
			c.reply(t, h.ID(), dlock.ErrInval)
			return true
		}
		if t == wire.TObjCreate {
			rep.ID, st = s.objs.Create(now, id, m.Desc, m.Preferred, m.Lease, m.Init)
		} else {
			rep.ID, st = s.objs.Get(now, id, m.Desc, m.Lease)
		}
	default:
		if c.id.Decode(body) != nil {
			c.reply(t, h.ID(), dlock.ErrInval)
			return true
		}
		rep.ID = c.id.ID
		if t == wire.TObjRelease {
			st = s.objs.Release(now, id, c.id.ID)
		} else {
			st = s.objs.Destroy(now, id, c.id.ID)
		}
	}
	if s.ha != nil && s.haObjReply(c, t, h.ID(), rep, st, c.objTouched(t, rep.ID)) {
		return true // sent once the change is committed
	}
	c.outMu.Lock()
	c.out = rep.Append(c.out, t, h.ID(), int32(st))
	c.outMu.Unlock()
	return true
}

// holds answers TLockQuery: Success when client holds lock id now (an
// ATOMIC or FAIR hold whose lease ran out does not count), ErrFail when it
// does not, ErrLockNotGet when it has no reference. Called with mu held.
func (s *Server) holds(client, id int32) dlock.Status {
	l, st := s.lookup(client, id)
	if l == nil {
		return st
	}
	if holding(l, client, s.now()) {
		return dlock.Success
	}
	return dlock.ErrFail
}

// abandon handles TAbandon: the client gave a fair ticket up (unlock in the
// ticketed state), so the hand-over need not wait for it. No reply.
func (c *conn) abandon(h *wire.Header, body []byte) bool {
	m := &c.op
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.client == nil || s.state != wire.StateReady {
		return true
	}
	l, _ := s.lookup(c.client.id, m.LockID)
	if l == nil {
		return true
	}
	shared := dlock.Cmd(m.Cmd).Shared()
	s.deliver(l.Abandon(s.now(), dlock.LockState(m.Arg).Fair(), shared, s.wake[:0]))
	s.schedule(m.LockID, l)
	return true
}

// resolve handles TResolve: after a reply was lost with its connection, a
// client that reconnected and does not believe it holds lock m.LockID asks
// the server to drop any hold it has there (a grant it never received). A
// FAIR ticket it stored (m.Arg, when nonzero) is abandoned too. The answer is
// Success when a hold was dropped, ErrFail when there was none.
func (c *conn) resolve(h *wire.Header, body []byte) bool {
	m := &c.op
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	t := h.Type()
	if c.client == nil { // re-registered on another connection meanwhile
		c.reply(t, h.ID(), dlock.ErrGeneric)
		return true
	}
	if s.state != wire.StateReady {
		c.reply(t, h.ID(), dlock.ErrNotReady)
		return true
	}
	client := c.client.id
	l, st := s.lookup(client, m.LockID)
	if l == nil {
		c.reply(t, h.ID(), st)
		return true
	}
	now := s.now()
	held := l.HeldBy(client)
	wake := l.Drop(now, client, s.wake[:0])
	if l.Type() == dlock.Fair && m.Arg != ([16]byte{}) {
		wake = l.Abandon(now, dlock.LockState(m.Arg).Fair(), dlock.Cmd(m.Cmd).Shared(), wake)
	}
	s.deliver(wake)
	s.schedule(m.LockID, l)
	if held {
		s.cfg.Logger.Info("released a hold whose grant the client never received", "client", client, "lock", m.LockID)
		c.reply(t, h.ID(), dlock.Success)
	} else {
		c.reply(t, h.ID(), dlock.ErrFail)
	}
	return true
}
