package clientmap

import "testing"

// TestAdd: the map answers the same below and above the size at which it
// moves from its slice to a map, a client added twice keeps its first
// value, and removals work in both forms.
func TestAdd(t *testing.T) {
	var r Map
	const n = 3 * Small
	for c := int32(1); c <= n; c++ {
		r.Add(c, uint32(100+c))
		r.Add(c, 999) // a repeated add keeps the first value
		if r.Len() != int(c) {
			t.Fatalf("after adding %d clients: len %d", c, r.Len())
		}
		for d := int32(1); d <= n+1; d++ {
			v, ok := r.Get(d)
			if want := d <= c; ok != want || (ok && v != uint32(100+d)) {
				t.Fatalf("with %d clients: Get(%d) = %d, %v", c, d, v, ok)
			}
		}
	}
	for c := int32(1); c <= n; c += 2 {
		r.Delete(c)
	}
	for c := int32(1); c <= n; c++ {
		if r.Has(c) != (c%2 == 0) {
			t.Fatalf("after removing the odd clients: Has(%d) = %v", c, r.Has(c))
		}
	}
	if r.Len() != n/2 {
		t.Fatalf("len %d, want %d", r.Len(), n/2)
	}
	var small Map
	for c := int32(1); c <= Small; c++ {
		small.Add(c, 1)
	}
	small.Delete(3)
	small.Delete(3)
	if small.many != nil || small.Len() != Small-1 || small.Has(3) || !small.Has(Small) {
		t.Fatalf("small map after removals: %+v", small)
	}
}

// TestSet: Set renews a value; Delete, Reset and the iterators work in
// both forms.
func TestSet(t *testing.T) {
	var l Map
	const n = 3 * Small
	for c := int32(1); c <= n; c++ {
		l.Set(c, 1)
		l.Set(c, uint32(100+c)) // renewed
		if l.Len() != int(c) {
			t.Fatalf("after %d clients: len %d", c, l.Len())
		}
		seen := 0
		for g, d := range l.All() {
			if d != uint32(100+g) || g < 1 || g > c {
				t.Fatalf("with %d clients: All yields %d@%d", c, g, d)
			}
			seen++
		}
		for range l.Clients() {
			seen--
		}
		if seen != 0 {
			t.Fatalf("with %d clients: All and Clients disagree", c)
		}
		if _, ok := l.Get(c + 1); ok {
			t.Fatalf("Get(%d) found a client never set", c+1)
		}
	}
	for c := int32(1); c <= n; c += 2 {
		l.Delete(c)
	}
	for c := int32(1); c <= n; c++ {
		d, ok := l.Get(c)
		if ok != (c%2 == 0) || (ok && d != uint32(100+c)) {
			t.Fatalf("after deleting the odd clients: Get(%d) = %d, %v", c, d, ok)
		}
	}
	l.Reset()
	if l.Len() != 0 || l.many != nil {
		t.Fatalf("after Reset: %+v", l)
	}
	for c := int32(1); c <= Small; c++ {
		l.Set(c, 5)
	}
	l.Delete(2)
	if l.many != nil || l.Len() != Small-1 {
		t.Fatalf("small map after a Delete: %+v", l)
	}
}
