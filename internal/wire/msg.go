package wire

// Each message type has a struct that the caller owns and reuses. Append
// methods append a whole frame (header and body) to dst; Decode methods fill
// the struct from a body. Byte slices filled by Decode (descriptors) alias
// the body: copy them to keep them.
//
// Append does not validate: the caller keeps batch counts within 1..MaxBatch
// (a larger N panics) and descriptors within 1..MaxDesc bytes, or the peer
// rejects the frame as malformed. Decode checks both and returns ErrMalformed;
// after an error the struct's contents are unspecified.

// Init is the body of TInit and TReinit requests (4 bytes).
type Init struct {
	MinVersion uint8 // lowest protocol version the client accepts
	TPMode     uint8 // transport mode (trans_mode_t), validated against the server's
}

// Append appends a TInit or TReinit frame (t) from client (0 for TInit).
func (m *Init) Append(dst []byte, t Type, id uint32, client int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, id, client)
	dst = append(dst, m.MinVersion, m.TPMode, 0, 0)
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *Init) Decode(b []byte) error {
	r := reader{b: b}
	m.MinVersion, m.TPMode = r.u8(), r.u8()
	r.take(2)
	return r.done()
}

// InitReply is the body of a successful TInit/TReinit reply: 8 bytes, or 16
// when the server is the elected primary of a highly available cluster and
// names its epoch.
type InitReply struct {
	ClientID    int32
	ServerState uint8 // StateReady or StateWaitClientReinit
	Version     uint8 // the protocol version the server speaks
	// Flags describe the server (InitFlagDurableObjects); 0 from a server
	// that predates them.
	Flags uint8
	// Epoch is the election revision of the primary that answered (HA mode),
	// 0 from a server that is not part of a cluster. Sent only when non-zero.
	Epoch uint64
}

// Append appends the reply frame.
func (m *InitReply) Append(dst []byte, t Type, id uint32, status int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t.Reply(), id, status)
	dst = le.AppendUint32(dst, uint32(m.ClientID))
	dst = append(dst, m.ServerState, m.Version, m.Flags, 0)
	if m.Epoch != 0 {
		dst = le.AppendUint64(dst, m.Epoch)
	}
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *InitReply) Decode(b []byte) error {
	r := reader{b: b}
	m.ClientID = r.i32()
	m.ServerState, m.Version, m.Flags = r.u8(), r.u8(), r.u8()
	r.take(1)
	m.Epoch = 0
	if len(r.b) == 8 {
		m.Epoch = r.u64()
		if m.Epoch == 0 {
			r.bad = true
		}
	}
	return r.done()
}

// InitFlagDurableObjects in InitReply.Flags: the server keeps atomic64
// objects in its cluster's store, so a new primary has the objects of the
// one it replaced (with their values, owners and references).
const InitFlagDurableObjects uint8 = 1

// StatusRedirect is the reply status of a standby server in a highly
// available cluster: it does not serve, and the body (a Redirect) names the
// primary's advertised address, or is empty while no primary is known.
const StatusRedirect int32 = 0x2010

// Redirect is the body of a StatusRedirect reply: the primary's address as a
// length-prefixed string (u16 length, 0..MaxDesc bytes), or an empty body.
type Redirect struct {
	Addr string
}

// Append appends a redirect reply to a request of type t.
func (m *Redirect) Append(dst []byte, t Type, id uint32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t.Reply(), id, StatusRedirect)
	if m.Addr != "" {
		dst = le.AppendUint16(dst, uint16(len(m.Addr)))
		dst = append(dst, m.Addr...)
	}
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *Redirect) Decode(b []byte) error {
	m.Addr = ""
	if len(b) == 0 {
		return nil
	}
	r := reader{b: b}
	a := r.desc()
	if err := r.done(); err != nil {
		return err
	}
	m.Addr = string(a)
	return nil
}

// GetLock is the body of TGetLock (12 + len(Desc) bytes), and one item of
// TBatchGetLock.
type GetLock struct {
	Preferred int32 // preferred lock id: the djb2 hash of Desc
	Lease     uint32
	Type      uint8 // dlock.LockType
	Desc      []byte
}

func (m *GetLock) appendBody(dst []byte) []byte {
	dst = le.AppendUint32(dst, uint32(m.Preferred))
	dst = le.AppendUint32(dst, m.Lease)
	dst = append(dst, m.Type, 0)
	return appendDesc(dst, m.Desc)
}

