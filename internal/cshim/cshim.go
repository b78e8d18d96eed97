// Package cshim is the door between the dlock client and its C ABI layer
// (capi): the operations with the exact semantics of DLock's C API, which
// the dlock package keeps out of its Go API so that a Go user reads the
// idiomatic methods only.
//
// Package dlock fills the hooks in when it is initialised (in its cabi.go).
// This package cannot import dlock (dlock imports it), so each hook is an
// any holding a function of the type written beside it; a user asserts the
// type once, when it is initialised itself — importing dlock runs dlock's
// initialisation first — and a mismatch panics then, not at a call.
package cshim

var (
	// LockDo runs one lock operation with the C API's semantics (see
	// dlock's Lock.Do in cabi.go):
	//
	//	func(l *dlock.Lock, ctx context.Context, op dlock.Op, expire uint32, block bool) (dlock.Status, dlock.LockState, bool, error)
	LockDo any

	// LockStart begins one lock operation the way lock_request_async
	// does:
	//
	//	func(l *dlock.Lock, op dlock.Op, expire uint32) (dlock.Status, dlock.LockState, bool, func(context.Context) (dlock.Status, dlock.LockState, bool, error))
	LockStart any

	// BatchOpenLocks opens locks of different options in one round trip,
	// reporting the server's answer per entry:
	//
	//	func(c *dlock.Client, ctx context.Context, names []string, opts []dlock.LockOptions, locks []*dlock.Lock, ids []int32) error
	BatchOpenLocks any

	// Atomic64ByID returns a handle for an object the client has not
	// opened, for Destroy and Release by id:
	//
	//	func(c *dlock.Client, id int32) *dlock.Atomic64
	Atomic64ByID any

	// SetTPMode sets the transport mode a client announces to the server
	// (C ABI compatibility: SEPERATE_CONN 0, UNI_CONN 1):
	//
	//	func(cfg *dlock.Config, mode uint8)
	SetTPMode any

	// RouterShards returns a Router's shards whose Client is connected:
	// names, Clients and members' addresses (the primary first):
	//
	//	func(r *dlock.Router) (names []string, cs []*dlock.Client, addrs [][]string)
	RouterShards any

	// RouterRefresh fetches a Router's slot map again, asking seeds first:
	//
	//	func(r *dlock.Router, ctx context.Context, seeds []string) error
	RouterRefresh any

	// RouterDialShards connects every shard of a Router's map:
	//
	//	func(r *dlock.Router, ctx context.Context) error
	RouterDialShards any

	// ClientNewPrimary reports whether a Client's last Reinit found a new
	// primary in recovery:
	//
	//	func(c *dlock.Client) bool
	ClientNewPrimary any
)
