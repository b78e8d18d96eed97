// Package wire is dlock's binary protocol: the frame header, one struct per
// message, append-style encoders and decoders that fill caller-owned structs.
// It uses only the standard library and allocates nothing on the lock and
// object hot paths. PROTOCOL.md at the repository root describes the format
// for implementers of other clients.
//
// Every frame is a 16-byte [Header] followed by a body of at most [MaxBody]
// bytes. All integers are little endian. A client sends requests; the server
// answers each request with exactly one reply of the request's type with the
// high bit set ([Type.Reply]) and the same request id; replies may arrive in
// any order (a blocking lock request is answered when it is granted), so a
// client matches them by id. [TCancel] is the only request without a reply of
// its own: it makes the server answer the blocking request it names at once
// (with DLOCK_ETIMEOUT) unless that request was already answered.
//
// A reply's status is in the header. A failed control request carries an
// empty body; lock operation replies always carry the lock's state.
package wire
