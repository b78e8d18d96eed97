package dlockserver

import (
	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// The handlers of a connection's requests. Each decodes its request, reads
// the time, calls the server's state (state*.go) and queues what it
// returns: the grants and withdrawals for other connections first (the
// connection's outbox), then its own reply. None holds a mutex of the state
// while it queues.

// sendReply queues the reply r to lock request reqID.
func (c *conn) sendReply(reqID uint32, r *lockcore.Reply) {
	c.res.State, c.res.Token = r.State, r.Token
	c.outMu.Lock()
	c.out = c.res.Append(c.out, reqID, int32(r.Status))
	c.outMu.Unlock()
}

// sendInit queues the reply of a registration.
func (c *conn) sendInit(t wire.Type, reqID uint32, rep *wire.InitReply, st dlock.Status) {
	if st != dlock.Success {
		c.reply(t, reqID, st)
		return
	}
	c.outMu.Lock()
	c.out = rep.Append(c.out, t, reqID, 0)
	c.outMu.Unlock()
}

// sendIDs queues a reply carrying ids, or the status st.
func (c *conn) sendIDs(t wire.Type, reqID uint32, ids *wire.IDs, st dlock.Status) {
	if st != dlock.Success {
		c.reply(t, reqID, st)
		return
	}
	c.outMu.Lock()
	c.out = ids.Append(c.out, t.Reply(), reqID, 0)
	c.outMu.Unlock()
}

// register handles TInit and TReinit.
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
	var rep wire.InitReply
	var st dlock.Status
	var keep bool
	if t == wire.TInit {
		rep, st, keep = s.register(c.instant(), c, &c.ob)
	} else {
		rep, st, keep = s.reregister(c.instant(), c, h.Client(), &c.ob)
	}
	c.ob.send()
	c.sendInit(t, h.ID(), &rep, st)
	return keep
}

// control handles heartbeat, deinit, reinit-done, lock query, stats and
// recovery upload.
func (c *conn) control(h *wire.Header, body []byte) bool {
	s := c.s
	t := h.Type()
	keep := true
	var st dlock.Status
	switch t {
	case wire.THeartbeat:
		st = s.heartbeat(c)
	case wire.TDeinit:
		st, keep = s.deregister(c.instant(), c, &c.ob)
		c.ob.send()
	case wire.TReinitDone:
		st = s.reinitDone(c)
	case wire.TLockQuery:
		m := &c.id
		if m.Decode(body) != nil {
			m = nil
		}
		st = s.lockQuery(c.instant(), c, m)
	case wire.TStats:
		stats := &c.rareMsg().stats
		if stats.Counters, st = s.statsFor(c); st == dlock.Success {
			c.outMu.Lock()
			c.out = stats.Append(c.out, h.ID(), 0)
			c.outMu.Unlock()
			return true
		}
	case wire.TResetStats:
		st = s.resetStatsFor(c)
	case wire.TUpdateLocks:
		if s.moveUploadWhenReady(c, h, body) {
			return true
		}
		m := &c.rareMsg().upd
		if m.Decode(body) != nil {
			m = nil
		}
		c.sendIDs(t, h.ID(), &c.ids, s.updateLocks(c, m, &c.ids))
		return true
	}
	c.reply(t, h.ID(), st)
	return keep
}

