// Package umo is the server's table of distributed atomic64 objects, the
// state behind the C calls umo_atomic64_create, _get, _release, _destroy,
// _faa, _cas and _get_snapshot (SEMANTICS.md §10).
//
// An object is a 64-bit unsigned value named by descriptor bytes (1..512).
// It has an owner (the client that created it; 0 once orphaned), the set of
// clients that have got it, each with a lease deadline, the latest of those
// deadlines (max_lease), and a destroyed flag. Creating does not take a
// reference; getting does, once per client. A destroyed object that is still
// referenced and whose max_lease has not passed stays alive for its getters;
// a create of the same descriptor after max_lease has passed recycles it
// ("refresh") with the same id.
//
// Where upstream DLock loses or leaks, this table does not: a refresh resets
// the value to the create's init value; removing a client orphans the
// objects it created but never got, so that any client can destroy them;
// and fetch-and-add, compare-and-swap and snapshot are server calls that
// check the object still exists, answering DLOCK_OBJECT_NOT_GET when it does
// not. Object ids are allocated like lock ids (SEMANTICS.md §3): the
// preferred id (the client's djb2 hash of the descriptor) when it is
// positive and free, otherwise the next free id after a cursor of the
// table's own.
//
// Nothing here does I/O, starts goroutines or reads a clock: now is an
// argument, in whole seconds on the server's monotonic clock, and a lease has
// passed when now > max_lease. A [Table] is not safe for concurrent use; the
// server guards it with a mutex. [Table.FetchAndAdd], [Table.CompareAndSwap]
// and [Table.Load] do not allocate.
package umo
