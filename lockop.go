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

// One lock operation runs in the same steps whichever API it came through
// (a method of Lock, the C layer's cDo or cStart, an entry of a batch),
// with l.mu held (an asynchronous call releases it while it waits):
//
//	s, err := l.begin(ctx, op, expire, via)   // the cache decides: s.local, or a command
//	cl, err := l.post(&s, flags, wait)        // the command goes out (a batch sends one frame)
//	st := l.end(&s, status, val, token, err)  // finish with the reply, or abort
//
// collect (or, for an asynchronous call, awaitLock and then complete) waits
// for a posted step and ends it, and hands back a grant that came after
// the caller gave up; exec is the whole sequence of a synchronous call.

// do runs one operation through the cache model: a local answer, or one
// round trip. flags and wait apply to a blocking lock request.
func (l *Lock) do(ctx context.Context, op Op, expire uint32, flags uint8, wait uint32) (Status, error) {
	st, _, _, err := l.exec(ctx, op, expire, flags, wait)
	return l.parked(st), err
}

// parked turns the status of an operation into the Go API's: a lock parked
// while recovery uploads it answers ErrNotReady, not ErrLockNotGet.
func (l *Lock) parked(st Status) Status {
	if st == ErrLockNotGet {
		c := l.cl()
		c.mu.Lock()
		pending := l.pending
		c.mu.Unlock()
		if pending {
			// Parked while recovery uploads it (the C API's LOCK_NOT_GET):
			// the hold is not gone, the server is not ready yet.
			st = ErrNotReady
		}
	}
	return st
}

// exec runs one synchronous operation and reports the result buffer as the
// C API fills it.
func (l *Lock) exec(ctx context.Context, op Op, expire uint32, flags uint8, wait uint32) (Status, LockState, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for moves := 1; ; moves++ {
		st, res, fill, err := l.exec1(ctx, op, expire, flags, wait)
		r := l.cl().router
		if err != nil || st != ErrMoved || r == nil || moves >= maxMoves {
			return st, res, fill, err
		}
		// The lock's slot moved to another shard: a Router hands the
		// handle (and its hold) over to that shard's Client, then the
		// operation runs there (router_move.go).
		if err := r.moveLocked(ctx, l, moves); err != nil {
			return 0, LockState{}, false, err
		}
	}
}

// exec1 runs one synchronous operation on the handle's Client. Called with
// l.mu held.
func (l *Lock) exec1(ctx context.Context, op Op, expire uint32, flags uint8, wait uint32) (Status, LockState, bool, error) {
	s, err := l.begin(ctx, op, expire, callSync)
	if err != nil {
		return 0, LockState{}, false, err
	}
	if s.local {
		return s.status, s.result, s.fill, nil
	}
	cl, err := l.post(&s, flags, wait)
	return l.collect(ctx, &s, cl, err)
}

