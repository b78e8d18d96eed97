package lockcore

import (
	"testing"

	"github.com/dlock-io/dlock"
)

func TestTableGet(t *testing.T) {
	tb := NewTable(Limits{})
	id, st := tb.Get(1, []byte("lock desc 1"), dlock.Fair, 1252963582, 60)
	if st != dlock.Success || id != 1252963582 {
		t.Fatalf("Get = %d, %v", id, st)
	}
	// Idempotent per client; another client shares the lock.
	if id2, st := tb.Get(1, []byte("lock desc 1"), dlock.Fair, 5, 61); st != dlock.Success || id2 != id {
		t.Fatalf("second Get = %d, %v", id2, st)
	}
	if lease, ok := tb.Lease(1, id); !ok || lease != 60 {
		t.Fatalf("lease %d %v", lease, ok)
	}
	if id2, st := tb.Get(2, []byte("lock desc 1"), dlock.Fair, 0, 0); st != dlock.Success || id2 != id {
		t.Fatalf("Get by c2 = %d, %v", id2, st)
	}
	// Type mismatch.
	if _, st := tb.Get(3, []byte("lock desc 1"), dlock.Atomic, 0, 0); st != dlock.ErrGeneric {
		t.Fatalf("type mismatch: %v", st)
	}
	if tb.Has(3, id) {
		t.Fatal("mismatching Get added a reference")
	}
	// Invalid descriptors and types.
	for _, d := range [][]byte{nil, {}, make([]byte, dlock.MaxDescLen+1)} {
		if _, st := tb.Get(1, d, dlock.Atomic, 0, 0); st != dlock.ErrInval {
			t.Fatalf("len %d: %v", len(d), st)
		}
	}
	if _, st := tb.Get(1, make([]byte, dlock.MaxDescLen), dlock.Atomic, 0, 0); st != dlock.Success {
		t.Fatalf("512-byte descriptor: %v", st)
	}
	if _, st := tb.Get(1, []byte("x"), dlock.LockType(3), 0, 0); st != dlock.ErrInval {
		t.Fatalf("invalid type: %v", st)
	}
	l := tb.Lock(id)
	if l == nil || l.ID() != id || l.Descriptor() != "lock desc 1" || l.Type() != dlock.Fair || l.Refs() != 2 {
		t.Fatalf("lock %+v", l)
	}
	if tb.Lock(12345) != nil || tb.Has(1, 12345) {
		t.Fatal("unknown id found")
	}
	if _, ok := tb.Lease(9, id); ok {
		t.Fatal("lease of a non-referencing client")
	}
	if _, ok := tb.Lease(1, 777); ok {
		t.Fatal("lease of an unknown lock")
	}
	if tb.Len() != 2 {
		t.Fatalf("Len %d", tb.Len())
	}
}

func TestTableIDAllocation(t *testing.T) {
	tb := NewTable(Limits{})
	get := func(desc string, pref int32) int32 {
		t.Helper()
		id, st := tb.Get(1, []byte(desc), dlock.Atomic, pref, 0)
		if st != dlock.Success {
			t.Fatalf("Get %q: %v", desc, st)
		}
		return id
	}
	if id := get("a", 0); id != 2 {
		t.Fatalf("first scanned id = %d, want 2", id)
	}
	if id := get("b", -5); id != 3 {
		t.Fatalf("negative preferred → %d, want 3", id)
	}
	if id := get("c", 4); id != 4 {
		t.Fatalf("preferred free → %d", id)
	}
	// Preferred in use: the scan continues from the cursor (3 → 4 used → 5).
	if id := get("d", 4); id != 5 {
		t.Fatalf("preferred used → %d, want 5", id)
	}
	if id := get("e", 1); id != 1 {
		t.Fatalf("preferred 1 → %d", id)
	}
	// Wrap: with a small id space the scan wraps once to 1.
	tb = NewTable(Limits{})
	tb.maxID = 4
	for i, want := range []int32{2, 3, 4, 1} {
		if id := get(string(rune('a'+i)), 0); id != want {
			t.Fatalf("id %d = %d, want %d", i, id, want)
		}
	}
	if _, st := tb.Get(1, []byte("z"), dlock.Atomic, 0, 0); st != dlock.ErrServerNoResource {
		t.Fatalf("no id left: %v", st)
	}
	// A preferred id above the id space is ignored.
	tb.Release(0, 1, 3, nil)
	if id := get("y", 9); id != 3 {
		t.Fatalf("after release: %d", id)
	}
}