func (m *GetLock) read(r *reader) {
	m.Preferred = r.i32()
	m.Lease = r.u32()
	m.Type = r.u8()
	r.take(1)
	m.Desc = r.desc()
}

// Append appends a TGetLock frame.
func (m *GetLock) Append(dst []byte, id uint32, client int32) []byte {
	start := len(dst)
	dst = m.appendBody(appendHeader(dst, TGetLock, id, client))
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *GetLock) Decode(b []byte) error {
	r := reader{b: b}
	m.read(&r)
	return r.done()
}

// GetLockReply is the body of a successful TGetLock reply (12 bytes).
type GetLockReply struct {
	ID    int32
	Lease uint32
	Type  uint8
}

// Append appends the reply frame.
func (m *GetLockReply) Append(dst []byte, id uint32, status int32) []byte {
	return m.AppendType(dst, TGetLock.Reply(), id, status)
}

// AppendType appends a reply frame of type t (the reply to TGetLock, or to
// a TOpenLockOp whose lock command did not run).
func (m *GetLockReply) AppendType(dst []byte, t Type, id uint32, status int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, id, status)
	dst = le.AppendUint32(dst, uint32(m.ID))
	dst = le.AppendUint32(dst, m.Lease)
	dst = append(dst, m.Type, 0, 0, 0)
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *GetLockReply) Decode(b []byte) error {
	r := reader{b: b}
	m.ID = r.i32()
	m.Lease = r.u32()
	m.Type = r.u8()
	r.take(3)
	return r.done()
}

// ID is a body holding one id: TReleaseLock, TObjRelease, TObjDestroy,
// TObjLoad requests, TCancel (the request id to cancel, as int32).
type ID struct{ ID int32 }

// Append appends a frame of type t.
func (m *ID) Append(dst []byte, t Type, id uint32, client int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, id, client)
	dst = le.AppendUint32(dst, uint32(m.ID))
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *ID) Decode(b []byte) error {
	r := reader{b: b}
	m.ID = r.i32()
	return r.done()
}

// BatchGetLock is the body of TBatchGetLock: a count and N GetLock items.
type BatchGetLock struct {
	N     int
	Items [MaxBatch]GetLock
}

// Append appends a TBatchGetLock frame.
func (m *BatchGetLock) Append(dst []byte, id uint32, client int32) []byte {
	start := len(dst)
	dst = appendCount(appendHeader(dst, TBatchGetLock, id, client), m.N)
	for i := 0; i < m.N; i++ {
		dst = m.Items[i].appendBody(dst)
	}
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *BatchGetLock) Decode(b []byte) error {
	r := reader{b: b}
	m.N = r.count()
	for i := 0; i < m.N; i++ {
		m.Items[i].read(&r)
	}
	return r.done()
}

// IDs is a count and N int32 ids: TBatchRelease requests, TBatchGetLock and
// TUpdateLocks replies (where an id ≤ 0 marks a failed item).
type IDs struct {
	N   int
	IDs [MaxBatch]int32
}

// Append appends a frame of type t (a request: word = client id; a reply:
// word = status).
func (m *IDs) Append(dst []byte, t Type, id uint32, word int32) []byte {
	start := len(dst)
	dst = appendCount(appendHeader(dst, t, id, word), m.N)
	for i := 0; i < m.N; i++ {
		dst = le.AppendUint32(dst, uint32(m.IDs[i]))
	}
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *IDs) Decode(b []byte) error {
	r := reader{b: b}
	m.N = r.count()
	for i := 0; i < m.N; i++ {
		m.IDs[i] = r.i32()
	}
	return r.done()
}

// LockOp is the body of TLockOp (28 bytes): one lock command.
type LockOp struct {
	LockID int32
	Cmd    uint8 // dlock.Cmd
	Flags  uint8 // FlagBlock, FlagKeepTicket
	// Arg is the command's payload: the client's view of the lock value
	// (ATOMIC: own id and expire; RW: own id or 0 and expire; FAIR: cached
	// counters and expire), as SEMANTICS.md §6.2 describes.
	Arg [16]byte
	// WaitMillis bounds a blocking request (FlagBlock); 0 means no bound.
	WaitMillis uint32
}

// Append appends a TLockOp frame.
func (m *LockOp) Append(dst []byte, id uint32, client int32) []byte {
	return m.AppendType(dst, TLockOp, id, client)
}

