package lockcore

import (
	"testing"

	"github.com/dlock-io/dlock"
)

func TestMergeAtomic(t *testing.T) {
	tb := NewTable(Limits{})
	d := []byte("a")
	id := tb.Merge(1, d, dlock.Atomic, 77, 5, dlock.AtomicState{Owner: 1, Timeout: 200}.State(), HoldExclusive, 40)
	if id != 77 {
		t.Fatalf("id %d", id)
	}
	// An older report does not win; a newer one does; a report naming another
	// client or not a hold is ignored.
	tb.Merge(2, d, dlock.Atomic, 77, 5, dlock.AtomicState{Owner: 2, Timeout: 150}.State(), HoldExclusive, 0)
	if a := tb.Lock(id).State().Atomic(); a.Owner != 1 || a.Timeout != 200 {
		t.Fatalf("older report won: %+v", a)
	}
	tb.Merge(3, d, dlock.Atomic, 77, 5, dlock.AtomicState{Owner: 9, Timeout: 900}.State(), HoldExclusive, 0)
	tb.Merge(3, d, dlock.Atomic, 77, 5, dlock.AtomicState{Owner: 3, Timeout: 900}.State(), HoldNone, 0)
	if a := tb.Lock(id).State().Atomic(); a.Owner != 1 {
		t.Fatalf("foreign report won: %+v", a)
	}
	tb.Merge(2, d, dlock.Atomic, 77, 5, dlock.AtomicState{Owner: 2, Timeout: 300}.State(), HoldExclusive, 0)
	if a := tb.Lock(id).State().Atomic(); a.Owner != 2 || a.Timeout != 300 {
		t.Fatalf("newer report lost: %+v", a)
	}
	if !tb.Has(1, id) || !tb.Has(2, id) || !tb.Has(3, id) {
		t.Fatal("references not added")
	}
	if tb.Tokens().Last() != 40 {
		t.Fatalf("tokens not raised: %d", tb.Tokens().Last())
	}
	// Type mismatch and invalid entries are rejected.
	if got := tb.Merge(4, d, dlock.RW, 0, 0, dlock.LockState{}, HoldNone, 0); got != -1 {
		t.Fatalf("type mismatch → %d", got)
	}
	if got := tb.Merge(4, nil, dlock.RW, 0, 0, dlock.LockState{}, HoldNone, 0); got != -1 {
		t.Fatalf("empty descriptor → %d", got)
	}
	// The recovered owner unlocks as usual.
	r, _ := tb.Lock(id).Exec(250, 2, dlock.CmdExclusiveUnlock, dlock.AtomicState{Owner: 2}.State(), nil, nil)
	if r.Status != dlock.Success {
		t.Fatalf("unlock by the recovered owner: %v", r.Status)
	}
}

func TestMergeRW(t *testing.T) {
	tb := NewTable(Limits{})
	d := []byte("rw")
	sh := func(c int32, at uint32) int32 {
		return tb.Merge(c, d, dlock.RW, 5, 0, dlock.RWState{Timeout: at, RCount: 1}.State(), HoldShared, 0)
	}
	ex := func(c int32, at uint32) int32 {
		return tb.Merge(c, d, dlock.RW, 5, 0, dlock.RWState{Timeout: at, Owner: c}.State(), HoldExclusive, 0)
	}
	id := sh(1, 100)
	sh(2, 90)
	l := tb.Lock(id)
	if s := l.State().RW(); s.RCount != 2 || s.Timeout != 100 || s.Owner != 0 {
		t.Fatalf("two readers: %+v", s)
	}
	ex(3, 95) // older than the readers' period: ignored
	if s := l.State().RW(); s.Owner != 0 || s.RCount != 2 {
		t.Fatalf("older writer won: %+v", s)
	}
	ex(3, 110)
	if s := l.State().RW(); s.Owner != 3 || s.RCount != 0 {
		t.Fatalf("newer writer lost: %+v", s)
	}
	sh(4, 105) // older than the writer: ignored
	if s := l.State().RW(); s.Owner != 3 {
		t.Fatalf("older reader replaced the writer: %+v", s)
	}
	sh(4, 120)
	if s := l.State().RW(); s.Owner != 0 || s.RCount != 1 || s.Timeout != 120 {
		t.Fatalf("newer reader did not replace the writer: %+v", s)
	}
	ex(5, 0) // not held: ignored
	tb.Merge(6, d, dlock.RW, 5, 0, dlock.RWState{Timeout: 130, Owner: 7}.State(), HoldExclusive, 0)
	if s := l.State().RW(); s.Owner != 0 {
		t.Fatalf("foreign writer report won: %+v", s)
	}
	// The recovered reader releases its hold; the lock is free again.
	r, _ := l.Exec(200, 4, dlock.CmdSharedUnlock, dlock.LockState{}, nil, nil)
	if r.Status != dlock.Success || l.State().RW().RCount != 0 {
		t.Fatalf("reader unlock: %v %+v", r.Status, l.State().RW())
	}
}

