package dlockserver

import (
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

// TestStripesPartitionTheState: a request on a lock of one stripe goes
// through while another stripe is held, and a transition (Server.mu)
// waits for every stripe.
func TestStripesPartitionTheState(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const client = 7
	s.mu.Lock()
	a, _ := s.locks.Get(client, []byte("a"), dlock.Atomic, 0, 0)
	b, _ := s.locks.Get(client, []byte("b"), dlock.Atomic, 0, 0)
	s.mu.Unlock()
	sa, sb := s.stripeOf(a), s.stripeOf(b)
	if sa == sb {
		t.Fatalf("locks %d and %d share a stripe", a, b)
	}
	sa.mu.Lock() // a request on a, in progress
	done := make(chan dlock.Status)
	go func() {
		s.opLock(sb)
		r := sb.exec(s.instant(), client, b, dlock.CmdExclusiveTrylock, dlock.AtomicState{Owner: client, Timeout: 30}.State())
		s.opUnlock(sb)
		done <- r.Status
	}()
	select {
	case st := <-done:
		if st != dlock.Success {
			t.Fatalf("trylock on b: %v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a request on lock b waited for the stripe of lock a")
	}
	locked := make(chan struct{})
	go func() {
		s.mu.Lock()
		close(locked)
		s.mu.Unlock()
	}()
	select {
	case <-locked:
		t.Fatal("Server.mu was taken while a stripe was held")
	case <-time.After(50 * time.Millisecond):
	}
	sa.mu.Unlock()
	select {
	case <-locked:
	case <-time.After(10 * time.Second):
		t.Fatal("Server.mu not taken after the stripe was released")
	}
}
