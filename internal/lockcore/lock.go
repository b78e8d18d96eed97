package lockcore

import "github.com/dlock-io/dlock"

// Lock is one lock object: the state machine of its type, its holders, its
// queue of blocking waiters. The zero value is not usable; locks are made by
// a Table (or NewLock in tests).
type Lock struct {
	typ dlock.LockType
	// TODO(lockcore): state per type, holders, waiters, token source.
}

// NewLock returns a free lock of type t whose grants draw fencing tokens from
// tokens (shared by every lock of a table).
func NewLock(t dlock.LockType, tokens *Tokens) *Lock {
	panic("lockcore: not implemented")
}

// Type returns the lock's type.
func (l *Lock) Type() dlock.LockType { return l.typ }

// State returns the lock's current 16-byte value as the server would report it.
func (l *Lock) State() dlock.LockState { panic("lockcore: not implemented") }

// Exec executes one non-blocking command from client (the authenticated id of
// the channel it arrived on) with the payload arg the client sent, exactly as
// BEHAVIOR.md §7 specifies per lock type (with §18's recommendations). Expiry
// and hand-over due at now are processed first. Counters are incremented in
// st (may be nil). Queued waiters answered by this command are appended to
// wake.
func (l *Lock) Exec(now uint32, client int32, cmd dlock.Cmd, arg dlock.LockState, st *dlock.Stats, wake []Grant) (Reply, []Grant) {
	panic("lockcore: not implemented")
}

// Acquire is a blocking lock request. It is granted at once when it can be
// (Reply with Success, queued false); otherwise w is queued and the answer
// comes later as a Grant (queued true). A request that fails outright (e.g.
// the FAIR queue is full) is answered at once with that status.
func (l *Lock) Acquire(now uint32, w Waiter, st *dlock.Stats, wake []Grant) (r Reply, queued bool, _ []Grant) {
	panic("lockcore: not implemented")
}

// Cancel removes the queued waiter with tag (its deadline passed or its client
// went away) and reports whether it was queued. A FAIR waiter's ticket is
// abandoned so that nobody waits for it.
func (l *Lock) Cancel(now uint32, tag uint64, wake []Grant) (bool, []Grant) {
	panic("lockcore: not implemented")
}

// Advance processes what is due at now (lease expiry, end of a hand-over
// window) and appends the waiters it answers to wake.
func (l *Lock) Advance(now uint32, wake []Grant) []Grant {
	panic("lockcore: not implemented")
}

// NextEvent returns the second at which the lock may change by itself so that
// a queued waiter could be answered, and false when no such event is pending
// (no waiters, or nothing that expires).
func (l *Lock) NextEvent() (at uint32, ok bool) {
	panic("lockcore: not implemented")
}

// Waiters returns the number of queued blocking requests.
func (l *Lock) Waiters() int { panic("lockcore: not implemented") }