// AppendType appends a frame of type t (TLockOp or TAbandon) with m's body.
func (m *LockOp) AppendType(dst []byte, t Type, id uint32, client int32) []byte {
	start := len(dst)
	dst = m.appendBody(appendHeader(dst, t, id, client))
	return finish(dst, start)
}

func (m *LockOp) appendBody(dst []byte) []byte {
	dst = le.AppendUint32(dst, uint32(m.LockID))
	dst = append(dst, m.Cmd, m.Flags, 0, 0)
	dst = append(dst, m.Arg[:]...)
	return le.AppendUint32(dst, m.WaitMillis)
}

func (m *LockOp) read(r *reader) {
	m.LockID = r.i32()
	m.Cmd, m.Flags = r.u8(), r.u8()
	r.take(2)
	r.state(&m.Arg)
	m.WaitMillis = r.u32()
}

// Decode fills m from a body.
func (m *LockOp) Decode(b []byte) error {
	r := reader{b: b}
	m.read(&r)
	return r.done()
}

// LockResult is the body of a TLockOp reply (24 bytes; the op_ret is the
// header status) and one item of a TBatchLockOp reply (with Status).
type LockResult struct {
	Status int32    // batch items only
	State  [16]byte // the lock's resulting value
	Token  uint64   // fencing token of a successful grant, else 0
}

// Append appends a TLockOp reply frame with status in the header.
func (m *LockResult) Append(dst []byte, id uint32, status int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, TLockOp.Reply(), id, status)
	dst = append(dst, m.State[:]...)
	dst = le.AppendUint64(dst, m.Token)
	return finish(dst, start)
}

// Decode fills State and Token from a TLockOp reply body.
func (m *LockResult) Decode(b []byte) error {
	r := reader{b: b}
	r.state(&m.State)
	m.Token = r.u64()
	return r.done()
}

// BatchLockOp is the body of TBatchLockOp: a count and N commands (24 bytes
// each; blocking is not allowed in a batch).
type BatchLockOp struct {
	N     int
	Items [MaxBatch]LockOp
}

// Append appends a TBatchLockOp frame.
func (m *BatchLockOp) Append(dst []byte, id uint32, client int32) []byte {
	start := len(dst)
	dst = appendCount(appendHeader(dst, TBatchLockOp, id, client), m.N)
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		dst = le.AppendUint32(dst, uint32(it.LockID))
		dst = append(dst, it.Cmd, it.Flags, 0, 0)
		dst = append(dst, it.Arg[:]...)
	}
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *BatchLockOp) Decode(b []byte) error {
	r := reader{b: b}
	m.N = r.count()
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		it.LockID = r.i32()
		it.Cmd, it.Flags = r.u8(), r.u8()
		r.take(2)
		r.state(&it.Arg)
		it.WaitMillis = 0
	}
	return r.done()
}

// BatchLockResult is the body of a TBatchLockOp reply: a count and N
// results (28 bytes each).
type BatchLockResult struct {
	N     int
	Items [MaxBatch]LockResult
}

// Append appends the reply frame.
func (m *BatchLockResult) Append(dst []byte, id uint32, status int32) []byte {
	start := len(dst)
	dst = appendCount(appendHeader(dst, TBatchLockOp.Reply(), id, status), m.N)
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		dst = le.AppendUint32(dst, uint32(it.Status))
		dst = append(dst, it.State[:]...)
		dst = le.AppendUint64(dst, it.Token)
	}
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *BatchLockResult) Decode(b []byte) error {
	r := reader{b: b}
	m.N = r.count()
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		it.Status = r.i32()
		r.state(&it.State)
		it.Token = r.u64()
	}
	return r.done()
}

// UpdateLock is one item of TUpdateLocks: a lock the client reports during
// recovery (SEMANTICS.md §6.4), 36 + len(Desc) bytes.
type UpdateLock struct {
	ID    int32 // the client's id for the lock, used as the preferred id
	Lease uint32
	Type  uint8
	Hold  uint8    // what the client has: HoldNone, HoldExclusive, HoldShared, TicketExclusive, TicketShared
	State [16]byte // the client's view of the lock value (zero: not held)
	Token uint64   // fencing token of the hold the client reports, 0 if none
	Desc  []byte
}

