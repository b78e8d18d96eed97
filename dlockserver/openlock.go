package dlockserver

import (
	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// openLockOp handles TOpenLockOp: get_lock and, if the lock has the id the
// client predicted, its first lock command, under one hold of the server's
// mutex (which holds every stripe). The open is exactly TGetLock's (same
// errors, same reference); the command exactly TLockOp's (same replies, blocking included). The reply's
// type says which ran: a TLockOp reply when the command ran, a TOpenLockOp
// reply with the lock's id when the lock has another id, and a header-only
// TOpenLockOp reply with the status when the open failed.
func (c *conn) openLockOp(h *wire.Header, body []byte) bool {
	m := &c.olo
	if !c.predecoded(h.Type()) && m.Decode(body) != nil {
		return c.malformed(h)
	}
	s := c.s
	t := h.Type()
	s.mu.Lock()
	var st dlock.Status
	switch {
	case c.client == nil:
		st = dlock.ErrGeneric
	case s.state != wire.StateReady:
		st = dlock.ErrNotReady
	}
	if st != dlock.Success {
		s.mu.Unlock()
		c.reply(t, h.ID(), st)
		return true
	}
	id, st := s.locks.Get(c.client.id, m.Open.Desc, dlock.LockType(m.Open.Type), m.Open.Preferred, m.Open.Lease)
	if st != dlock.Success {
		s.mu.Unlock()
		c.reply(t, h.ID(), st)
		return true
	}
	if id != m.Op.LockID {
		s.mu.Unlock()
		rep := wire.GetLockReply{ID: id, Lease: m.Open.Lease, Type: m.Open.Type}
		c.outMu.Lock()
		c.out = rep.AppendType(c.out, t.Reply(), h.ID(), 0)
		c.outMu.Unlock()
		return true
	}
	var r lockcore.Reply
	queued := false
	stripe := s.stripeOf(id) // held: mu holds every stripe
	if m.Op.Flags&wire.FlagBlock != 0 {
		r, queued = stripe.acquire(s.instant(), c, c.client.id, h.ID(), &m.Op)
	} else {
		r = stripe.exec(s.instant(), c.client.id, id, dlock.Cmd(m.Op.Cmd), dlock.LockState(m.Op.Arg))
	}
	s.mu.Unlock()
	if !queued {
		res := wire.LockResult{State: r.State, Token: r.Token}
		c.outMu.Lock()
		c.out = res.Append(c.out, h.ID(), int32(r.Status))
		c.outMu.Unlock()
	}
	return true
}
