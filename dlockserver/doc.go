// Package dlockserver is the dlock primary server, embeddable in a Go
// program: New(cfg), then Serve listeners (or ListenAndServe, or ServeConn
// for a connection the caller made), and Shutdown. cmd/dlockd wraps it.
//
// All state lives in memory: lock objects (internal/lockcore), atomic64
// objects (internal/umo), registered clients and their queued blocking
// requests. A blocking request waits on the server and is answered by a
// push; the server never polls and reads time only through its clock
// (clock.go), so the lock state machines stay pure.
//
// # Concurrency
//
// Each connection has a reader goroutine, which decodes a request, calls
// the state and queues the reply, and a writer goroutine for replies pushed
// by other connections (conn.go). The state (state.go) is split into
// stripes by lock and object id: a request on an existing lock or object
// holds only its stripe's mutex, so unrelated locks do not serialise;
// transitions (registering, opening and releasing, recovery, admin
// requests, timer events, disconnects) take the server's mutex, which
// holds every stripe. The lock order is written at the top of state.go.
//
// # Files
//
//   - server.go: Server, listeners, connections' life, the deadline heap;
//   - state.go: the server's state as one type (serverState): its stripes
//     and mutexes (the lock order at its top), queued requests and their
//     indexes, and the outbox of what a transition sends to connections;
//   - state_locks.go, state_clients.go, state_objects.go: the transitions
//     (requests on locks; clients, recovery and closed connections; atomic64
//     objects), each given the time and returning what to send;
//   - conn.go: a connection's reading, writing and dispatch;
//   - handlers.go: the requests, decoded, passed to the state, and what it
//     returns queued;
//   - admin.go, observe.go: operators' requests, metrics and observations;
//   - ha.go, ha_objects.go: the hooks of a highly available cluster (package
//     ha) and its durable objects;
//   - shard.go, shard_move.go: the slot map of a sharded cluster, slots moving
//     between shards;
//   - clock.go, config.go, tls.go, logging.go.
package dlockserver