// What a client reports having of a lock during recovery (UpdateLock.Hold).
const (
	HoldNone        uint8 = 0
	HoldExclusive   uint8 = 1
	HoldShared      uint8 = 2
	TicketExclusive uint8 = 3 // a FAIR ticket not yet served
	TicketShared    uint8 = 4
)

// UpdateLocks is the body of TUpdateLocks.
type UpdateLocks struct {
	N     int
	Items [MaxBatch]UpdateLock
}

// Append appends a TUpdateLocks frame.
func (m *UpdateLocks) Append(dst []byte, id uint32, client int32) []byte {
	start := len(dst)
	dst = appendCount(appendHeader(dst, TUpdateLocks, id, client), m.N)
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		dst = le.AppendUint32(dst, uint32(it.ID))
		dst = le.AppendUint32(dst, it.Lease)
		dst = append(dst, it.Type, it.Hold)
		dst = append(dst, it.State[:]...)
		dst = le.AppendUint64(dst, it.Token)
		dst = appendDesc(dst, it.Desc)
	}
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *UpdateLocks) Decode(b []byte) error {
	r := reader{b: b}
	m.N = r.count()
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		it.ID = r.i32()
		it.Lease = r.u32()
		it.Type = r.u8()
		it.Hold = r.u8()
		r.state(&it.State)
		it.Token = r.u64()
		it.Desc = r.desc()
	}
	return r.done()
}

// Object is the body of TObjCreate and TObjGet requests (18 + len(Desc)
// bytes); Init is ignored for TObjGet.
type Object struct {
	Preferred int32 // preferred object id: the djb2 hash of Desc
	Lease     uint32
	Init      uint64
	Desc      []byte
}

// Append appends a frame of type t (TObjCreate or TObjGet).
func (m *Object) Append(dst []byte, t Type, id uint32, client int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, id, client)
	dst = le.AppendUint32(dst, uint32(m.Preferred))
	dst = le.AppendUint32(dst, m.Lease)
	dst = le.AppendUint64(dst, m.Init)
	dst = appendDesc(dst, m.Desc)
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *Object) Decode(b []byte) error {
	r := reader{b: b}
	m.Preferred = r.i32()
	m.Lease = r.u32()
	m.Init = r.u64()
	m.Desc = r.desc()
	return r.done()
}

// ObjOp is the body of TObjFAA (A = delta) and TObjCAS (A = compare,
// B = swap) requests (24 bytes).
type ObjOp struct {
	ID   int32
	A, B uint64
}

// Append appends a frame of type t (TObjFAA or TObjCAS).
func (m *ObjOp) Append(dst []byte, t Type, id uint32, client int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, id, client)
	dst = le.AppendUint32(dst, uint32(m.ID))
	dst = le.AppendUint32(dst, 0)
	dst = le.AppendUint64(dst, m.A)
	dst = le.AppendUint64(dst, m.B)
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *ObjOp) Decode(b []byte) error {
	r := reader{b: b}
	m.ID = r.i32()
	r.take(4)
	m.A, m.B = r.u64(), r.u64()
	return r.done()
}

// ObjReply is the body of every object reply (16 bytes): the object id
// (create, get) and the value (FAA: the old value; load: the value).
type ObjReply struct {
	ID    int32
	Value uint64
}

// Append appends a reply frame to a request of type t.
func (m *ObjReply) Append(dst []byte, t Type, id uint32, status int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t.Reply(), id, status)
	dst = le.AppendUint32(dst, uint32(m.ID))
	dst = le.AppendUint32(dst, 0)
	dst = le.AppendUint64(dst, m.Value)
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *ObjReply) Decode(b []byte) error {
	r := reader{b: b}
	m.ID = r.i32()
	r.take(4)
	m.Value = r.u64()
	return r.done()
}

// NumCounters is the number of debug counters in a StatsReply.
const NumCounters = 45

// StatsReply is the body of a TStats reply: 45 little-endian uint64 counters.
type StatsReply struct{ Counters [NumCounters]uint64 }

// Append appends the reply frame.
func (m *StatsReply) Append(dst []byte, id uint32, status int32) []byte {
	start := len(dst)
	dst = appendHeader(dst, TStats.Reply(), id, status)
	for _, c := range m.Counters {
		dst = le.AppendUint64(dst, c)
	}
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *StatsReply) Decode(b []byte) error {
	r := reader{b: b}
	for i := range m.Counters {
		m.Counters[i] = r.u64()
	}
	return r.done()
}
