package dlock

import (
	"context"
	"errors"
	"fmt"

	"github.com/dlock-io/dlock/internal/wire"
)

// A lock request's round trip, on top of the mux: what the client does
// when a request's outcome becomes unknown (recorded for resolution on
// reconnection, see Reinit), and how a call that gave up settles its
// request (cancelGrace).

// do runs one operation through the cache model: a local answer, or one
// round trip. flags and wait apply to a blocking lock request.
func (l *Lock) do(ctx context.Context, op Op, expire uint32, flags uint8, wait uint32) (Status, error) {
	st, _, _, err := l.exec(ctx, op, expire, flags, wait)
	if st == ErrLockNotGet {
		l.c.mu.Lock()
		pending := l.pending
		l.c.mu.Unlock()
		if pending {
			// Parked while recovery uploads it (the C API's LOCK_NOT_GET):
			// the hold is not gone, the server is not ready yet.
			st = ErrNotReady
		}
	}
	return st, err
}

// exec runs one operation through the cache model and reports the result
// buffer as the C API fills it.
func (l *Lock) exec(ctx context.Context, op Op, expire uint32, flags uint8, wait uint32) (Status, LockState, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.c
	c.mu.Lock()
	s, drop := l.beginOp(op, expire, callSync)
	c.mu.Unlock()
	c.dropTicket(drop)
	if s.local && s.status == ErrAlreadyLocked && isLockOp(op) && l.e.typ == RW {
		// RW locks re-enter in the cache, but the hold may be gone (the
		// server removed the client while it was cut off, or an operator
		// force-released it): confirm it before counting another hold.
		st, err := c.queryHold(ctx, l.e.id)
		if err != nil || st != Success {
			c.mu.Lock()
			l.e.restore(&s)
			if err == nil && (st == ErrFail || st == ErrLockNotGet) {
				l.e.reset()
				st = ErrFail
			}
			c.mu.Unlock()
			if err != nil {
				return 0, LockState{}, false, err
			}
			return st, LockState{}, false, nil
		}
	}
	if s.local {
		return s.status, s.result, s.fill, nil
	}
	m := wire.LockOp{LockID: l.e.id, Cmd: uint8(s.cmd), Arg: s.arg}
	if s.cmd == CmdExclusiveTrylock || s.cmd == CmdSharedTrylock ||
		s.cmd == CmdExclusiveTicketTrylock || s.cmd == CmdSharedTicketTrylock {
		m.Flags, m.WaitMillis = flags, wait
		s.retiresTicket = flags&wire.FlagBlock != 0 && flags&wire.FlagKeepTicket == 0
	}
	status, res, err := c.lockRoundTrip(ctx, &m)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		l.e.abort(&s)
		c.stats.Inc(StatNetworkFail)
		return 0, LockState{}, false, err
	}
	st := l.e.finish(&s, status, res.State, res.Token, &c.stats)
	if s.fill {
		l.last = s.result
	}
	if ctx.Err() != nil && (st == Success || st == ErrAlreadyLocked) && isLockOp(op) {
		// The grant raced the caller's give-up: hand it back.
		_, err := l.undoGrant(ctx, &s, st)
		return 0, LockState{}, false, err
	}
	return st, s.result, s.fill, nil
}

// undoGrant releases a hold that was granted after the caller's ctx ended.
// Called with l.mu and c.smu held.
func (l *Lock) undoGrant(ctx context.Context, s *step, st Status) (Status, error) {
	c := l.c
	u := l.e.begin(OpUnlock, 0, c.id, callSync, &c.stats)
	if u.local {
		return 0, ctx.Err()
	}
	c.mu.Unlock()
	m := wire.LockOp{LockID: l.e.id, Cmd: uint8(u.cmd), Arg: u.arg}
	uctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	status, res, err := c.lockRoundTrip(uctx, &m)
	cancel()
	c.mu.Lock()
	if err != nil {
		// The unlock's outcome is unknown too. Forget the hold: resolving
		// the lock on reconnection then drops it on the server if it is
		// still there, as the caller was told it does not hold the lock.
		l.e.reset()
	} else {
		l.e.finish(&u, status, res.State, res.Token, &c.stats)
	}
	return 0, ctx.Err()
}

// queryHold asks the server whether the client holds lock id now
// (TLockQuery): Success, ErrFail or ErrLockNotGet.
func (c *Client) queryHold(ctx context.Context, id int32) (Status, error) {
	m := wire.ID{ID: id}
	cl, err := c.m.roundTrip(ctx, func(dst []byte, rid uint32) []byte { return m.Append(dst, wire.TLockQuery, rid, c.id) })
	if err != nil {
		return 0, err
	}
	st := passThrough(cl.status)
	c.m.putCall(cl)
	return st, nil
}

// lockRoundTrip sends one lock command and waits for its reply.
func (c *Client) lockRoundTrip(ctx context.Context, m *wire.LockOp) (Status, wire.LockResult, error) {
	cl, err := c.m.newCall()
	if err != nil {
		return 0, wire.LockResult{}, err
	}
	cl.long = m.Flags&wire.FlagBlock != 0
	cl.setLocks(m.LockID)
	c.m.send(func(dst []byte) []byte { return m.Append(dst, cl.id, c.id) })
	return c.awaitLock(ctx, cl)
}

// errNoReply fails a connection on which the server left a request
// unanswered for cancelGrace after its caller gave up.
var errNoReply = errors.New("no reply from the server")

