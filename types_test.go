package dlock

import (
	"errors"
	"fmt"
	"testing"
)

func TestStatusIsError(t *testing.T) {
	err := fmt.Errorf("dlock: trylock %q: %w", "x", ErrNotReady.Err())
	if !errors.Is(err, ErrNotReady) {
		t.Fatal("errors.Is does not see a wrapped Status")
	}
	var st Status
	if !errors.As(err, &st) || st != ErrNotReady {
		t.Fatalf("errors.As = %v", st)
	}
	if Success.Err() != nil {
		t.Fatal("Success.Err() is not nil")
	}
	if ErrNotReady.String() != "DLOCK_NOT_READY" || ErrGeneric.String() != "-1" {
		t.Errorf("names: %q %q", ErrNotReady.String(), ErrGeneric.String())
	}
	if got := Status(0x4242).String(); got != "Status(16962)" {
		t.Errorf("unknown status name %q", got)
	}
	if !ErrAgain.Temporary() || ErrFail.Temporary() || !ErrTimeout.Timeout() || ErrFail.Timeout() {
		t.Error("Temporary/Timeout classification")
	}
	if Status(0x4242).Known() || !ErrObjectCASFailed.Known() {
		t.Error("Known")
	}
}

func TestStatusErrDoesNotAllocate(t *testing.T) {
	var sink error
	for _, e := range statusTable {
		s := e.s
		if n := testing.AllocsPerRun(100, func() { sink = s.Err() }); n != 0 {
			t.Errorf("%v.Err() allocates %.0f times", s, n)
		}
	}
	_ = sink
}

// TestStatusValues pins the numbers of the C ABI (enum dlock_status).
func TestStatusValues(t *testing.T) {
	want := map[Status]int32{
		Success: 0, ErrAgain: 0x1000, ErrAsync: 0x1005, ErrClientNotInit: 0x2000, ErrNotReady: 0x2008,
		ErrProtoNegotiationFail: 0x200E, ErrServerNoResource: 0x200F, ErrObjectAlreadyExisted: 0x3000,
		ErrObjectCASFailed: 0x3007, ErrGeneric: -1,
	}
	for s, v := range want {
		if int32(s) != v {
			t.Errorf("%v = %#x, want %#x", s, int32(s), v)
		}
	}
	if NumCounters != 45 || StatObjectCASFailed != 44 || StatClientDisconnect != 31 {
		t.Errorf("counters: %d, CAS %d, disconnect %d", NumCounters, StatObjectCASFailed, StatClientDisconnect)
	}
	if StatObjectCASFailed.String() != "OBJECT_CAS_FAILED" {
		t.Error(StatObjectCASFailed.String())
	}
}

// TestLockStateLayout pins the byte layouts of atomic_state, rw_state and
// fairlock_state (PROTOCOL.md §6).
func TestLockStateLayout(t *testing.T) {
	a := AtomicState{Owner: 0x01020304, Timeout: 0x0A0B0C0D}.State()
	if a != (LockState{4, 3, 2, 1, 0x0D, 0x0C, 0x0B, 0x0A}) {
		t.Errorf("atomic layout % x", a)
	}
	r := RWState{Timeout: 1, Owner: 2, RCount: 3, Rsvd: 4}.State()
	if r != (LockState{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0}) {
		t.Errorf("rw layout % x", r)
	}
	f := FairState{Nx: 1, Ns: 2, Mx: 3, Ms: 4, Timeout: 5, RMs: 0xBEEF, RFlag: true, RCnt: 63}
	s := f.State()
	// t_value: rms bits 0..15, rflag bit 16, rcnt bits 26..31.
	if got, want := f.TValue(), uint32(0xBEEF)|1<<16|63<<26; got != want {
		t.Errorf("t_value %#x, want %#x", got, want)
	}
	if s != (LockState{1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 0, 0, 0xEF, 0xBE, 0x01, 0xFC}) {
		t.Errorf("fair layout % x", s)
	}
	if s.Fair() != f || a.Atomic() != (AtomicState{0x01020304, 0x0A0B0C0D}) || r.RW() != (RWState{1, 2, 3, 4}) {
		t.Error("decode does not invert encode")
	}
}
