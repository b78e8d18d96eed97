package lockcore

import "github.com/dlock-io/dlock"

// Reply is the outcome of one lock command: the op_ret status, the lock's
// resulting state (the reply's ls) and, for a successful grant, the fencing
// token (0 otherwise).
type Reply struct {
	Status dlock.Status
	State  dlock.LockState
	Token  uint64
}

// Waiter is a blocking lock request queued on a lock.
type Waiter struct {
	// Tag identifies the request to the caller (e.g. connection and request
	// id); the core only compares it.
	Tag uint64
	// Client is the id of the requesting client (the authenticated channel's).
	Client int32
	// Mode is exclusive or shared (ATOMIC: exclusive only).
	Mode dlock.Mode
	// Expire is the relative lease in seconds (ATOMIC, FAIR; ignored by RW).
	Expire uint32
	// HasTicket says that the client already holds a FAIR ticket (the reply
	// to an earlier EXCLUSIVE_TRYLOCK/SHARED_TRYLOCK that returned EAGAIN) and
	// wants to wait on it instead of taking a new one. Ignored by ATOMIC and RW.
	HasTicket bool
	// Ticket is that ticket as the client cached it: Mx/Ms are the ticket's
	// exclusive/shared numbers (tx, ts), Timeout the ticket obtain time.
	Ticket dlock.FairState
}

// Grant answers a queued Waiter: usually Status Success with the state and
// fencing token, but also a failure (e.g. ErrFail when a FAIR ticket was
// passed, ErrLockNotGet when the lock was deleted).
type Grant struct {
	Tag    uint64
	Client int32
	Reply  Reply
}
