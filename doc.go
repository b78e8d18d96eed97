// Package dlock is the client of the dlock distributed lock service, and the
// vocabulary every dlock user imports: status codes, lock types and modes,
// lock state values and debug counters.
//
// dlock implements the model of openEuler UMDK's DLock over TCP: a primary
// server holds atomic (leased exclusive) locks, reader/writer locks, fair
// FIFO ticket locks and distributed 64-bit atomic objects; clients take and
// release them in one round trip per operation, up to 31 in a batch.
//
// # Connecting
//
// [Dial] registers a client with a server (client_init) over one
// multiplexed connection; [Client.Shutdown] deregisters it, releasing every
// lock it still holds; [Client.Close] only drops the connection, and the
// server keeps the client's locks for its session timeout so that a client
// that comes back with [Client.Reinit] keeps them.
//
// # Locks
//
// [Client.OpenLock] opens a lock by name; the first client to open a name
// fixes its type. A [Lock] has the methods of sync.RWMutex with a context:
// [Lock.TryLock], [Lock.TryRLock], [Lock.Lock], [Lock.RLock], [Lock.Unlock],
// plus [Lock.Extend] for leases. Blocking calls wait on the server, queued in
// FIFO (fair locks: ticket) order, and are answered by a push when granted;
// when their context ends the request is withdrawn and a grant that raced
// the withdrawal is released before the call returns. A non-blocking call is
// answered within a round trip; if its context ends first (the server or the
// link stalls), it returns at the context's deadline, or within about 100 ms
// of a cancel: it does not arm a timer per request for the cancel.
//
// [Client.OpenAndLock] and [Client.OpenAndTryLock] open a lock and take it
// in one round trip, for a lock used once or the first use of many.
//
// # Many requests in flight
//
// Goroutines sharing a Client share its connection: their requests go out
// and come back together. To keep many requests in flight without a
// goroutine per request, use a [Pipeline] ([Client.NewPipeline]): one
// goroutine starts TryLock, Lock (with a wait), Unlock and Extend requests
// on caller-owned [Request] values, and collects them with
// [Pipeline.Next] in the order their replies arrive, sending a batch of
// requests in one write and reading the replies one read brought. Results
// and lock state are those of the synchronous calls; a connection lost with
// requests in flight completes each of them with [ErrConnLost].
//
// Ownership belongs to the [Client], not to a goroutine, as in DLock: any
// goroutine of the client may unlock what another locked, and locking a lock
// the client already holds is a reentrant hold that needs one more Unlock.
//
// Every grant carries a fencing token ([Lock.Token]) that strictly increases
// per lock, also across a failover: a resource guarded by the lock can
// refuse a request carrying a lower token than one it has seen, which
// protects it from a holder whose lease ran out unnoticed.
//
// # Errors
//
// Outcomes the server reports are [Status] values, which are errors:
// errors.Is(err, dlock.ErrNotReady) works on any error that wraps one.
// Expected outcomes are results, not errors: a busy lock is (false, nil)
// from TryLock, a failed compare-and-swap (false, nil). Transport failures
// are wrapped errors naming the operation.
//
// # Failover
//
// When the primary dies, a new one started in recovery mode rebuilds its
// lock state from the clients: [Client.Reinit], [Client.UpdateAllLocks],
// [Client.ReinitDone], then [Client.Revalidate] — or set
// [Config.AutoRecover] and let the client do all of it. Objects are not
// recovered.
//
// In a highly available cluster (dlockd -etcd, package dlockserver/ha) a
// standby takes over by itself. List the servers in [Config.Addrs] as seeds:
// the client follows a standby's redirect to the primary, refuses a primary
// of an older epoch ([Client.Epoch], [ErrStaleEpoch]), and after a failover
// recovers as above. A client that reaches no serving primary within
// [Config.SessionTimeout] reports its holds lost ([ErrSessionExpired]).
//
// # Shards
//
// A sharded cluster (dlockd -shard) splits the names between several
// primaries by slot ([SlotOf]; "{tag}" hash tags keep related names
// together). Dial it with [DialRouter], which learns the slot map from any
// member, keeps one [Client] per shard and routes each lock, atomic64 object
// and batch entry by name; see [Router].
//
// # The C API's vocabulary
//
// dlock is also the engine of a drop-in C library for DLock's users
// (directory capi). DLock's C API is written in operations ([Op]: lock,
// unlock, extend, in either mode) that the client maps, with the state it
// caches per lock, onto commands ([Cmd]) the server executes, and it
// returns raw status codes where the Go API returns (bool, error). Op and
// Cmd are exported as that vocabulary (the server's statistics count by
// Cmd); the operations with the C API's exact results — raw statuses,
// result buffers, the C API's asynchronous requests, batch opens with per-entry ids,
// objects by id, the transport mode — are not part of the Go API: capi
// reaches them through an internal package. A Go program needs none of
// them.
package dlock
