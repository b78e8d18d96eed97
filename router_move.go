package dlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// Slot moves, the client side: handing a lock handle over to the shard its
// slot moved to.
//
// When a slot moves, its source shard stops granting there and answers
// "moved" to every request on its locks but unlocks; the target shard
// accepts hand-overs for the slot but grants nothing in it until the
// source holds nothing there any more. A Router moves each handle it made
// (through any of its shard Clients) whose slot moved:
//
//   - on the first operation that the source answers "moved" (an extend,
//     a lock request), before running that operation again on the target;
//   - for a hold the holder does not touch (an idle holder), on its own: a
//     Router that has holds asks their shards for the slot map every
//     movePoll and hands over the holds whose slot has moved.
//
// A hand-over uploads the handle's state to the target shard's Client
// (TUpdateLocks, as in recovery, with the hold now in that Client's name),
// checks that the target has the hold, then unlocks it on the source and
// rebinds the handle: its Client and its id change, its hold, token and
// lease stay. The source, once it holds nothing in the slot, lets the
// target serve it. If the target serves the slot already (the move ended
// because the hold ended on the source: its lease ran out, or the
// session), the hold is not carried over: the handle's hold is reported
// lost as any lost hold is. A Fair ticket is not carried over: the waiter
// queues again on the target.

// movePoll is how often a Router that holds locks checks for moves.
const movePoll = 500 * time.Millisecond

// moveLocked hands l over to the Client of the shard that owns its name
// now, after its Client's server answered "moved" (the try-th time). It
// fetches the map first; when the map does not show the move yet it waits
// a little and returns nil, for the caller to try again. Called with l.mu
// held.
func (r *Router) moveLocked(ctx context.Context, l *Lock, try int) error {
	if err := r.refresh(ctx); err != nil {
		return fmt.Errorf("dlock: %s moved; fetching the shard map: %w", quote(l.name), err)
	}
	src := l.cl()
	dst, err := r.Client(ctx, l.name)
	if err != nil {
		return err
	}
	if dst == src {
		return sleepCtx(ctx, time.Duration(try)*50*time.Millisecond)
	}
	return r.handOver(ctx, l, src, dst)
}

// ownedBy returns the value the entry reports (as in recovery), in the
// name of client id.
func ownedBy(e *lockEntry, id int32) LockState {
	v := e.report()
	switch e.typ {
	case Atomic:
		a := v.Atomic()
		a.Owner = id
		return a.State()
	case RW:
		rw := v.RW()
		if rw.Owner != 0 {
			rw.Owner = id
		}
		return rw.State()
	}
	return v
}

