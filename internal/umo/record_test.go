package umo

import (
	"strings"
	"testing"

	"github.com/dlock-io/dlock"
)

// TestExportImport: a table rebuilt from the records of another behaves
// the same: values, owners, getters (Release), destroyed objects, and a
// removed client's objects.
func TestExportImport(t *testing.T) {
	a := NewTable(Limits{})
	x := mustCreate(t, a, 1, "x", 0)
	y := mustCreate(t, a, 2, "y", 0)
	if _, st := a.Get(10, 1, []byte("x"), 30); st != dlock.Success {
		t.Fatal(st)
	}
	if _, st := a.Get(10, 3, []byte("y"), 30); st != dlock.Success {
		t.Fatal(st)
	}
	a.FetchAndAdd(x, 5)
	if st := a.Destroy(10, 2, y); st != dlock.Success {
		t.Fatal(st)
	}
	b := NewTable(Limits{})
	for _, id := range []int32{x, y} {
		r, ok := a.Export(id)
		if !ok || !b.Import(r) {
			t.Fatalf("object %d: export %v", id, ok)
		}
		if b.Import(r) {
			t.Fatalf("object %d imported twice", id)
		}
	}
	if _, ok := a.Export(999); ok {
		t.Fatal("exported an unknown object")
	}
	if err := b.check(); err != nil {
		t.Fatal(err)
	}
	// (The id cursor is not part of an object: it may differ.)
	if da, db := a.dump(), b.dump(); da[strings.Index(da, "\n"):] != db[strings.Index(db, "\n"):] {
		t.Fatalf("rebuilt table differs:\n%s\nwant\n%s", b.dump(), a.dump())
	}
	if v, _ := b.Load(x); v != 5 {
		t.Fatalf("value %d, want 5", v)
	}
	if st := b.Release(11, 1, x); st != dlock.Success {
		t.Fatalf("release by a restored getter: %v", st)
	}
	if got := b.Touched(3); len(got) != 1 || got[0] != y {
		t.Fatalf("Touched(3) = %v", got)
	}
	b.RemoveClient(11, 3) // y destroyed, its last getter gone: freed
	if _, ok := b.Export(y); ok {
		t.Fatal("destroyed object outlived its last getter")
	}
	for _, bad := range []Record{{ID: 0, Desc: "z"}, {ID: 5, Desc: ""}, {ID: 6, Desc: "z", Getters: map[int32]uint32{0: 1}}} {
		if b.Import(bad) {
			t.Fatalf("imported %+v", bad)
		}
	}
}
