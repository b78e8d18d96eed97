package dlockserver

import (
	"github.com/dlock-io/dlock"
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
	res := s.openLockOp(c.instant(), c, h.ID(), m, &c.ob)
	c.ob.send()
	switch {
	case res.status != dlock.Success:
		c.reply(t, h.ID(), res.status)
	case !res.ran:
		rep := wire.GetLockReply{ID: res.other, Lease: m.Open.Lease, Type: m.Open.Type}
		c.outMu.Lock()
		c.out = rep.AppendType(c.out, t.Reply(), h.ID(), 0)
		c.outMu.Unlock()
	case !res.queued:
		c.sendReply(h.ID(), &res.r)
	}
	return true
}