// handOver moves l from src to dst (see the top of this file). Called
// with l.mu held.
func (r *Router) handOver(ctx context.Context, l *Lock, src, dst *Client) error {
	src.mu.Lock()
	if l.released {
		src.mu.Unlock()
		return nil
	}
	e := l.e
	e.desc = append([]byte(nil), l.e.desc...)
	kind := holdKind(&l.e)
	src.mu.Unlock()
	held := kind == wire.HoldExclusive || kind == wire.HoldShared
	dst.mu.Lock()
	dstAt := dst.reinitAt
	dst.mu.Unlock()
	var m wire.UpdateLocks
	m.N = 1
	m.Items[0] = wire.UpdateLock{ID: djb2(e.desc), Lease: e.lease, Type: uint8(e.typ), Desc: e.desc}
	var val LockState
	if held {
		val = ownedBy(&e, dst.id)
		m.Items[0].Hold, m.Items[0].State, m.Items[0].Token = kind, val, e.token
	}
	cl, err := dst.m.roundTrip(ctx, func(b []byte, id uint32) []byte { return m.Append(b, id, dst.id) })
	if err != nil {
		return l.wrapName("hand over", err)
	}
	st := passThrough(cl.status)
	var rep wire.IDs
	bad := st == Success && (rep.Decode(cl.body) != nil || rep.N != 1)
	dst.m.putCall(cl)
	lost := false
	var id int32
	switch {
	case bad:
		return l.wrapName("hand over", fmt.Errorf("malformed reply: %w", ErrBadResponse))
	case st == Success && rep.IDs[0] > 0:
		id = rep.IDs[0]
	case st == Success:
		return l.wrapName("hand over", fmt.Errorf("the new shard refused the lock: %w", ErrServerNoResource))
	case st == ErrFail:
		// The move is over: the hold ended on the source meanwhile, and the
		// target serves the slot. Open the lock there without it.
		lost = held
		if id, err = dst.openID(ctx, &e); err != nil {
			return l.wrapName("hand over", err)
		}
	default: // moved again, not ready, ...
		return l.wrapName("hand over", st)
	}
	if held && !lost {
		qs, err := dst.queryHold(ctx, id)
		if err != nil {
			return l.wrapName("hand over", err) // the next try uploads again
		}
		lost = qs != Success
	}
	r.letGo(ctx, src, &e, kind)
	src.mu.Lock()
	if src.locks[e.id] == l {
		delete(src.locks, e.id)
	}
	l.e.id = id
	switch {
	case lost || !held && kind != wire.HoldNone:
		l.e.reset() // a lost hold, or a Fair ticket
	case held:
		l.e.value = val
	}
	l.pending, l.confirmed = false, false
	l.cp.Store(dst)
	src.mu.Unlock()
	dst.mu.Lock()
	if o := dst.locks[id]; o != nil && o != l {
		// The Client opened the lock again on its new shard before this
		// handle moved (it held nothing then): that handle is the one.
		l.released = true
		dst.mu.Unlock()
		return l.wrapName("hand over", fmt.Errorf("the lock was opened again on its new shard; use that handle: %w", ErrLockNotGet))
	}
	dst.locks[id] = l
	again := held && !lost && !dst.reinitAt.Equal(dstAt)
	dst.mu.Unlock()
	if again {
		// dst re-registered during the hand-over: a new primary's recovery
		// did not know this handle yet. Ask whether the hold survived.
		if qs, err := dst.queryHold(ctx, id); err == nil && (qs == ErrFail || qs == ErrLockNotGet) {
			dst.mu.Lock()
			l.e.reset()
			dst.mu.Unlock()
			lost = true
		}
	}
	if lost {
		r.cfg.Logger.Warn("dlock: a hold ended on its old shard before it could be handed over", "lock", l.name)
	}
	return nil
}

// openID opens the lock of entry e on c and returns its id.
func (c *Client) openID(ctx context.Context, e *lockEntry) (int32, error) {
	m := wire.GetLock{Preferred: djb2(e.desc), Lease: e.lease, Type: uint8(e.typ), Desc: e.desc}
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, id, c.id) })
	if err != nil {
		return 0, err
	}
	defer c.m.putCall(cl)
	if st := passThrough(cl.status); st != Success {
		return 0, st
	}
	var rep wire.GetLockReply
	if rep.Decode(cl.body) != nil || rep.ID <= 0 {
		return 0, fmt.Errorf("malformed reply: %w", ErrBadResponse)
	}
	return rep.ID, nil
}

// orphan is an unlock on a source shard whose outcome a hand-over could not
// learn (the connection failed): it is sent again until answered, unless
// the Client re-registered with a new primary meanwhile (that one never
// learned the hold: the Client no longer lists the lock; and ids may
// differ there).
type orphan struct {
	c  *Client
	op wire.LockOp
	at time.Time // the Client's last re-registration when the unlock failed
}

