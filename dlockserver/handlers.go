package dlockserver

import (
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
	if c.evicted {
		// Closed to make room, with frames still buffered: it never
		// becomes a client (a slot map change waits only for the
		// requests of the server's connections: shard.go).
		return fail(dlock.ErrGeneric, false)
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
		stats := &c.rareMsg().stats
		stats.Counters = s.statsLocked()
		c.outMu.Lock()
		c.out = stats.Append(c.out, h.ID(), 0)
		c.outMu.Unlock()
	case wire.TResetStats:
		if !ready {
			c.reply(t, h.ID(), dlock.ErrNotReady)
			return true
		}
		s.resetStatsLocked()
		c.reply(t, h.ID(), dlock.Success)
	case wire.TUpdateLocks:
		if ready {
			c.moveUpload(cl, h, body) // (shard_move.go)
			return true
		}
		if !cl.reinit {
			c.reply(t, h.ID(), dlock.ErrGeneric)
			return true
		}
		if c.rareMsg().upd.Decode(body) != nil {
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
	m := &c.rareMsg().upd
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
		if !c.predecoded(t) && m.Decode(body) != nil {
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
		c.reply(t, h.ID(), s.releaseLock(s.instant(), id, m.ID))
	case wire.TBatchGetLock:
		m := &c.rareMsg().bget
		if !c.predecoded(t) && m.Decode(body) != nil {
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
		at := s.instant()
		for i := 0; i < m.N; i++ {
			lid := m.IDs[i]
			if !s.locks.Has(id, lid) {
				continue // ids the client does not hold are ignored, as in DLock
			}
			s.releaseLock(at, id, lid)
		}
		c.reply(t, h.ID(), dlock.Success)
	}
	return true
}

// lockOp executes one lock command: the hot path. It holds the stripe of
// the lock (opLock).
func (c *conn) lockOp(h *wire.Header, body []byte) bool {
	m := &c.op
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	r := lockcore.Reply{}
	queued := false
	st := s.stripeOf(m.LockID)
	s.opLock(st)
	switch {
	case c.client == nil:
		r.Status = dlock.ErrGeneric
	case s.state != wire.StateReady:
		r.Status = dlock.ErrNotReady
	case m.Flags&wire.FlagBlock != 0:
		r, queued = st.acquire(s.instant(), c, c.client.id, h.ID(), m)
	default:
		r = st.exec(s.instant(), c.client.id, m.LockID, dlock.Cmd(m.Cmd), dlock.LockState(m.Arg))
	}
	s.opUnlock(st)
	if !queued {
		c.res.State, c.res.Token = r.State, r.Token
		c.outMu.Lock()
		c.out = c.res.Append(c.out, h.ID(), int32(r.Status))
		c.outMu.Unlock()
	}
	return true
}

// cancel handles TCancel: the client gives up a blocking request.
func (c *conn) cancel(h *wire.Header, body []byte) bool {
	m := &c.id
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	s.cancel(c, uint32(m.ID))
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
	at := s.instant() // one clock reading for the whole batch
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		var r lockcore.Reply
		st := s.stripeOf(it.LockID)
		s.opLock(st)
		if c.client == nil {
			r.Status = dlock.ErrGeneric
		} else if s.state != wire.StateReady {
			r.Status = dlock.ErrNotReady
		} else {
			r = st.exec(at, c.client.id, it.LockID, dlock.Cmd(it.Cmd), dlock.LockState(it.Arg))
		}
		s.opUnlock(st)
		res.Items[i] = wire.LockResult{Status: int32(r.Status), State: r.State, Token: r.Token}
	}
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
	var sp *stripe
	if t == wire.TObjLoad {
		if c.id.Decode(body) != nil {
			return c.malformed(h)
		}
		rep.ID = c.id.ID
		sp = s.stripeOf(c.id.ID)
		s.opLock(sp)
		s.objMu.Lock()
		rep.Value, st = s.objs.Load(c.id.ID)
		sp.obs.ops[OpLoad][statusSlot(st)]++
	} else {
		m := &c.oop
		if m.Decode(body) != nil {
			return c.malformed(h)
		}
		rep.ID = m.ID
		sp = s.stripeOf(m.ID)
		s.opLock(sp)
		s.objMu.Lock()
		if t == wire.TObjFAA {
			rep.Value, st = s.objs.FetchAndAdd(m.ID, m.A)
			sp.obs.ops[OpFetchAndAdd][statusSlot(st)]++
		} else {
			st = s.objs.CompareAndSwap(m.ID, m.A, m.B)
			sp.obs.ops[OpCompareAndSwap][statusSlot(st)]++
		}
	}
	// With durable objects the reply waits for the change to be committed
	// (in a cluster opLock holds g, which serialises that bookkeeping).
	deferred := s.ha != nil && s.haObjReply(c, t, h.ID(), rep, st, rep.ID)
	s.objMu.Unlock()
	s.opUnlock(sp)
	if deferred {
		return true
	}
	c.outMu.Lock()
	c.out = rep.Append(c.out, t, h.ID(), int32(st))
	c.outMu.Unlock()
	return true
}

// objLifecycle handles object create/get/release/destroy. Objects have
// their own mutex (objMu), so these are requests, not transitions: they
// hold one stripe (which keeps the server-wide state still) and objMu.
func (c *conn) objLifecycle(h *wire.Header, body []byte) bool {
	t := h.Type()
	s := c.s
	rep := &c.orep
	*rep = wire.ObjReply{}
	var st dlock.Status
	home := s.stripeOf(int32(c.seq))
	s.opLock(home)
	defer s.opUnlock(home)
	s.objMu.Lock()
	defer s.objMu.Unlock()
	if c.client == nil {
		c.reply(t, h.ID(), dlock.ErrGeneric)
		return true
	}
	if s.state != wire.StateReady {
		c.reply(t, h.ID(), dlock.ErrNotReady)
		return true
	}
	id, now := c.client.id, s.instant().sec
	switch t {
	case wire.TObjCreate, wire.TObjGet:
		m := &c.obj
		if !c.predecoded(t) && m.Decode(body) != nil {
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
	st := s.stripeOf(m.LockID)
	l, _ := st.lookup(c.client.id, m.LockID)
	if l == nil {
		return true
	}
	shared := dlock.Cmd(m.Cmd).Shared()
	at := s.instant()
	st.deliver(at, l.Abandon(at.sec, dlock.LockState(m.Arg).Fair(), shared, st.wake[:0]))
	st.schedule(m.LockID, l)
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
	sp := s.stripeOf(m.LockID)
	l, st := sp.lookup(client, m.LockID)
	if l == nil {
		c.reply(t, h.ID(), st)
		return true
	}
	at := s.instant()
	held := l.HeldBy(client)
	wake := l.Drop(at.sec, client, sp.wake[:0])
	if l.Type() == dlock.Fair && m.Arg != ([16]byte{}) {
		wake = l.Abandon(at.sec, dlock.LockState(m.Arg).Fair(), dlock.Cmd(m.Cmd).Shared(), wake)
	}
	sp.deliver(at, wake)
	sp.schedule(m.LockID, l)
	if held {
		s.cfg.Logger.Info("released a hold whose grant the client never received", "client", client, "lock", m.LockID)
		c.reply(t, h.ID(), dlock.Success)
	} else {
		c.reply(t, h.ID(), dlock.ErrFail)
	}
	return true
}