// begin maps op through the lock's cache entry (see beginOp); a fair
// ticket the cache gave up is reported to the server. A synchronous lock
// of an RW lock that the cache would re-enter is confirmed with the server
// first: the hold may be gone (the server removed the client while it was
// cut off, or an operator force-released it). An error is the transport's:
// the entry is as before.
func (l *Lock) begin(ctx context.Context, op Op, expire uint32, via callKind) (step, error) {
	c := l.cl()
	c.mu.Lock()
	s, drop := l.beginOp(op, expire, via)
	c.mu.Unlock()
	c.dropTicket(drop)
	if via != callSync || !s.local || s.status != ErrAlreadyLocked || !isLockOp(op) || l.e.typ != RW {
		return s, nil
	}
	st, err := c.queryHold(ctx, l.e.id)
	if err == nil && st == Success {
		return s, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	l.e.restore(&s)
	if err != nil {
		return s, err
	}
	if st == ErrFail || st == ErrLockNotGet {
		l.e.reset()
		st = ErrFail
	}
	s.status, s.result, s.fill = st, LockState{}, false
	return s, nil
}

// post sends the command of step s. flags and wait apply to a lock request
// (a blocking one is FlagBlock). If the request cannot be made, the error
// says why and nothing was sent.
func (l *Lock) post(s *step, flags uint8, wait uint32) (*call, error) {
	c := l.cl()
	m := l.command(s, flags, wait)
	ids := [1]int32{m.LockID}
	cl, err := c.m.newLockCall(m.Flags&wire.FlagBlock != 0, ids[:])
	if err != nil {
		return nil, err
	}
	c.m.sendCall(cl, func(dst []byte) []byte { return m.Append(dst, cl.id, c.id) })
	return cl, nil
}

// command is the request of step s (see post).
func (l *Lock) command(s *step, flags uint8, wait uint32) wire.LockOp {
	m := wire.LockOp{LockID: l.e.id, Cmd: uint8(s.cmd), Arg: s.arg}
	if s.cmd == CmdExclusiveTrylock || s.cmd == CmdSharedTrylock ||
		s.cmd == CmdExclusiveTicketTrylock || s.cmd == CmdSharedTicketTrylock {
		m.Flags, m.WaitMillis = flags, wait
		s.retiresTicket = flags&wire.FlagBlock != 0 && flags&wire.FlagKeepTicket == 0
	}
	return m
}

// end settles step s with its exchange's outcome: finish with the reply
// (status, the lock value val and the grant's token), or abort if err says
// the outcome is unknown (see awaitLock). It records the result for State.
func (l *Lock) end(s *step, status Status, val LockState, token uint64, err error) Status {
	c := l.cl()
	c.mu.Lock()
	defer c.mu.Unlock()
	return l.endLocked(s, status, val, token, err)
}

// endLocked is end with c.mu held (a batch ends all its entries under one
// hold).
func (l *Lock) endLocked(s *step, status Status, val LockState, token uint64, err error) Status {
	if err != nil {
		l.e.abort(s)
		return 0
	}
	st := l.e.finish(s, status, val, token, &l.cl().stats)
	if s.fill {
		l.last = s.result
	}
	return st
}

// collect waits for the reply to the posted step s (or takes post's error)
// and completes it.
func (l *Lock) collect(ctx context.Context, s *step, cl *call, err error) (Status, LockState, bool, error) {
	var res wire.LockResult
	var status Status
	if err == nil {
		status, res, err = l.cl().awaitLock(ctx, cl)
	}
	return l.complete(ctx, s, status, res, err)
}

// complete ends step s with the outcome of its exchange. A grant that came
// after ctx ended is handed back, and ctx's error returned. Called with l.mu
// held.
func (l *Lock) complete(ctx context.Context, s *step, status Status, res wire.LockResult, err error) (Status, LockState, bool, error) {
	c := l.cl()
	st := l.end(s, status, res.State, res.Token, err)
	if err != nil {
		c.mu.Lock()
		c.stats.Inc(StatNetworkFail)
		c.mu.Unlock()
		return 0, LockState{}, false, err
	}
	if ctx.Err() != nil && (st == Success || st == ErrAlreadyLocked) && isLockOp(s.op) {
		// The grant raced the caller's give-up: hand it back.
		return 0, LockState{}, false, l.undoGrant(ctx)
	}
	return st, s.result, s.fill, nil
}

// undoGrant releases a hold that was granted after the caller's ctx ended,
// waiting at most cancelGrace, and returns ctx's error. Called with l.mu
// held.
func (l *Lock) undoGrant(ctx context.Context) error {
	c := l.cl()
	c.mu.Lock()
	u := l.e.begin(OpUnlock, 0, c.id, callSync, &c.stats)
	c.mu.Unlock()
	if u.local {
		return ctx.Err()
	}
	uctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	defer cancel()
	var res wire.LockResult
	var status Status
	cl, err := l.post(&u, 0, 0)
	if err == nil {
		status, res, err = c.awaitLock(uctx, cl)
	}
	if err != nil {
		// The unlock's outcome is unknown too. Forget the hold: resolving
		// the lock on reconnection then drops it on the server if it is
		// still there, as the caller was told it does not hold the lock.
		c.mu.Lock()
		l.e.reset()
		c.mu.Unlock()
		return ctx.Err()
	}
	c.mu.Lock()
	l.e.finish(&u, status, res.State, res.Token, &c.stats)
	c.mu.Unlock()
	return ctx.Err()
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
		c.m.sendCall(cl, func(dst []byte) []byte { return cm.Append(dst, wire.TCancel, 0, c.id) })
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
	var s step
	drop := l.beginOpInto(&s, op, expire, via)
	return s, drop
}

// beginOpInto is beginOp writing the step to s (a batch begins its entries
// in place).
func (l *Lock) beginOpInto(s *step, op Op, expire uint32, via callKind) ticketDrop {
	c := l.cl()
	if l.released || l.pending {
		c.stats.Inc(StatLockNotGet)
		*s = step{op: op, via: via, local: true, status: ErrLockNotGet}
		return ticketDrop{}
	}
	prev, ticket := l.e.state, l.e.value
	l.e.beginInto(s, op, expire, c.id, via, &c.stats)
	if s.local {
		if s.fill {
			l.last = s.result
		}
		if gaveUpTicket(prev, op, s) {
			return ticketDrop{id: l.e.id, ticket: ticket, was: prev}
		}
	}
	return ticketDrop{}
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