func TestMergeFair(t *testing.T) {
	tb := NewTable(Limits{})
	d := []byte("fair")
	rep := func(c int32, f dlock.FairState, h Hold) int32 {
		return tb.Merge(c, d, dlock.Fair, 9, 0, f.State(), h, 0)
	}
	// Before the crash: c1 held exclusive at (Nx=3, Ns=2), c2 and c3 had
	// shared tickets behind it (tx=4, ts=2 and 3), Mx=4, Ms=4.
	id := rep(2, dlock.FairState{Nx: 3, Ns: 2, Mx: 4, Ms: 3, Timeout: 150}, TicketShared)
	l := tb.Lock(id)
	if s := l.fairState(); s.Nx != 3 || s.Mx != 4 || s.Ms != 3 || s.Timeout != 150 {
		t.Fatalf("fresh merge: %+v", s)
	}
	rep(1, dlock.FairState{Nx: 3, Ns: 2, Mx: 4, Ms: 2, Timeout: 160}, HoldExclusive)
	rep(3, dlock.FairState{Nx: 3, Ns: 2, Mx: 4, Ms: 4, Timeout: 155}, TicketShared)
	rep(4, dlock.FairState{}, HoldNone) // nothing held: ignored
	s := l.fairState()
	if s.Nx != 3 || s.Ns != 2 || s.Mx != 4 || s.Ms != 4 || s.Timeout != 160 || l.owner != 1 {
		t.Fatalf("merged: %+v owner %d", s, l.owner)
	}
	// Equal timeouts: counters move forward, never back.
	rep(5, dlock.FairState{Nx: 2, Ns: 2, Mx: 3, Ms: 1, Timeout: 160}, TicketExclusive)
	if s := l.fairState(); s.Nx != 3 || s.Mx != 4 || s.Ms != 4 {
		t.Fatalf("equal-timeout merge moved back: %+v", s)
	}
	tb.EndRecovery()
	if l.reports != nil {
		t.Fatal("reports kept after EndRecovery")
	}
	// The recovered owner unlocks; the shared tickets are then served.
	r, _ := l.Exec(170, 1, dlock.CmdExclusiveUnlock, dlock.FairState{Nx: 3, Ns: 2}.State(), nil, nil)
	if r.Status != dlock.Success {
		t.Fatalf("recovered owner unlock: %v", r.Status)
	}
	r, _ = l.Exec(170, 2, dlock.CmdSharedTicketTrylock, dlock.FairState{Mx: 4, Ms: 2, Timeout: 5}.State(), nil, nil)
	if r.Status != dlock.Success {
		t.Fatalf("ticket after recovery: %v", r.Status)
	}
}

func TestMergeFairShared(t *testing.T) {
	tb := NewTable(Limits{})
	d := []byte("fs")
	rep := func(c int32, f dlock.FairState, h Hold) {
		tb.Merge(c, d, dlock.Fair, 0, 0, f.State(), h, 0)
	}
	rep(1, dlock.FairState{Nx: 1, Ns: 0, Mx: 1, Ms: 2, Timeout: 100}, HoldShared)
	rep(2, dlock.FairState{Nx: 1, Ns: 0, Mx: 1, Ms: 2, Timeout: 100}, HoldShared)
	rep(2, dlock.FairState{Nx: 1, Ns: 0, Mx: 1, Ms: 2, Timeout: 100}, HoldShared) // duplicate
	// A newer report from a holder at a later position.
	rep(3, dlock.FairState{Nx: 1, Ns: 1, Mx: 1, Ms: 3, Timeout: 120, RFlag: true, RMs: 1}, HoldShared)
	var l *Lock
	tb.ForEach(func(_ int32, x *Lock) bool { l = x; return false })
	s := l.fairState()
	if s.Nx != 1 || s.Ns != 1 || s.Ms != 3 || s.Timeout != 120 || !s.RFlag || s.RCnt != 3 || len(l.shared) != 3 {
		t.Fatalf("shared merge: %+v holders %v", s, l.shared)
	}
	// An exclusive report at the merged position wins over the readers.
	rep(4, dlock.FairState{Nx: 1, Ns: 1, Mx: 2, Ms: 3, Timeout: 130}, HoldExclusive)
	if l.owner != 4 || l.f.rcnt != 0 || len(l.shared) != 0 {
		t.Fatalf("exclusive report: owner %d rcnt %d shared %v", l.owner, l.f.rcnt, l.shared)
	}
}

