package umo

import "testing"

// TestLeases: the set answers the same below and above the size at which
// it moves from its slice to a map; set renews a deadline; del, reset and
// the iterators work in both forms.
func TestLeases(t *testing.T) {
	var l leases
	const n = 3 * smallLeases
	for c := int32(1); c <= n; c++ {
		l.set(c, 1)
		l.set(c, uint32(100+c)) // renewed
		if l.len() != int(c) {
			t.Fatalf("after %d clients: len %d", c, l.len())
		}
		seen := 0
		for g, d := range l.all() {
			if d != uint32(100+g) || g < 1 || g > c {
				t.Fatalf("with %d clients: all yields %d@%d", c, g, d)
			}
			seen++
		}
		for range l.clients() {
			seen--
		}
		if seen != 0 {
			t.Fatalf("with %d clients: all and clients disagree", c)
		}
		if _, ok := l.get(c + 1); ok {
			t.Fatalf("get(%d) found a client never set", c+1)
		}
	}
	for c := int32(1); c <= n; c += 2 {
		l.del(c)
	}
	for c := int32(1); c <= n; c++ {
		d, ok := l.get(c)
		if ok != (c%2 == 0) || (ok && d != uint32(100+c)) {
			t.Fatalf("after deleting the odd clients: get(%d) = %d, %v", c, d, ok)
		}
	}
	l.reset()
	if l.len() != 0 || l.many != nil {
		t.Fatalf("after reset: %+v", l)
	}
	for c := int32(1); c <= smallLeases; c++ {
		l.set(c, 5)
	}
	l.del(2)
	if l.many != nil || l.len() != smallLeases-1 {
		t.Fatalf("small set after a del: %+v", l)
	}
}
