package wire

import (
	"encoding/binary"
	"errors"
	"io"
)

// Frame constants.
const (
	Magic     uint16 = 0xD10C // first two bytes of every frame (little endian: 0C D1)
	Version   uint8  = 2      // protocol version this package speaks (DLOCK_PROTO_VERSION)
	HeaderLen        = 16
	// MaxBody is the largest body a frame may carry. The largest message, a
	// recovery batch (TUpdateLocks) of 31 locks with 512-byte descriptors,
	// needs 4 + 31×(36+512) = 16 992 bytes.
	MaxBody  = 32 << 10
	MaxBatch = 31 // items per batch message
	MaxDesc  = 512
)

// Type is a message type. A reply has the type of its request with the high
// bit set.
type Type uint8

// Message types.
const (
	TInit          Type = 0x01 // register a new client (client_init)
	TReinit        Type = 0x02 // re-register an existing client id (client_reinit)
	TReinitDone    Type = 0x03 // client_reinit_done
	TDeinit        Type = 0x04 // deregister (client_deinit)
	THeartbeat     Type = 0x05 // client_heartbeat
	TGetLock       Type = 0x10 // get_lock
	TReleaseLock   Type = 0x11 // release_lock
	TBatchGetLock  Type = 0x12 // batch_get_lock
	TBatchRelease  Type = 0x13 // batch_release_lock
	TLockOp        Type = 0x20 // trylock / lock / unlock / lock_extend
	TBatchLockOp   Type = 0x21 // batch_trylock / batch_unlock / batch_lock_extend
	TCancel        Type = 0x22 // give up a blocking lock request (no reply of its own)
	TUpdateLocks   Type = 0x23 // update_all_locks (recovery upload)
	TLockQuery     Type = 0x24 // does this client hold the lock? (re-validation after recovery)
	TAbandon       Type = 0x25 // give up a fair ticket (LockOp body; no reply)
	TResolve       Type = 0x26 // drop a hold the client does not know it has (LockOp body; header-only reply)
	TOpenLockOp    Type = 0x27 // get_lock and a first lock command in one request (OpenLockOp body)
	TObjCreate     Type = 0x30 // umo_atomic64_create
	TObjGet        Type = 0x31 // umo_atomic64_get
	TObjRelease    Type = 0x32 // umo_atomic64_release
	TObjDestroy    Type = 0x33 // umo_atomic64_destroy
	TObjFAA        Type = 0x34 // umo_atomic64_faa
	TObjCAS        Type = 0x35 // umo_atomic64_cas
	TObjLoad       Type = 0x36 // umo_atomic64_get_snapshot
	TStats         Type = 0x40 // server debug counters
	TResetStats    Type = 0x41 // clear server debug counters
	ReplyBit       Type = 0x80
	TUnknownReply  Type = 0xFF // reply to a request of a type the server does not know
	maxRequestType Type = 0x7F
)

// Reply returns the reply type of request type t.
func (t Type) Reply() Type { return t | ReplyBit }

// IsReply reports whether t is a reply type.
func (t Type) IsReply() bool { return t&ReplyBit != 0 }

// Server states carried in InitReply (dlock_server_state_t values).
const (
	StateWaitClientReinit uint8 = 2
	StateReady            uint8 = 3
)

// Lock operation flags (LockOp.Flags).
const (
	// FlagBlock asks the server to queue the request until it is granted or
	// WaitMillis pass (blocking lock), instead of answering at once.
	FlagBlock uint8 = 1 << 0
	// FlagKeepTicket: when a blocking FAIR request times out, keep its ticket
	// and answer DLOCK_EAGAIN with it (the C lock() semantic) instead of
	// abandoning it.
	FlagKeepTicket uint8 = 1 << 1
)

// Errors returned by the decoders and ReadFrame.
var (
	ErrBadMagic   = errors.New("wire: bad magic")
	ErrBadVersion = errors.New("wire: unsupported protocol version")
	ErrTooLarge   = errors.New("wire: frame body too large")
	ErrMalformed  = errors.New("wire: malformed message body")
)

var le = binary.LittleEndian

