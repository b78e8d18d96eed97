package dlockserver

import (
	"testing"

	"github.com/dlock-io/dlock"
)

// BenchmarkExecTryLockUnlock measures the server's CPU cost of one trylock
// and one unlock on an atomic lock, without the network: the state machine
// and what the server records around it.
func BenchmarkExecTryLockUnlock(b *testing.B) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const client = 7
	s.mu.Lock()
	defer s.mu.Unlock()
	id, st := s.locks.Get(client, []byte("bench"), dlock.Atomic, 0, 0)
	if st != dlock.Success {
		b.Fatal(st)
	}
	arg := dlock.AtomicState{Owner: client, Timeout: 30}.State()
	b.ReportAllocs()
	for b.Loop() {
		now := s.now()
		if r := s.exec(now, client, id, dlock.CmdExclusiveTrylock, arg); r.Status != dlock.Success {
			b.Fatal(r.Status)
		}
		if r := s.exec(now, client, id, dlock.CmdExclusiveUnlock, arg); r.Status != dlock.Success {
			b.Fatal(r.Status)
		}
	}
}
