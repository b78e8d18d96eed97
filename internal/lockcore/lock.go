package lockcore

import (
	"math"
	"slices"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/clientmap"
)

// Lock is one lock object: the state machine of its type, its holders, its
// queue of blocking waiters. The zero value is not usable; locks are made by
// a Table (or NewLock in tests).
type Lock struct {
	typ    dlock.LockType
	tokens *Tokens

	// State shared by the types. ATOMIC: owner/timeout. RW: owner (exclusive
	// holder), timeout (first acquisition), rcount. FAIR: owner is the
	// server-only exclusive holder, timeout the expiry/hand-over deadline.
	owner   int32
	timeout uint32
	rcount  uint32 // RW only
	f       fairCounters

	// shared lists the clients holding the lock shared (RW, FAIR), one entry
	// per hold. Upstream does not track them; we do so that a removed
	// client's holds can be released and so that only a holder can release a
	// shared hold.
	shared []int32

	q       waitq
	reports []fairReport // FAIR: recovery reports, until the table ends recovery
	ghosts  []ghost      // FAIR: abandoned tickets
	grabs   uint64       // FAIR: timeout grabs so far

	// Table bookkeeping.
	id   int32
	desc string
	refs clientmap.Map // clients that have it open, with their lease_time
}

// NewLock returns a free lock of type t whose grants draw fencing tokens from
// tokens (shared by every lock of a table).
func NewLock(t dlock.LockType, tokens *Tokens) *Lock {
	if tokens == nil {
		tokens = new(Tokens)
	}
	return &Lock{typ: t, tokens: tokens}
}

// Type returns the lock's type.
func (l *Lock) Type() dlock.LockType { return l.typ }

// ID returns the lock's id in its table (0 for a lock made by NewLock).
func (l *Lock) ID() int32 { return l.id }

// Descriptor returns the descriptor bytes that name the lock in its table.
func (l *Lock) Descriptor() string { return l.desc }

// Referenced reports whether client holds a reference to the lock.
func (l *Lock) Referenced(client int32) bool {
	return l.refs.Has(client)
}

// Refs returns the number of clients holding a reference to the lock.
func (l *Lock) Refs() int { return l.refs.Len() }

// State returns the lock's current 16-byte value as the server would report it.
func (l *Lock) State() dlock.LockState {
	switch l.typ {
	case dlock.Atomic:
		return dlock.AtomicState{Owner: l.owner, Timeout: l.timeout}.State()
	case dlock.RW:
		return dlock.RWState{Timeout: l.timeout, Owner: l.owner, RCount: l.rcount}.State()
	default:
		return l.fairState().State()
	}
}

// Holders returns the client holding the lock exclusively (0 if none; for
// ATOMIC the owner even when its lease ran out but nobody took the lock) and
// appends the clients holding it shared (one entry per hold) to dst.
func (l *Lock) Holders(dst []int32) (exclusive int32, shared []int32) {
	return l.owner, append(dst, l.shared...)
}

// HeldBy reports whether client holds the lock, exclusively or shared (for
// ATOMIC and FAIR whether or not its lease ran out).
func (l *Lock) HeldBy(client int32) bool {
	return l.owner == client || slices.Contains(l.shared, client)
}

// Exec executes one non-blocking command from client (the authenticated id of
// the channel it arrived on) with the payload arg the client sent, exactly as
// SEMANTICS.md §5 specifies per lock type. Expiry
// and hand-over due at now are processed first. Counters are incremented in
// st (may be nil). Queued waiters answered by this command are appended to
// wake.
//
// Extend commands carry the relative expiry in the payload's time_out, as the
// client sends it; Exec converts it to an absolute time (now+E saturating at
// 0xFFFFFFFF, 0 stays 0). The reply of a FAIR EXCLUSIVE_TRYLOCK or
// SHARED_TRYLOCK answered EAGAIN is the client's ticket (Mx, Ms
// the ticket's numbers, time_out the second it was issued).
//
// Beyond upstream, the lock tracks its holders and refuses releases and
// extends from clients that do not hold it (see the per-type files).
func (l *Lock) Exec(now uint32, client int32, cmd dlock.Cmd, arg dlock.LockState, st *dlock.Stats, wake []Grant) (Reply, []Grant) {
	wake = l.evaluate(now, wake)
	var (
		r       Reply
		changed bool
	)
	switch l.typ {
	case dlock.Atomic:
		r, changed = l.execAtomic(now, client, cmd, arg, st)
	case dlock.RW:
		r, changed = l.execRW(now, client, cmd, arg, st)
	default:
		r, changed = l.execFair(now, client, cmd, arg, st)
	}
	if changed {
		wake = l.evaluate(now, wake)
	}
	return r, wake
}

