// Package lockcore holds the pure state machines of dlock's three lock types
// (ATOMIC, RW, FAIR), their server-side waiter queues, and the lock table
// (identity by descriptor, id allocation, per-client references, limits).
//
// Nothing here does I/O, starts goroutines or reads a clock. Time is an
// argument: now is a count of whole seconds on the server's clock, the unit of
// every time_out field in [dlock.LockState]. The server derives it from a
// monotonic clock anchored at a wall-clock second, so that leases run on the
// monotonic clock while replies carry the wall-clock seconds the C ABI shows.
//
// None of the types is safe for concurrent use: the server serialises access
// (one mutex per table, or per shard of locks).
//
// # Blocking requests
//
// A blocking lock request that cannot be granted at once is queued inside the
// lock as a [Waiter]. Whenever the lock changes — an unlock, a lease that ran
// out, a fair hand-over window that closed, a waiter cancelled, a client
// removed — the method that made the change appends a [Grant] for every
// queued request that is now answered, in FIFO (for FAIR: ticket) order. The
// server sends those replies; no request is ever polled. [Lock.NextEvent]
// tells the server when the lock may change by itself (lease expiry, end of a
// hand-over window) so that it can keep a deadline heap and call
// [Lock.Advance] at that second.
//
// A FAIR blocking request holds a ticket like any other; the queue is kept in
// ticket order and a queued ticket is granted exactly when its ticket trylock
// would succeed (including the timeout grab). [Lock.Cancel] either hands the
// ticket back to the client (the C lock() timeout: the client keeps polling
// with it) or abandons it; an abandoned ticket counts as granted and released
// as soon as its turn comes, so nobody waits the hand-over grace for it.
//
// # Holders
//
// Upstream keeps only counters for shared holds. Here every lock also
// tracks which clients hold it (exclusive owner, one entry per shared hold),
// so that [Lock.Drop] can release the holds of a client that goes away and so
// that only a holder can release or extend a hold. A FAIR timeout grab makes
// the previous holders stale and forgets them. Each deviation from upstream
// is documented next to the code (rw.go, fair.go); none is visible to a
// client that follows the protocol.
//
// # Fencing tokens
//
// Every successful exclusive or shared grant carries a 64-bit token taken from
// the table's counter, so tokens strictly increase per lock (and per table).
// [Table.RaiseTokens] lets a recovering server continue above every token an
// earlier primary could have issued.
package lockcore