// lockLifecycle handles get/release lock and their batches.
func (c *conn) lockLifecycle(h *wire.Header, body []byte) bool {
	s := c.s
	t := h.Type()
	switch t {
	case wire.TGetLock:
		m := &c.get
		if !c.predecoded(t) && m.Decode(body) != nil {
			m = nil
		}
		id, st := s.getLock(c, m)
		if st != dlock.Success {
			c.reply(t, h.ID(), st)
			return true
		}
		rep := wire.GetLockReply{ID: id, Lease: m.Lease, Type: m.Type}
		c.outMu.Lock()
		c.out = rep.Append(c.out, h.ID(), 0)
		c.outMu.Unlock()
	case wire.TReleaseLock:
		m := &c.id
		if m.Decode(body) != nil {
			m = nil
		}
		st := s.releaseOne(c.instant(), c, m, &c.ob)
		c.ob.send()
		c.reply(t, h.ID(), st)
	case wire.TBatchGetLock:
		m := &c.rareMsg().bget
		if !c.predecoded(t) && m.Decode(body) != nil {
			m = nil
		}
		c.sendIDs(t, h.ID(), &c.ids, s.batchGetLock(c, m, &c.ids))
	case wire.TBatchRelease:
		m := &c.ids
		if m.Decode(body) != nil {
			m = nil
		}
		st := s.releaseBatch(c.instant(), c, m, &c.ob)
		c.ob.send()
		c.reply(t, h.ID(), st)
	}
	return true
}

// lockOp executes one lock command: the hot path.
func (c *conn) lockOp(h *wire.Header, body []byte) bool {
	m := &c.op
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	r, queued := s.lockOp(c.instant(), c, h.ID(), m, &c.ob)
	c.ob.send()
	if !queued {
		c.sendReply(h.ID(), &r)
	}
	return true
}

// cancel handles TCancel: the client gives up a blocking request, whose
// answer goes out unless it was answered already.
func (c *conn) cancel(h *wire.Header, body []byte) bool {
	m := &c.id
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	s.cancel(c.instant(), c, uint32(m.ID), &c.ob)
	c.ob.send()
	return true
}

// batchLockOp executes up to 31 commands independently, in order.
func (c *conn) batchLockOp(h *wire.Header, body []byte) bool {
	m := &c.bop
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	s.batchLockOp(c.instant(), c, m, &c.bres, &c.ob) // one clock reading for the whole batch
	c.ob.send()
	c.outMu.Lock()
	c.out = c.bres.Append(c.out, h.ID(), 0)
	c.outMu.Unlock()
	return true
}

// objOp handles fetch-and-add, compare-and-swap and load: the object hot
// path.
func (c *conn) objOp(h *wire.Header, body []byte) bool {
	t := h.Type()
	m := &c.oop
	if t == wire.TObjLoad {
		if c.id.Decode(body) != nil {
			return c.malformed(h)
		}
		*m = wire.ObjOp{ID: c.id.ID}
	} else if m.Decode(body) != nil {
		return c.malformed(h)
	}
	if st, deferred := c.s.objOp(c, t, h.ID(), m, &c.orep); !deferred {
		c.sendObj(t, h.ID(), st)
	}
	return true
}

// objLifecycle handles object create/get/release/destroy.
func (c *conn) objLifecycle(h *wire.Header, body []byte) bool {
	t := h.Type()
	s := c.s
	var obj *wire.Object
	var id *wire.ID
	if t == wire.TObjCreate || t == wire.TObjGet {
		if obj = &c.obj; !c.predecoded(t) && obj.Decode(body) != nil {
			obj = nil
		}
	} else if id = &c.id; id.Decode(body) != nil {
		id = nil
	}
	switch st, how := s.objLifecycle(c.instant(), c, t, h.ID(), obj, id, &c.orep); how {
	case objStatus:
		c.reply(t, h.ID(), st)
	case objWithReply:
		c.sendObj(t, h.ID(), st)
	}
	return true
}

// sendObj queues the object reply c.orep with status st.
func (c *conn) sendObj(t wire.Type, reqID uint32, st dlock.Status) {
	c.outMu.Lock()
	c.out = c.orep.Append(c.out, t, reqID, int32(st))
	c.outMu.Unlock()
}

// abandon handles TAbandon: the client gave a fair ticket up (unlock in the
// ticketed state), so the hand-over need not wait for it. No reply.
func (c *conn) abandon(h *wire.Header, body []byte) bool {
	m := &c.op
	if m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	s.abandon(c.instant(), c, m, &c.ob)
	c.ob.send()
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
	st := s.resolve(c.instant(), c, m, &c.ob)
	c.ob.send()
	c.reply(h.Type(), h.ID(), st)
	return true
}
