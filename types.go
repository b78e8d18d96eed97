package dlock

import (
	"encoding/binary"
	"strconv"
)

// Limits and fixed parameters of the DLock model (SEMANTICS.md §2).
const (
	MaxDescLen          = 512    // MAX_LOCK_DESC_LEN, MAX_UMO_ATOMIC64_DESC_LEN
	MaxBatch            = 31     // MAX_LOCK_BATCH_SIZE
	MaxClients          = 1000   // MAX_NUM_CLIENT: registered clients per server
	MaxLocks            = 51200  // MAX_NUM_LOCK: lock objects per server
	MaxObjects          = 102400 // OBJECT_MAX_NUMBER: atomic64 objects per server
	MaxFairShared       = 63     // MAX_FAIR_LOCK_RCNT: concurrent fair shared holders
	MaxFairQueue        = 0x7FFF // MAX_FAIR_QUESIZE: outstanding fair tickets per kind
	FairHandOverSeconds = 2      // FAIR_WAIT_TIME: hand-over grace after a fair unlock
	FairResetThreshold  = 50     // FAIR_RST_TH: shared unlocks that clear Rflag
	DefaultPort         = 21616  // CONTROL_PORT_CLIENT
	MinPort             = 1024   // DLOCK_PORT_RANGE_MIN
	MaxPort             = 65535  // DLOCK_PORT_RANGE_MAX
	MaxClientID         = 0x7FFFFFFF
	MaxHeartbeatSeconds = 300 // MAX_HEARTBEAT_TIMEOUT
	ProtoVersion        = 2   // DLOCK_PROTO_VERSION
	MinProtoVersion     = 2   // DLOCK_MIN_PROTO_VERSION
)

// LockType is the kind of a lock (C enum dlock_type).
type LockType uint8

const (
	Atomic LockType = 0 // DLOCK_ATOMIC: exclusive lock with a lease
	RW     LockType = 1 // DLOCK_RW: reader/writer lock without expiry
	Fair   LockType = 2 // DLOCK_FAIR: FIFO ticket lock, exclusive and shared, with a lease

	lockTypeMax LockType = 3 // DLOCK_MAX
)

// Valid reports whether t is one of Atomic, RW, Fair.
func (t LockType) Valid() bool { return t < lockTypeMax }

func (t LockType) String() string {
	switch t {
	case Atomic:
		return "atomic"
	case RW:
		return "rw"
	case Fair:
		return "fair"
	}
	return "LockType(" + strconv.Itoa(int(t)) + ")"
}

// Mode is exclusive or shared.
type Mode uint8

const (
	Exclusive Mode = 0
	Shared    Mode = 1
)

func (m Mode) String() string {
	if m == Shared {
		return "shared"
	}
	return "exclusive"
}

// LockState is the 16-byte lock value that the server keeps per lock and
// reports with every reply (C union lock_state / the state part of
// lock_op_res). Its layout is the C layout, little endian; read it through
// [LockState.Atomic], [LockState.RW] or [LockState.Fair] according to the
// lock's type.
type LockState [16]byte

// AtomicState is the value of an atomic lock (C atomic_state).
type AtomicState struct {
	Owner   int32  // client_id of the holder, 0 = free
	Timeout uint32 // time_out: absolute expiry, seconds since the Unix epoch
}

// RWState is the value of a reader/writer lock (C rw_state).
type RWState struct {
	Timeout uint32 // time_out: second of the first acquisition of the current holding period
	Owner   int32  // client_id of the exclusive holder, 0 = none
	RCount  uint32 // rcount: number of shared holders
	Rsvd    uint32 // rsvd
}

// FairState is the value of a fair ticket lock (C fairlock_state).
type FairState struct {
	Nx      uint16 // n_exclusive: exclusive holds completed (next exclusive ticket served)
	Ns      uint16 // n_shared: shared holds completed
	Mx      uint16 // m_exclusive: exclusive tickets issued
	Ms      uint16 // m_shared: shared tickets issued
	Timeout uint32 // time_out: expiry or hand-over deadline, absolute seconds
	RMs     uint16 // rms: shared ticket position of the last timeout grab
	RFlag   bool   // rflag: a timeout grab happened and is still remembered
	RCnt    uint8  // rcnt: current shared holders, 0..63 (6 bits)
}

// Bit positions of fairlock_state.t_value (PROTOCOL.md §6).
const (
	fairRFlagBit   = 16
	fairRCntShift  = 26
	fairRCntMask   = 0x3F
	fairRMsMask    = 0xFFFF
	fairRFlagValue = 1 << fairRFlagBit
)

// Atomic reads s as an atomic lock value.
func (s LockState) Atomic() AtomicState {
	return AtomicState{
		Owner:   int32(binary.LittleEndian.Uint32(s[0:])),
		Timeout: binary.LittleEndian.Uint32(s[4:]),
	}
}

// RW reads s as a reader/writer lock value.
func (s LockState) RW() RWState {
	return RWState{
		Timeout: binary.LittleEndian.Uint32(s[0:]),
		Owner:   int32(binary.LittleEndian.Uint32(s[4:])),
		RCount:  binary.LittleEndian.Uint32(s[8:]),
		Rsvd:    binary.LittleEndian.Uint32(s[12:]),
	}
}

// Fair reads s as a fair lock value.
func (s LockState) Fair() FairState {
	t := binary.LittleEndian.Uint32(s[12:])
	return FairState{
		Nx:      binary.LittleEndian.Uint16(s[0:]),
		Ns:      binary.LittleEndian.Uint16(s[2:]),
		Mx:      binary.LittleEndian.Uint16(s[4:]),
		Ms:      binary.LittleEndian.Uint16(s[6:]),
		Timeout: binary.LittleEndian.Uint32(s[8:]),
		RMs:     uint16(t & fairRMsMask),
		RFlag:   t&fairRFlagValue != 0,
		RCnt:    uint8(t>>fairRCntShift) & fairRCntMask,
	}
}

// State encodes a as a LockState (bytes 8..15 are zero).
func (a AtomicState) State() LockState {
	var s LockState
	binary.LittleEndian.PutUint32(s[0:], uint32(a.Owner))
	binary.LittleEndian.PutUint32(s[4:], a.Timeout)
	return s
}

// State encodes r as a LockState.
func (r RWState) State() LockState {
	var s LockState
	binary.LittleEndian.PutUint32(s[0:], r.Timeout)
	binary.LittleEndian.PutUint32(s[4:], uint32(r.Owner))
	binary.LittleEndian.PutUint32(s[8:], r.RCount)
	binary.LittleEndian.PutUint32(s[12:], r.Rsvd)
	return s
}

// TValue returns the packed t_value word (R_Ms, Rflag, Rcnt) of f.
func (f FairState) TValue() uint32 {
	t := uint32(f.RMs) | uint32(f.RCnt&fairRCntMask)<<fairRCntShift
	if f.RFlag {
		t |= fairRFlagValue
	}
	return t
}

// State encodes f as a LockState.
func (f FairState) State() LockState {
	var s LockState
	binary.LittleEndian.PutUint16(s[0:], f.Nx)
	binary.LittleEndian.PutUint16(s[2:], f.Ns)
	binary.LittleEndian.PutUint16(s[4:], f.Mx)
	binary.LittleEndian.PutUint16(s[6:], f.Ms)
	binary.LittleEndian.PutUint32(s[8:], f.Timeout)
	binary.LittleEndian.PutUint32(s[12:], f.TValue())
	return s
}