func TestTableLimit(t *testing.T) {
	tb := NewTable(Limits{MaxLocks: 3})
	for i := range 3 {
		if _, st := tb.Get(1, []byte{byte('a' + i)}, dlock.RW, 0, 0); st != dlock.Success {
			t.Fatal(st)
		}
	}
	if _, st := tb.Get(1, []byte("d"), dlock.RW, 0, 0); st != dlock.ErrServerNoResource {
		t.Fatalf("over the limit: %v", st)
	}
	// An existing descriptor is still found.
	if _, st := tb.Get(2, []byte("a"), dlock.RW, 0, 0); st != dlock.Success {
		t.Fatalf("existing at the limit: %v", st)
	}
	if NewTable(Limits{}).max != dlock.MaxLocks {
		t.Fatal("default limit")
	}
}

func TestTableDefaultLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 51200 locks")
	}
	tb := NewTable(Limits{})
	buf := make([]byte, 0, 16)
	for i := range dlock.MaxLocks {
		buf = append(buf[:0], byte(i), byte(i>>8), byte(i>>16))
		if _, st := tb.Get(1, buf, dlock.Atomic, int32(i+1), 0); st != dlock.Success {
			t.Fatalf("lock %d: %v", i+1, st)
		}
	}
	if _, st := tb.Get(1, []byte("one more"), dlock.Atomic, 0, 0); st != dlock.ErrServerNoResource {
		t.Fatalf("51201st: %v", st)
	}
}

func TestTableRelease(t *testing.T) {
	tb := NewTable(Limits{})
	id, _ := tb.Get(1, []byte("r"), dlock.RW, 0, 0)
	tb.Get(2, []byte("r"), dlock.RW, 0, 0)
	l := tb.Lock(id)
	l.Exec(10, 1, dlock.CmdSharedTrylock, dlock.LockState{}, nil, nil)
	l.Acquire(10, Waiter{Tag: 5, Client: 2, Mode: dlock.Exclusive}, nil, nil)
	if st, _ := tb.Release(10, 3, id, nil); st != dlock.ErrGeneric {
		t.Fatalf("release without reference: %v", st)
	}
	if st, _ := tb.Release(10, 1, 999, nil); st != dlock.ErrGeneric {
		t.Fatalf("release of unknown lock: %v", st)
	}
	// Releasing c1 drops its shared hold: c2's queued writer goes.
	st, wake := tb.Release(10, 1, id, nil)
	if st != dlock.Success || len(wake) != 1 || wake[0].Tag != 5 || wake[0].Reply.Status != dlock.Success {
		t.Fatalf("release c1: %v %+v", st, wake)
	}
	if tb.Has(1, id) || !tb.Has(2, id) || tb.Lock(id) == nil {
		t.Fatal("references")
	}
	if st, _ := tb.Release(10, 1, id, nil); st != dlock.ErrGeneric {
		t.Fatalf("second release: %v", st)
	}
	st, _ = tb.Release(10, 2, id, nil)
	if st != dlock.Success || tb.Lock(id) != nil || tb.Len() != 0 {
		t.Fatalf("last release: %v, lock kept", st)
	}
	// A fresh lock with the same descriptor starts free.
	id2, _ := tb.Get(3, []byte("r"), dlock.RW, 0, 0)
	if s := tb.Lock(id2).State().RW(); s.RCount != 0 || s.Owner != 0 {
		t.Fatalf("recreated lock not free: %+v", s)
	}
}

func TestTableDeleteAnswersWaiters(t *testing.T) {
	tb := NewTable(Limits{})
	id, _ := tb.Get(1, []byte("w"), dlock.Atomic, 0, 0)
	l := tb.Lock(id)
	l.Exec(10, 1, dlock.CmdExclusiveTrylock, dlock.AtomicState{Owner: 1, Timeout: 100}.State(), nil, nil)
	// A waiter from a client without a reference (the server should not let
	// that happen, but the lock must not strand it).
	l.Acquire(10, Waiter{Tag: 8, Client: 7, Expire: 5}, nil, nil)
	l.Acquire(10, Waiter{Tag: 9, Client: 8, Expire: 5}, nil, nil)
	l.Acquire(10, Waiter{Tag: 10, Client: 1, Expire: 5}, nil, nil)
	st, wake := tb.Release(10, 1, id, nil)
	if st != dlock.Success || len(wake) != 2 {
		t.Fatalf("%v %+v", st, wake)
	}
	// Dropping c1's hold granted c7's waiter and cancelled c1's own; deleting
	// the lock answered c8's.
	if wake[0].Tag != 8 || wake[0].Reply.Status != dlock.Success {
		t.Fatalf("wake[0] %+v", wake[0])
	}
	if wake[1].Tag != 9 || wake[1].Reply.Status != dlock.ErrLockNotGet {
		t.Fatalf("wake[1] %+v", wake[1])
	}
	if tb.Lock(id) != nil {
		t.Fatal("lock kept")
	}
}