// TestMergeTwiceIsIdempotent: a client whose connection dropped during
// recovery uploads again; the second report of the same holds changes
// nothing (shared RW holds are not counted twice, FAIR holders stay).
func TestMergeTwiceIsIdempotent(t *testing.T) {
	cases := []struct {
		name string
		typ  dlock.LockType
		v    dlock.LockState
		hold Hold
	}{
		{"atomic", dlock.Atomic, dlock.AtomicState{Owner: 7, Timeout: 100}.State(), HoldExclusive},
		{"rw-exclusive", dlock.RW, dlock.RWState{Owner: 7, Timeout: 100}.State(), HoldExclusive},
		{"rw-shared", dlock.RW, dlock.RWState{Timeout: 100, RCount: 1}.State(), HoldShared},
		{"fair-exclusive", dlock.Fair, dlock.FairState{Nx: 3, Mx: 4, Timeout: 100}.State(), HoldExclusive},
		{"fair-shared", dlock.Fair, dlock.FairState{Nx: 3, Ms: 1, RCnt: 1, Timeout: 100}.State(), HoldShared},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := NewTable(Limits{})
			id := tb.Merge(7, []byte("l"), tc.typ, 1, 0, tc.v, tc.hold, 5)
			if id <= 0 {
				t.Fatalf("first merge = %d", id)
			}
			l := tb.Lock(id)
			st1 := l.State()
			ex1, sh1 := l.Holders(nil)
			sh1 = append([]int32(nil), sh1...)
			if id2 := tb.Merge(7, []byte("l"), tc.typ, 1, 0, tc.v, tc.hold, 5); id2 != id {
				t.Fatalf("second merge = %d, want %d", id2, id)
			}
			ex2, sh2 := l.Holders(nil)
			if st2 := l.State(); st2 != st1 || ex2 != ex1 || len(sh2) != len(sh1) {
				t.Fatalf("after a second merge: state %v holders %d %v; want %v %d %v", st2, ex2, sh2, st1, ex1, sh1)
			}
			if ex1 != 7 && (len(sh1) != 1 || sh1[0] != 7) {
				t.Fatalf("holder after merge: %d %v, want client 7", ex1, sh1)
			}
		})
	}
}

// TestHeldBy: the exclusive owner and every shared holder hold the lock,
// nobody else does.
func TestHeldBy(t *testing.T) {
	tb := NewTable(Limits{})
	ex := tb.Lock(tb.Merge(7, []byte("ex"), dlock.RW, 1, 0, dlock.RWState{Owner: 7, Timeout: 100}.State(), HoldExclusive, 0))
	sh := tb.Lock(tb.Merge(8, []byte("sh"), dlock.RW, 2, 0, dlock.RWState{Timeout: 100, RCount: 1}.State(), HoldShared, 0))
	tb.Merge(9, []byte("sh"), dlock.RW, 2, 0, dlock.RWState{Timeout: 100, RCount: 1}.State(), HoldShared, 0)
	for _, tc := range []struct {
		l      *Lock
		client int32
		want   bool
	}{{ex, 7, true}, {ex, 8, false}, {sh, 8, true}, {sh, 9, true}, {sh, 7, false}} {
		if got := tc.l.HeldBy(tc.client); got != tc.want {
			t.Errorf("%s.HeldBy(%d) = %v, want %v", tc.l.Descriptor(), tc.client, got, tc.want)
		}
	}
}
