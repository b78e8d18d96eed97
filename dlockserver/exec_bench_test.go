package dlockserver

import (
	"testing"

	"github.com/dlock-io/dlock"
)

// BenchmarkExecTryLockUnlock measures the server's CPU cost of one trylock
// and one unlock on an atomic lock, without the network: the state machine
// and what the server records around it, with the locking a request takes.
func BenchmarkExecTryLockUnlock(b *testing.B) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const client = 7
	s.mu.Lock()
	id, status := s.locks.Get(client, []byte("bench"), dlock.Atomic, 0, 0)
	s.mu.Unlock()
	if status != dlock.Success {
		b.Fatal(status)
	}
	arg := dlock.AtomicState{Owner: client, Timeout: 30}.State()
	b.ReportAllocs()
	for b.Loop() {
		for _, cmd := range [...]dlock.Cmd{dlock.CmdExclusiveTrylock, dlock.CmdExclusiveUnlock} {
			s.opLock()
			st := s.stripeOf(id)
			st.mu.Lock()
			r := st.exec(s.instant(), client, id, cmd, arg)
			st.mu.Unlock()
			s.opUnlock()
			if r.Status != dlock.Success {
				b.Fatal(r.Status)
			}
		}
	}
}