func TestTableRemoveClient(t *testing.T) {
	tb := NewTable(Limits{})
	a, _ := tb.Get(1, []byte("a"), dlock.Atomic, 0, 0)
	b, _ := tb.Get(1, []byte("b"), dlock.Fair, 0, 0)
	c, _ := tb.Get(1, []byte("c"), dlock.RW, 0, 0)
	tb.Get(2, []byte("b"), dlock.Fair, 0, 0)
	tb.Get(2, []byte("c"), dlock.RW, 0, 0)
	tb.Lock(a).Exec(10, 1, dlock.CmdExclusiveTrylock, dlock.AtomicState{Owner: 1, Timeout: 100}.State(), nil, nil)
	tb.Lock(b).Exec(10, 1, dlock.CmdExclusiveTrylock, dlock.LockState{}, nil, nil)
	tb.Lock(c).Exec(10, 1, dlock.CmdExclusiveTrylock, dlock.RWState{Owner: 1}.State(), nil, nil)
	tb.Lock(b).Acquire(10, Waiter{Tag: 1, Client: 2, Mode: dlock.Shared, Expire: 5}, nil, nil)
	tb.Lock(c).Acquire(10, Waiter{Tag: 2, Client: 2, Mode: dlock.Shared}, nil, nil)
	if got := tb.ClientLocks(1, nil); len(got) != 3 || got[0] > got[1] || got[1] > got[2] {
		t.Fatalf("ClientLocks %v", got)
	}
	wake := tb.RemoveClient(10, 1, nil)
	if len(wake) != 2 {
		t.Fatalf("wake %+v", wake)
	}
	for _, g := range wake {
		if g.Client != 2 || g.Reply.Status != dlock.Success {
			t.Fatalf("grant %+v", g)
		}
	}
	if tb.Lock(a) != nil || tb.Len() != 2 || tb.Has(1, b) || len(tb.ClientLocks(1, nil)) != 0 {
		t.Fatal("client not removed")
	}
	var ids []int32
	tb.ForEach(func(id int32, l *Lock) bool {
		ids = append(ids, id)
		return true
	})
	if len(ids) != 2 || ids[0] > ids[1] {
		t.Fatalf("ForEach %v", ids)
	}
	n := 0
	tb.ForEach(func(int32, *Lock) bool { n++; return false })
	if n != 1 {
		t.Fatal("ForEach did not stop")
	}
	if wake := tb.RemoveClient(10, 42, nil); len(wake) != 0 {
		t.Fatal("unknown client")
	}
}

func TestTokens(t *testing.T) {
	tb := NewTable(Limits{})
	id, _ := tb.Get(1, []byte("t"), dlock.Atomic, 0, 0)
	tb.RaiseTokens(1000)
	tb.RaiseTokens(10) // never lowers
	r, _ := tb.Lock(id).Exec(1, 1, dlock.CmdExclusiveTrylock, dlock.AtomicState{Owner: 1, Timeout: 5}.State(), nil, nil)
	if r.Token != 1001 || tb.Tokens().Last() != 1001 {
		t.Fatalf("token %d last %d", r.Token, tb.Tokens().Last())
	}
}

// TestTableOpenReleaseAllocs: a client that opens a new lock and releases
// it again, one at a time, costs the table the lock and its name (three
// allocations with the lock's first reference), not a new per-client set
// each time; the client's set is still gone once it has no lock open.
func TestTableOpenReleaseAllocs(t *testing.T) {
	tb := NewTable(Limits{})
	names := make([][]byte, 64)
	for i := range names {
		names[i] = []byte{'n', byte('0' + i/10), byte('0' + i%10)}
	}
	i := 0
	cycle := func() {
		id, st := tb.Get(3, names[i%len(names)], dlock.Atomic, 0, 0)
		i++
		if st != dlock.Success {
			t.Fatal(st)
		}
		if st, _ := tb.Release(0, 3, id, nil); st != dlock.Success {
			t.Fatal(st)
		}
	}
	cycle()
	if n := testing.AllocsPerRun(200, cycle); n > 3 {
		t.Errorf("%.1f allocations per open + release, want ≤ 3 (the lock, its name, its reference)", n)
	}
	if got := tb.ClientLocks(3, nil); len(got) != 0 {
		t.Errorf("client 3 references %v after releasing everything", got)
	}
	// A set taken from the spare starts empty.
	a, _ := tb.Get(4, []byte("a"), dlock.Atomic, 0, 0)
	b, _ := tb.Get(5, []byte("b"), dlock.Atomic, 0, 0)
	if got := tb.ClientLocks(4, nil); len(got) != 1 || got[0] != a {
		t.Errorf("client 4 references %v, want [%d]", got, a)
	}
	if got := tb.ClientLocks(5, nil); len(got) != 1 || got[0] != b {
		t.Errorf("client 5 references %v, want [%d]", got, b)
	}
}
