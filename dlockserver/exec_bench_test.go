package dlockserver

import (
	"testing"

	"github.com/dlock-io/dlock"
)

// BenchmarkExecTryLockUnlock measures the server's CPU cost of one trylock
// and one unlock on an atomic lock, without the network: the state machine
// and what the server records around it (BenchmarkStateParallel adds the
// locking a request takes).
func BenchmarkExecTryLockUnlock(b *testing.B) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const client = 7
	s.mu.Lock()
	defer s.mu.Unlock()
	id, status := s.locks.Get(client, []byte("bench"), dlock.Atomic, 0, 0)
	if status != dlock.Success {
		b.Fatal(status)
	}
	st := s.stripeOf(id)
	arg := dlock.AtomicState{Owner: client, Timeout: 30}.State()
	var out outbox
	b.ReportAllocs()
	for b.Loop() {
		at := s.instant()
		if r := st.exec(at, client, id, dlock.CmdExclusiveTrylock, arg, &out); r.Status != dlock.Success {
			b.Fatal(r.Status)
		}
		if r := st.exec(at, client, id, dlock.CmdExclusiveUnlock, arg, &out); r.Status != dlock.Success {
			b.Fatal(r.Status)
		}
	}
}
