package wire

// Admin request types. Their bodies, in both directions, are JSON objects
// (PROTOCOL.md, "Administration"): they are rare, made by operators' tools,
// and their replies vary in size.
const (
	TAdminLocks   Type = 0x50 // list locks by name prefix, with holders and waiters
	TAdminTop     Type = 0x51 // the most contended locks of the recent window
	TAdminRelease Type = 0x52 // force-release a lock from its holders
)

// MaxAdminReply bounds the JSON body of an admin reply, below MaxBody.
const MaxAdminReply = MaxBody - 1024
