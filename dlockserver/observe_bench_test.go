package dlockserver

import (
	"fmt"
	"testing"

	"github.com/dlock-io/dlock"
)

// BenchmarkObserveFull measures one metrics snapshot of a server with the
// maximum number of locks: the time requests wait while it is taken.
func BenchmarkObserveFull(b *testing.B) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	s.mu.Lock()
	for i := range dlock.MaxLocks {
		if _, st := s.locks.Get(1, []byte(fmt.Sprintf("lock/%06d", i)), dlock.LockType(i%3), 0, 0); st != dlock.Success {
			b.Fatal(st)
		}
	}
	s.mu.Unlock()
	for b.Loop() {
		s.Observe()
	}
}
