package wire

// OpenLockOp is the body of TOpenLockOp (40 + len(Desc) bytes): open the
// lock Open names, exactly as TGetLock does, and if the lock's id is
// Op.LockID run Op on it, exactly as TLockOp does. The first use of a lock
// thus costs one round trip: the client predicts the id (Open.Preferred,
// which the server gives a new lock when it is free, or the id it opened the
// name with before) so that, if the reply is lost, it knows which lock to
// resolve.
//
// The reply says what happened by its type: a TLockOp reply (LockResult,
// possibly later for a blocking Op) when Op ran; a TOpenLockOp reply with a
// GetLockReply body when the lock was opened under another id and Op did not
// run; a TOpenLockOp reply with a non-zero status and no body when the open
// failed (nothing was done).
type OpenLockOp struct {
	Op   LockOp
	Open GetLock
}

// Append appends a TOpenLockOp frame.
func (m *OpenLockOp) Append(dst []byte, id uint32, client int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, TOpenLockOp, id, client)
	dst = m.Op.appendBody(dst)
	dst = m.Open.appendBody(dst)
	return finish(dst, start)
}

// Decode fills m from a body. Open.Desc aliases b.
func (m *OpenLockOp) Decode(b []byte) error {
	r := reader{b: b}
	m.Op.read(&r)
	m.Open.read(&r)
	return r.done()
}