// awaitLock waits for the reply to the lock request cl. If ctx ends first,
// a blocking request is withdrawn (TCancel), and the reply is still awaited
// for cancelGrace, so that the caller learns what happened: the server
// answers every request and every withdrawal at once, so a reply that does
// not come by then means the connection is broken. It is then closed, and
// the request's outcome is resolved when the client is connected again
// (see Reinit). A lock request's outcome is thus never left unknown.
//
// The returned error is the transport's (the outcome was unknown); ctx's
// end is for the caller to check: a grant that raced it is returned as a
// grant.
func (c *Client) awaitLock(ctx context.Context, cl *call) (Status, wire.LockResult, error) {
	var res wire.LockResult
	c.settle(ctx, cl)
	if cl.err != nil {
		return 0, res, cl.err
	}
	status := Status(cl.status)
	if cl.typ != wire.TLockOp.Reply() || res.Decode(cl.body) != nil {
		return 0, res, c.brokenReply(cl, "malformed lock reply")
	}
	c.m.putCall(cl)
	return status, res, nil
}

// settle waits until lock request cl is finished: its reply is in, or its
// connection failed (the outcome is then unknown and cl.locks are marked
// for resolution). If ctx ends first, a blocking request is withdrawn
// (TCancel) and the reply awaited for cancelGrace more; a reply that does
// not come by then means the connection is broken, and it is closed.
func (c *Client) settle(ctx context.Context, cl *call) {
	if err := c.m.await(ctx, cl); err == nil || ctx.Err() == nil {
		return
	}
	if cl.long {
		cm := wire.ID{ID: int32(cl.id)}
		c.m.send(func(dst []byte) []byte { return cm.Append(dst, wire.TCancel, 0, c.id) })
	}
	gctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	err := c.m.await(gctx, cl)
	cancel()
	if err != nil && gctx.Err() != nil {
		c.m.fail(cl.conn, errNoReply)
		c.m.await(context.Background(), cl) // finished by fail, or by the reply just in
	}
}

// brokenReply handles a reply to lock request cl that breaks the protocol:
// the outcome is unknown, so the locks are marked for resolution and the
// connection is closed. cl is given back.
func (c *Client) brokenReply(cl *call, what string) error {
	err := fmt.Errorf("%s: %w", what, ErrBadResponse)
	c.mu.Lock()
	c.markUnknown(cl.locks[:cl.nlocks])
	c.mu.Unlock()
	c.m.fail(cl.conn, err)
	c.m.putCall(cl)
	return err
}

// beginOp maps op on this lock through the cache, with l.mu and c.mu held.
// A lock released or parked by recovery answers ErrLockNotGet. A local
// answer is settled here: its result recorded, and a fair ticket given up in
// the cache returned as a ticketDrop, for the caller to report once c.mu is
// released. Otherwise the step carries the command to send.
func (l *Lock) beginOp(op Op, expire uint32, via callKind) (step, ticketDrop) {
	c := l.c
	if l.released || l.pending {
		c.stats.Inc(StatLockNotGet)
		return step{op: op, via: via, local: true, status: ErrLockNotGet}, ticketDrop{}
	}
	prev, ticket := l.e.state, l.e.value
	s := l.e.begin(op, expire, c.id, via, &c.stats)
	var drop ticketDrop
	if s.local {
		if s.fill {
			l.last = s.result
		}
		if gaveUpTicket(prev, op, &s) {
			drop = ticketDrop{id: l.e.id, ticket: ticket, was: prev}
		}
	}
	return s, drop
}

// gaveUpTicket reports whether step s, begun on an entry in state prev,
// gave a fair ticket up in the cache (an unlock in a ticketed state).
func gaveUpTicket(prev localState, op Op, s *step) bool {
	return s.local && op == OpUnlock && s.status == Success &&
		(prev == stateExclusiveTicketed || prev == stateSharedTicketed)
}

// ticketDrop is a fair ticket given up in the cache (DLock's local
// abandon), which the server is told of once c.mu is released.
type ticketDrop struct {
	id     int32 // the lock; 0 when there is nothing to tell
	ticket LockState
	was    localState
}

// dropTicket tells the server that a fair ticket given up in the cache is
// not wanted, so the lock's hand-over does not wait 2 s for it. Fire and
// forget: the server sends no reply. Called without c.mu.
func (c *Client) dropTicket(d ticketDrop) {
	if d.id == 0 {
		return
	}
	m := wire.LockOp{LockID: d.id, Cmd: uint8(CmdExclusiveTicketTrylock), Arg: d.ticket}
	if d.was == stateSharedTicketed {
		m.Cmd = uint8(CmdSharedTicketTrylock)
	}
	c.m.send(func(dst []byte) []byte { return m.AppendType(dst, wire.TAbandon, 0, c.id) })
}

// lost is the mux's hook for a call pending on a connection that failed:
// the outcome of a lock request is unknown on each of its locks. Called
// with mux.mu held.
func (c *Client) lost(cl *call) {
	if cl.nlocks == 0 {
		return
	}
	c.mu.Lock()
	c.markUnknown(cl.locks[:cl.nlocks])
	c.mu.Unlock()
}

// markUnknown records that the outcome of a request on each of ids is
// unknown. Called with c.mu held.
func (c *Client) markUnknown(ids []int32) {
	for _, id := range ids {
		if c.unknown == nil {
			c.unknown = make(map[int32]struct{})
		}
		if _, dup := c.unknown[id]; !dup {
			c.unknown[id] = struct{}{}
			c.outcomes.Unknown++
		}
	}
}