// Acquire is a blocking lock request. It is granted at once when it can be
// (Reply with Success, queued false); otherwise w is queued and the answer
// comes later as a Grant (queued true). A request that fails outright (e.g.
// the FAIR queue is full, or w's FAIR ticket was passed) is answered at once
// with that status.
//
// ATOMIC and RW requests queue behind earlier blocking requests (FIFO; a
// non-blocking trylock is not held back by the queue, as upstream). A FAIR
// request takes a ticket like EXCLUSIVE_TRYLOCK/SHARED_TRYLOCK, or waits on
// w.Ticket when w.HasTicket; queued FAIR requests are served in ticket order.
func (l *Lock) Acquire(now uint32, w Waiter, st *dlock.Stats, wake []Grant) (r Reply, queued bool, _ []Grant) {
	wake = l.evaluate(now, wake)
	switch l.typ {
	case dlock.Atomic:
		if w.Mode != dlock.Exclusive {
			st.Inc(dlock.StatEInvalLockOp)
			return Reply{Status: dlock.ErrInval, State: l.State()}, false, wake
		}
		if l.q.len() == 0 && l.atomicFree(now) {
			return l.atomicGrant(now, w.Client, w.Expire), false, wake
		}
		l.q.push(waiter{Waiter: w})
		return Reply{}, true, wake
	case dlock.RW:
		if l.q.len() == 0 && l.rwCanGrant(w.Mode) {
			return l.rwGrant(now, w.Client, w.Mode), false, wake
		}
		l.q.push(waiter{Waiter: w})
		return Reply{}, true, wake
	}
	r, queued = l.fairAcquire(now, w, st)
	if !queued {
		if r.Status == dlock.Success {
			// A shared grab can let other shared waiters in.
			wake = l.evaluate(now, wake)
		}
		return r, false, wake
	}
	start := len(wake)
	wake = l.evaluate(now, wake)
	for i := start; i < len(wake); i++ {
		if wake[i].Tag == w.Tag && wake[i].Client == w.Client {
			r = wake[i].Reply
			wake = slices.Delete(wake, i, i+1)
			return r, false, wake
		}
	}
	return Reply{}, true, wake
}

// Cancel removes the queued waiter with tag (its deadline passed or its
// client went away) and reports whether it was queued. What is due at now is
// processed first, so a waiter that can be granted at now is granted (in
// wake) rather than cancelled.
//
// The reply r answers the cancelled request: ErrTimeout for ATOMIC and RW.
// For FAIR with keepTicket the ticket stays issued and r is ErrAgain with the
// ticket as state, exactly like the EAGAIN reply to a first
// EXCLUSIVE_TRYLOCK/SHARED_TRYLOCK, so the client can keep polling with it
// (the C lock() 5-second timeout). Without keepTicket the ticket is
// abandoned (r is ErrTimeout): when its turn comes it counts as granted and
// released at once, so nobody waits the hand-over grace for it.
func (l *Lock) Cancel(now uint32, tag uint64, keepTicket bool, wake []Grant) (r Reply, found bool, _ []Grant) {
	wake = l.evaluate(now, wake)
	i := l.q.find(tag)
	if i < 0 {
		return Reply{}, false, wake
	}
	w := l.q.remove(i)
	r = Reply{Status: dlock.ErrTimeout, State: l.State()}
	if l.typ == dlock.Fair {
		if keepTicket {
			r = Reply{Status: dlock.ErrAgain, State: l.ticketState(&w)}
		} else {
			l.ghosts = append(l.ghosts, ghost{tx: w.tx, ts: w.ts, shared: w.Mode == dlock.Shared})
		}
	}
	wake = l.evaluate(now, wake)
	return r, true, wake
}

