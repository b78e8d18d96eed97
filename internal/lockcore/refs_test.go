package lockcore

import "testing"

// TestRefSet: the set answers the same below and above the size at which
// it moves from its slice to a map, a client keeps its first lease, and
// removals work in both forms.
func TestRefSet(t *testing.T) {
	var r refSet
	const n = 3 * smallRefs
	for c := int32(1); c <= n; c++ {
		r.add(c, uint32(100+c))
		r.add(c, 999) // a repeated add keeps the first lease
		if r.len() != int(c) {
			t.Fatalf("after adding %d clients: len %d", c, r.len())
		}
		for d := int32(1); d <= n+1; d++ {
			lease, ok := r.get(d)
			if want := d <= c; ok != want || (ok && lease != uint32(100+d)) {
				t.Fatalf("with %d clients: get(%d) = %d, %v", c, d, lease, ok)
			}
		}
	}
	for c := int32(1); c <= n; c += 2 {
		r.remove(c)
	}
	for c := int32(1); c <= n; c++ {
		if r.has(c) != (c%2 == 0) {
			t.Fatalf("after removing the odd clients: has(%d) = %v", c, r.has(c))
		}
	}
	if r.len() != n/2 {
		t.Fatalf("len %d, want %d", r.len(), n/2)
	}
	var small refSet
	for c := int32(1); c <= smallRefs; c++ {
		small.add(c, 1)
	}
	small.remove(3)
	small.remove(3)
	if small.many != nil || small.len() != smallRefs-1 || small.has(3) || !small.has(smallRefs) {
		t.Fatalf("small set after removals: %+v", small)
	}
}
