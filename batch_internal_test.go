package dlock

import (
	"math/rand/v2"
	"testing"
)

// TestLockSet: a batch's handles are locked in id order, each handle once
// however often it appears (the entries of a repeated handle are marked),
// and two handles with the same id both; unlock lets every one go.
func TestLockSet(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		n := 1 + r.IntN(MaxBatch)
		pool := make([]*Lock, 1+r.IntN(n))
		for i := range pool {
			pool[i] = &Lock{}
			pool[i].e.id = int32(r.IntN(8)) - 2 // few ids (negative too): handles share them
		}
		locks := make([]*Lock, n)
		distinct := map[*Lock]bool{}
		for i := range locks {
			if r.IntN(10) == 0 {
				continue // nil entries are skipped
			}
			locks[i] = pool[r.IntN(len(pool))]
			distinct[locks[i]] = true
		}
		var ls lockSet
		ls.lock(locks)
		var repeated uint32
		for i, l := range locks {
			for j, o := range locks {
				if l != nil && i != j && o == l {
					repeated |= 1 << i
				}
			}
		}
		if ls.repeated != repeated {
			t.Fatalf("round %d: repeated %b, want %b", round, ls.repeated, repeated)
		}
		if ls.n != len(distinct) {
			t.Fatalf("round %d: %d handles locked, want %d", round, ls.n, len(distinct))
		}
		for i := 0; i < ls.n; i++ {
			l := ls.sorted[i]
			if !distinct[l] || (i > 0 && ls.sorted[i-1].e.id > l.e.id) {
				t.Fatalf("round %d: sorted %v", round, ls.sorted[:ls.n])
			}
			delete(distinct, l)
			if l.mu.TryLock() {
				t.Fatalf("round %d: handle %d not locked", round, i)
			}
		}
		ls.unlock()
		for _, l := range pool {
			if !l.mu.TryLock() {
				t.Fatalf("round %d: a handle is still locked", round)
			}
			l.mu.Unlock()
		}
	}
}