// Drop releases every hold client has on the lock (as the matching unlock
// would; an ATOMIC hold even after its lease ran out) and cancels its queued
// requests (FAIR tickets abandoned), then answers whoever can now go. The
// table calls it when a client releases the lock or is removed.
func (l *Lock) Drop(now uint32, client int32, wake []Grant) []Grant {
	wake = l.evaluate(now, wake)
	switch l.typ {
	case dlock.Atomic:
		if l.owner == client {
			l.owner, l.timeout = 0, 0
		}
	case dlock.RW:
		if l.owner == client {
			l.owner, l.timeout, l.rcount = 0, 0, 0
		}
		for l.removeShared(client) {
			l.rwSharedRelease()
		}
	default:
		if l.owner == client {
			l.fairExclusiveRelease(now)
		}
		for l.removeShared(client) {
			l.fairSharedRelease(now)
		}
	}
	for i := 0; i < l.q.len(); {
		w := l.q.at(i)
		if w.Client != client {
			i++
			continue
		}
		if l.typ == dlock.Fair {
			l.ghosts = append(l.ghosts, ghost{tx: w.tx, ts: w.ts, shared: w.Mode == dlock.Shared})
		}
		l.q.remove(i)
	}
	return l.evaluate(now, wake)
}

// Advance processes what is due at now (lease expiry, end of a hand-over
// window) and appends the waiters it answers to wake.
func (l *Lock) Advance(now uint32, wake []Grant) []Grant {
	return l.evaluate(now, wake)
}

// NextEvent returns the second at which the lock may change by itself so that
// a queued waiter could be answered, and false when no such event is pending
// (no waiters, or nothing that expires: RW never expires).
func (l *Lock) NextEvent() (at uint32, ok bool) {
	if l.q.len() == 0 || l.timeout == math.MaxUint32 {
		return 0, false
	}
	if l.typ == dlock.RW {
		return 0, false
	}
	return l.timeout + 1, true
}

// Grabs returns the number of FAIR timeout grabs (a ticket taking the lock
// after the holder's lease or the hand-over window ran out) so far.
func (l *Lock) Grabs() uint64 { return l.grabs }

// Waiters returns the number of queued blocking requests.
func (l *Lock) Waiters() int { return l.q.len() }

// evaluate answers the queued waiters that can go at now, in order.
func (l *Lock) evaluate(now uint32, wake []Grant) []Grant {
	if l.q.len() == 0 && len(l.ghosts) == 0 {
		return wake
	}
	switch l.typ {
	case dlock.Atomic:
		for l.q.len() > 0 && l.atomicFree(now) {
			w := l.q.remove(0)
			r := l.atomicGrant(now, w.Client, w.Expire)
			wake = append(wake, grantOf(&w, r.Status, r.State, r.Token))
		}
		return wake
	case dlock.RW:
		for l.q.len() > 0 && l.rwCanGrant(l.q.at(0).Mode) {
			w := l.q.remove(0)
			r := l.rwGrant(now, w.Client, w.Mode)
			wake = append(wake, grantOf(&w, r.Status, r.State, r.Token))
		}
		return wake
	}
	return l.fairEvaluate(now, wake)
}

// addShared records a shared hold by client.
func (l *Lock) addShared(client int32) { l.shared = append(l.shared, client) }

// removeShared forgets one shared hold by client and reports whether there
// was one.
func (l *Lock) removeShared(client int32) bool {
	for i, c := range l.shared {
		if c == client {
			last := len(l.shared) - 1
			l.shared[i] = l.shared[last]
			l.shared = l.shared[:last]
			return true
		}
	}
	return false
}

// isShared reports whether client holds the lock shared.
func (l *Lock) isShared(client int32) bool {
	return slices.Contains(l.shared, client)
}

// expireAt returns now+e saturated at 0xFFFFFFFF (upstream wraps).
func expireAt(now, e uint32) uint32 {
	s := uint64(now) + uint64(e)
	if s > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(s)
}

// extendAt converts an extend command's relative time_out to the absolute
// time the state machines compare: 0 stays 0 (validate only).
func extendAt(now, e uint32) uint32 {
	if e == 0 {
		return 0
	}
	return expireAt(now, e)
}

// invalid answers a command that the lock type does not support.
func invalid(arg dlock.LockState, st *dlock.Stats) (Reply, bool) {
	st.Inc(dlock.StatEInvalLockOp)
	return Reply{Status: dlock.ErrInval, State: arg}, false
}
