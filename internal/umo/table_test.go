package umo

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/clientmap"
)

// mustCreate creates desc for client with a 10-second lease at time 0.
func mustCreate(tb testing.TB, tab *Table, client int32, desc string, preferred int32) int32 {
	tb.Helper()
	id, st := tab.Create(0, client, []byte(desc), preferred, 10, 0)
	if st != dlock.Success {
		tb.Fatalf("Create(%q) = %v", desc, st)
	}
	return id
}

func TestObjectLimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		lim  Limits
		want int
	}{
		{"default", Limits{}, dlock.MaxObjects},
		{"negative", Limits{MaxObjects: -1}, dlock.MaxObjects},
		{"small", Limits{MaxObjects: 5}, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := NewTable(tc.lim)
			var first int32
			for i := range tc.want {
				id, st := tab.Create(0, 1, []byte("obj-"+strconv.Itoa(i)), 0, 10, uint64(i))
				if st != dlock.Success {
					t.Fatalf("object %d of %d: %v", i+1, tc.want, st)
				}
				if i == 0 {
					first = id
				}
			}
			if got := tab.Len(); got != tc.want {
				t.Fatalf("Len = %d, want %d", got, tc.want)
			}
			if id, st := tab.Create(0, 2, []byte("one too many"), 0, 10, 0); st != dlock.ErrObjectTooMany || id != 0 {
				t.Fatalf("object %d: Create = %d, %v; want 0, %v", tc.want+1, id, st, dlock.ErrObjectTooMany)
			}
			// A destroyed object that is still referenced keeps its slot.
			if _, st := tab.Get(0, 2, []byte("obj-0"), 10); st != dlock.Success {
				t.Fatalf("Get = %v", st)
			}
			if st := tab.Destroy(0, 1, first); st != dlock.Success {
				t.Fatalf("Destroy = %v", st)
			}
			if _, st := tab.Create(0, 2, []byte("one too many"), 0, 10, 0); st != dlock.ErrObjectTooMany {
				t.Fatalf("with a destroyed-but-referenced object: Create = %v, want %v", st, dlock.ErrObjectTooMany)
			}
			if st := tab.Release(0, 2, first); st != dlock.Success {
				t.Fatalf("Release = %v", st)
			}
			if _, st := tab.Create(0, 2, []byte("one too many"), 0, 10, 0); st != dlock.Success {
				t.Fatalf("after the last release: Create = %v, want success", st)
			}
			if err := tab.check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestIDAllocation(t *testing.T) {
	t.Run("preferred", func(t *testing.T) {
		tab := NewTable(Limits{})
		desc := []byte("lock desc 1")
		if got, want := mustCreate(t, tab, 1, string(desc), int32(djb2(desc))), int32(1252963582); got != want {
			t.Fatalf("id = %d, want the hash %d", got, want)
		}
		if got := mustCreate(t, tab, 1, "max", maxID); got != maxID {
			t.Fatalf("id = %d, want %d", got, maxID)
		}
	})
	t.Run("cursor", func(t *testing.T) {
		tab := NewTable(Limits{})
		for i, tc := range []struct {
			preferred, want int32
		}{
			{0, 2}, // the cursor starts at 1 and is pre-incremented
			{-1, 3},
			{math.MinInt32, 4},
			{2, 5}, // taken
			{7, 7},
			{0, 6},
			{0, 8}, // 7 is taken
		} {
			if got := mustCreate(t, tab, 1, fmt.Sprint("obj", i), tc.preferred); got != tc.want {
				t.Errorf("create %d with preferred %d: id %d, want %d", i, tc.preferred, got, tc.want)
			}
		}
	})
	t.Run("wrap", func(t *testing.T) {
		tab := NewTable(Limits{})
		mustCreate(t, tab, 1, "two", 2)
		mustCreate(t, tab, 1, "top", maxID)
		tab.cursor = maxID - 2
		for i, want := range []int32{maxID - 1, 1, 3} {
			if got := mustCreate(t, tab, 1, fmt.Sprint("obj", i), 0); got != want {
				t.Errorf("create %d: id %d, want %d", i, got, want)
			}
		}
	})
	t.Run("exhausted", func(t *testing.T) {
		tab := NewTable(Limits{})
		tab.idMax = 3
		mustCreate(t, tab, 1, "a", 3)
		mustCreate(t, tab, 1, "b", 9) // beyond idMax: scanned → 2
		mustCreate(t, tab, 1, "c", 0) // → 1
		if id, st := tab.Create(0, 1, []byte("d"), 0, 10, 0); st != dlock.ErrServerNoResource || id != 0 {
			t.Fatalf("Create with no id left = %d, %v; want 0, %v", id, st, dlock.ErrServerNoResource)
		}
		if st := tab.Destroy(0, 1, 2); st != dlock.Success {
			t.Fatal(st)
		}
		if got := mustCreate(t, tab, 1, "d", 0); got != 2 {
			t.Fatalf("id = %d, want 2", got)
		}
		if err := tab.check(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestFetchAndAdd(t *testing.T) {
	for _, tc := range []struct {
		init, delta, wantNew uint64
	}{
		{0, 1, 1},
		{7, 0, 7},
		{math.MaxUint64, 1, 0},
		{math.MaxUint64 - 1, 3, 1},
		{5, math.MaxUint64, 4}, // adding 2^64-1 subtracts one
		{1 << 63, 1 << 63, 0},
	} {
		tab := NewTable(Limits{})
		id, _ := tab.Create(0, 1, []byte("v"), 0, 1, tc.init)
		old, st := tab.FetchAndAdd(id, tc.delta)
		if st != dlock.Success || old != tc.init {
			t.Errorf("FetchAndAdd(%d + %d) = %d, %v; want %d, success", tc.init, tc.delta, old, st, tc.init)
		}
		if v, _ := tab.Load(id); v != tc.wantNew {
			t.Errorf("%d + %d: value %d, want %d", tc.init, tc.delta, v, tc.wantNew)
		}
	}
}

func TestCompareAndSwap(t *testing.T) {
	for _, tc := range []struct {
		init, old, new uint64
		want           dlock.Status
		wantValue      uint64
	}{
		{0, 0, 1, dlock.Success, 1},
		{5, 5, 5, dlock.Success, 5},
		{5, 4, 9, dlock.ErrObjectCASFailed, 5},
		{math.MaxUint64, math.MaxUint64, 0, dlock.Success, 0},
		{0, math.MaxUint64, 3, dlock.ErrObjectCASFailed, 0},
	} {
		tab := NewTable(Limits{})
		id, _ := tab.Create(0, 1, []byte("v"), 0, 1, tc.init)
		if st := tab.CompareAndSwap(id, tc.old, tc.new); st != tc.want {
			t.Errorf("CAS(%d: %d→%d) = %v, want %v", tc.init, tc.old, tc.new, st, tc.want)
		}
		if v, _ := tab.Load(id); v != tc.wantValue {
			t.Errorf("CAS(%d: %d→%d): value %d, want %d", tc.init, tc.old, tc.new, v, tc.wantValue)
		}
	}
	tab := NewTable(Limits{})
	if st := tab.CompareAndSwap(1, 0, 0); st != dlock.ErrObjectNotGet {
		t.Errorf("CAS on an unknown id = %v, want %v", st, dlock.ErrObjectNotGet)
	}
}

func TestDeadline(t *testing.T) {
	for _, tc := range []struct{ now, lease, want uint32 }{
		{0, 1, 1},
		{100, 5, 105},
		{math.MaxUint32 - 5, 5, math.MaxUint32},
		{math.MaxUint32 - 5, 6, math.MaxUint32},
		{math.MaxUint32, math.MaxUint32, math.MaxUint32},
	} {
		if got := deadline(tc.now, tc.lease); got != tc.want {
			t.Errorf("deadline(%d, %d) = %d, want %d", tc.now, tc.lease, got, tc.want)
		}
	}
}

func TestInfo(t *testing.T) {
	tab := NewTable(Limits{})
	if _, ok := tab.Info(1); ok {
		t.Fatal("Info on an empty table reports an object")
	}
	id, _ := tab.Create(100, 4, []byte("info"), 0, 5, 9)
	tab.Get(101, 6, []byte("info"), 10)
	tab.Destroy(101, 4, id)
	got, ok := tab.Info(id)
	want := Info{ID: id, Desc: "info", Value: 9, Owner: 4, Refs: 1, MaxLease: 111, Destroyed: true}
	if !ok || got != want {
		t.Fatalf("Info = %+v, %t; want %+v, true", got, ok, want)
	}
}

// TestHotPathAllocs proves that the data-plane calls do not allocate.
func TestHotPathAllocs(t *testing.T) {
	tab := NewTable(Limits{})
	id := mustCreate(t, tab, 1, "counter", 0)
	for name, f := range map[string]func(){
		"FetchAndAdd":        func() { tab.FetchAndAdd(id, 1) },
		"FetchAndAdd/absent": func() { tab.FetchAndAdd(id+1, 1) },
		"CompareAndSwap":     func() { tab.CompareAndSwap(id, 1, 2) },
		"Load":               func() { tab.Load(id) },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
	// Looking a descriptor up does not copy it, and a client that gets and
	// releases an object in a loop reuses its index entries.
	desc := []byte("counter")
	if n := testing.AllocsPerRun(1000, func() { tab.Get(0, 1, desc, 10) }); n != 0 {
		t.Errorf("repeated Get: %v allocations per call, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { tab.Get(0, 2, desc, 10); tab.Release(0, 2, id) }); n != 0 {
		t.Errorf("Get+Release: %v allocations per cycle, want 0", n)
	}
}

// TestExhaustive runs every sequence of up to depth operations by two
// clients on one descriptor (create, get, release, destroy, remove, a clock
// tick, faa) and checks after each step that the table is consistent, that
// each call returns a status it may return, and that a failed call changes
// nothing (except ALREADY_CREATED, which extends the lease).
func TestExhaustive(t *testing.T) {
	const depth = 5
	desc := []byte("a")
	id := int32(djb2(desc))
	type op struct {
		name    string
		allowed []dlock.Status
		do      func(tab *Table, now *uint32) dlock.Status
	}
	var ops []op
	for _, c := range []int32{1, 2} {
		ops = append(ops,
			op{fmt.Sprintf("c%d create", c),
				[]dlock.Status{dlock.Success, dlock.ErrObjectAlreadyCreated, dlock.ErrObjectAlreadyExisted, dlock.ErrObjectAlreadyDestroyed},
				func(tab *Table, now *uint32) dlock.Status {
					got, st := tab.Create(*now, c, desc, id, 2, uint64(c)*100)
					if (st == dlock.Success) != (got == id) {
						return dlock.ErrBadResponse
					}
					return st
				}},
			op{fmt.Sprintf("c%d get", c),
				[]dlock.Status{dlock.Success, dlock.ErrObjectNotCreate, dlock.ErrObjectAlreadyDestroyed},
				func(tab *Table, now *uint32) dlock.Status {
					got, st := tab.Get(*now, c, desc, 2)
					if (st == dlock.Success) != (got == id) {
						return dlock.ErrBadResponse
					}
					return st
				}},
			op{fmt.Sprintf("c%d release", c),
				[]dlock.Status{dlock.Success, dlock.ErrObjectNotGet},
				func(tab *Table, now *uint32) dlock.Status { return tab.Release(*now, c, id) }},
			op{fmt.Sprintf("c%d destroy", c),
				[]dlock.Status{dlock.Success, dlock.ErrObjectNotCreate, dlock.ErrObjectInvalidOwner, dlock.ErrObjectAlreadyDestroyed},
				func(tab *Table, now *uint32) dlock.Status { return tab.Destroy(*now, c, id) }},
			op{fmt.Sprintf("remove c%d", c),
				[]dlock.Status{dlock.Success},
				func(tab *Table, now *uint32) dlock.Status { tab.RemoveClient(*now, c); return dlock.Success }},
		)
	}
	ops = append(ops,
		op{"tick", []dlock.Status{dlock.Success},
			func(tab *Table, now *uint32) dlock.Status { *now += 2; return dlock.Success }},
		op{"faa", []dlock.Status{dlock.Success, dlock.ErrObjectNotGet},
			func(tab *Table, now *uint32) dlock.Status { _, st := tab.FetchAndAdd(id, 1); return st }},
	)

	var seq []string
	var walk func(tab *Table, now uint32)
	n := 0
	walk = func(tab *Table, now uint32) {
		if len(seq) == depth {
			return
		}
		for _, o := range ops {
			next, nextNow := tab.clone(), now
			before := next.dump()
			st := o.do(next, &nextNow)
			n++
			seq = append(seq, o.name)
			fail := func(format string, args ...any) {
				t.Fatalf("after %s: %s", strings.Join(seq, "; "), fmt.Sprintf(format, args...))
			}
			if err := next.check(); err != nil {
				fail("inconsistent table: %v", err)
			}
			if !slices.Contains(o.allowed, st) {
				fail("status %v not allowed", st)
			}
			if st != dlock.Success && st != dlock.ErrObjectAlreadyCreated && st != dlock.ErrObjectCASFailed {
				if after := next.dump(); after != before {
					fail("failed with %v but changed the table:\n%s\nto\n%s", st, before, after)
				}
			}
			walk(next, nextNow)
			seq = seq[:len(seq)-1]
		}
	}
	walk(NewTable(Limits{}), 0)
	t.Logf("%d operations checked", n)
}

// clone returns a deep copy of t.
func (t *Table) clone() *Table {
	c := NewTable(Limits{MaxObjects: t.max})
	c.idMax, c.cursor = t.idMax, t.cursor
	for id, o := range t.byID {
		oc := *o
		oc.getters = clientmap.Map{}
		for g, d := range o.getters.All() {
			oc.getters.Set(g, d)
			c.index(c.got, g, id)
		}
		if o.owner != 0 {
			c.index(c.owned, o.owner, id)
		}
		c.byID[id] = &oc
		c.byDesc[oc.desc] = &oc
	}
	return c
}

// dump renders the whole table.
func (t *Table) dump() string {
	ids := make([]int32, 0, len(t.byID))
	for id := range t.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	fmt.Fprintf(&b, "cursor=%d\n", t.cursor)
	for _, id := range ids {
		fmt.Fprintf(&b, "%d %q %s\n", id, t.byID[id].desc, t.render(id))
	}
	return b.String()
}

func BenchmarkFetchAndAdd(b *testing.B) {
	tab := NewTable(Limits{})
	id := mustCreate(b, tab, 1, "counter", 0)
	b.ReportAllocs()
	for b.Loop() {
		tab.FetchAndAdd(id, 1)
	}
}

func BenchmarkCompareAndSwap(b *testing.B) {
	tab := NewTable(Limits{})
	id := mustCreate(b, tab, 1, "counter", 0)
	b.ReportAllocs()
	var v uint64
	for b.Loop() {
		tab.CompareAndSwap(id, v, v+1)
		v++
	}
}

func BenchmarkLoad(b *testing.B) {
	tab := NewTable(Limits{})
	id := mustCreate(b, tab, 1, "counter", 0)
	b.ReportAllocs()
	for b.Loop() {
		tab.Load(id)
	}
}

// BenchmarkFetchAndAddFull measures FetchAndAdd in a table at the object limit.
func BenchmarkFetchAndAddFull(b *testing.B) {
	tab := NewTable(Limits{})
	ids := make([]int32, dlock.MaxObjects)
	for i := range ids {
		ids[i] = mustCreate(b, tab, 1, "obj-"+strconv.Itoa(i), 0)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		tab.FetchAndAdd(ids[i%len(ids)], 1)
		i++
	}
}

func BenchmarkGetRelease(b *testing.B) {
	tab := NewTable(Limits{})
	desc := []byte("counter")
	id := mustCreate(b, tab, 1, string(desc), 0)
	b.ReportAllocs()
	for b.Loop() {
		tab.Get(0, 2, desc, 10)
		tab.Release(0, 2, id)
	}
}

func BenchmarkCreateDestroy(b *testing.B) {
	tab := NewTable(Limits{})
	desc := []byte("counter")
	b.ReportAllocs()
	for b.Loop() {
		id, _ := tab.Create(0, 1, desc, 0, 10, 0)
		tab.Destroy(0, 1, id)
	}
}