// Header is the fixed 16-byte frame header:
//
//	off size field
//	0   2    magic 0xD10C (little endian)
//	2   1    version
//	3   1    type
//	4   4    request id (a reply carries its request's id)
//	8   4    body length (bytes after the header, ≤ MaxBody)
//	12  4    requests: the sender's client id (0 before registration);
//	         replies: the status (dlock_status value or -1)
type Header [HeaderLen]byte

// Magic returns the magic field.
func (h *Header) Magic() uint16 { return le.Uint16(h[0:]) }

// Version returns the version field.
func (h *Header) Version() uint8 { return h[2] }

// Type returns the message type.
func (h *Header) Type() Type { return Type(h[3]) }

// ID returns the request id.
func (h *Header) ID() uint32 { return le.Uint32(h[4:]) }

// Len returns the body length.
func (h *Header) Len() uint32 { return le.Uint32(h[8:]) }

// Client returns the client id of a request.
func (h *Header) Client() int32 { return int32(le.Uint32(h[12:])) }

// Status returns the status of a reply.
func (h *Header) Status() int32 { return int32(le.Uint32(h[12:])) }

// Check validates magic and length; it does not look at the version, which
// the server answers with a negotiation failure rather than by closing.
func (h *Header) Check() error {
	if h.Magic() != Magic {
		return ErrBadMagic
	}
	if h.Len() > MaxBody {
		return ErrTooLarge
	}
	return nil
}

// appendHeader appends a header with a zero length; finish patches it.
func appendHeader(dst []byte, t Type, id uint32, word int32) []byte {
	dst = le.AppendUint16(dst, Magic)
	dst = append(dst, Version, byte(t))
	dst = le.AppendUint32(dst, id)
	dst = le.AppendUint32(dst, 0)
	return le.AppendUint32(dst, uint32(word))
}

// finish writes the body length of the frame that starts at start.
func finish(dst []byte, start int) []byte {
	le.PutUint32(dst[start+8:], uint32(len(dst)-start-HeaderLen))
	return dst
}

// AppendFrame appends a frame of type t whose body is body. Requests carry
// the client id in word, replies the status.
func AppendFrame(dst []byte, t Type, id uint32, word int32, body []byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, id, word)
	dst = append(dst, body...)
	return finish(dst, start)
}

// ReadFrame reads one frame from r: the header into h and the body into buf,
// which is grown (up to MaxBody) when too small. The length is checked before
// anything is allocated. The returned body aliases buf.
func ReadFrame(r io.Reader, h *Header, buf []byte) ([]byte, error) {
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return buf[:0], err
	}
	if err := h.Check(); err != nil {
		return buf[:0], err
	}
	n := int(h.Len())
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return buf, err
	}
	return buf, nil
}

// reader decodes fields from a body, remembering the first error.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || len(r.b) < n {
		r.bad = true
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return le.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return le.Uint32(p)
	}
	return 0
}

func (r *reader) i32() int32 { return int32(r.u32()) }

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return le.Uint64(p)
	}
	return 0
}

func (r *reader) state(s *[16]byte) {
	if p := r.take(16); p != nil {
		copy(s[:], p)
	}
}

// desc reads a u16 length and that many bytes (1..MaxDesc), aliasing the body.
func (r *reader) desc() []byte {
	n := int(r.u16())
	if n == 0 || n > MaxDesc {
		r.bad = true
		return nil
	}
	return r.take(n)
}

// count reads a batch count (1..MaxBatch) followed by three pad bytes.
func (r *reader) count() int {
	n := int(r.u8())
	r.take(3)
	if n == 0 || n > MaxBatch {
		r.bad = true
		return 0
	}
	return n
}

// done reports ErrMalformed if a field was missing or bytes are left over.
func (r *reader) done() error {
	if r.bad || len(r.b) != 0 {
		return ErrMalformed
	}
	return nil
}

func appendDesc(dst, d []byte) []byte {
	dst = le.AppendUint16(dst, uint16(len(d)))
	return append(dst, d...)
}

func appendCount(dst []byte, n int) []byte {
	return append(dst, byte(n), 0, 0, 0)
}