// letGo unlocks the hold (or gives up the ticket) of entry e on the source
// src, and drops the reference, after a hand-over.
func (r *Router) letGo(ctx context.Context, src *Client, e *lockEntry, kind uint8) {
	switch kind {
	case wire.HoldExclusive, wire.HoldShared:
		cmd := CmdExclusiveUnlock
		if kind == wire.HoldShared {
			cmd = CmdSharedUnlock
		}
		op := wire.LockOp{LockID: e.id, Cmd: uint8(cmd), Arg: e.payload(cmd, 0, src.id)}
		if !r.unlockOn(ctx, src, op) {
			src.mu.Lock()
			at := src.reinitAt
			src.mu.Unlock()
			r.mu.Lock()
			r.orphans = append(r.orphans, orphan{c: src, op: op, at: at})
			r.mu.Unlock()
			return
		}
	case wire.TicketExclusive, wire.TicketShared:
		was := stateExclusiveTicketed
		if kind == wire.TicketShared {
			was = stateSharedTicketed
		}
		src.dropTicket(ticketDrop{id: e.id, ticket: e.value, was: was})
	}
	m := wire.ID{ID: e.id}
	if cl, err := src.m.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, wire.TReleaseLock, id, src.id) }); err == nil {
		src.m.putCall(cl)
	}
}

// unlockOn sends op, an unlock, on c and reports whether it was answered
// (whatever the answer: the hold is gone from the source either way).
func (r *Router) unlockOn(ctx context.Context, c *Client, op wire.LockOp) bool {
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte { return op.Append(dst, id, c.id) })
	if err != nil {
		return errors.Is(err, ErrClosed) // a closed Client's session ends its holds
	}
	c.m.putCall(cl)
	return true
}

// watchMoves hands over idle holds whose slot moved, every movePoll, until
// the Router is closed.
func (r *Router) watchMoves(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTicker(movePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.followMoves(ctx)
	}
}

// followMoves retries the unanswered source unlocks, then asks the shards
// where the Router holds locks for the slot map and hands over the holds
// whose slot moved. A handle busy with an operation is skipped: that
// operation learns of the move itself.
func (r *Router) followMoves(ctx context.Context) {
	r.mu.Lock()
	orphans := r.orphans
	r.orphans = nil
	r.mu.Unlock()
	for _, o := range orphans {
		o.c.mu.Lock()
		gone := o.c.newPrimary && !o.c.reinitAt.Equal(o.at)
		o.c.mu.Unlock()
		if !gone && !r.unlockOn(ctx, o.c, o.op) {
			r.mu.Lock()
			r.orphans = append(r.orphans, o)
			r.mu.Unlock()
		}
	}
	_, cs, _ := r.cShards()
	var held []*Lock
	ask := map[*Client]bool{}
	for _, c := range cs {
		for _, l := range c.lockList() {
			c.mu.Lock()
			h := holdKind(&l.e) != wire.HoldNone
			c.mu.Unlock()
			if h {
				held = append(held, l)
				ask[c] = true
			}
		}
	}
	if len(held) == 0 {
		return
	}
	for c := range ask {
		m, err := c.shardMap(ctx)
		if err != nil {
			continue
		}
		r.mu.Lock()
		if r.m != nil && m.Version >= r.m.Version {
			r.m = m // (members change without a new version)
		}
		r.mu.Unlock()
	}
	r.updateAddrs()
	for _, l := range held {
		dst, err := r.Client(ctx, l.name)
		if err != nil || dst == l.cl() || !l.mu.TryLock() {
			continue
		}
		if src := l.cl(); src != dst {
			if err := r.handOver(ctx, l, src, dst); err != nil {
				r.cfg.Logger.Info("dlock: handing a hold over to its new shard; will retry", "lock", l.name, "err", err)
			}
		}
		l.mu.Unlock()
	}
}

// shardMap asks c's server for the slot map over c's connection.
func (c *Client) shardMap(ctx context.Context) (*ShardMap, error) {
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte {
		return wire.AppendFrame(dst, wire.TShardMap, id, c.id, nil)
	})
	if err != nil {
		return nil, err
	}
	defer c.m.putCall(cl)
	if st := passThrough(cl.status); st != Success {
		return nil, st
	}
	return decodeShardMap(cl.body)
}
