package dlockserver

import (
	"fmt"
	"testing"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/wire"
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

// BenchmarkStateBatch31 measures the server's CPU cost of a batch of 31
// trylocks and the batch of 31 unlocks that releases them, through the
// state's batchLockOp (the stripes' mutexes included), without the network.
func BenchmarkStateBatch31(b *testing.B) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const cid = 7
	c := newConn(s, nil, 1)
	c.client = &client{id: cid}
	var lock, unlock wire.BatchLockOp
	arg := dlock.AtomicState{Owner: cid, Timeout: 30}.State()
	s.mu.Lock()
	for i := range dlock.MaxBatch {
		id, status := s.locks.Get(cid, fmt.Appendf(nil, "batch-%d", i), dlock.Atomic, 0, 0)
		if status != dlock.Success {
			s.mu.Unlock()
			b.Fatal(status)
		}
		lock.Items[i] = wire.LockOp{LockID: id, Cmd: uint8(dlock.CmdExclusiveTrylock), Arg: arg}
		unlock.Items[i] = wire.LockOp{LockID: id, Cmd: uint8(dlock.CmdExclusiveUnlock), Arg: arg}
	}
	s.mu.Unlock()
	lock.N, unlock.N = dlock.MaxBatch, dlock.MaxBatch
	var res wire.BatchLockResult
	var out outbox
	b.ReportAllocs()
	for b.Loop() {
		s.batchLockOp(s.instant(), c, &lock, &res, &out)
		if st := dlock.Status(res.Items[30].Status); st != dlock.Success {
			b.Fatal(st)
		}
		s.batchLockOp(s.instant(), c, &unlock, &res, &out)
		if st := dlock.Status(res.Items[30].Status); st != dlock.Success {
			b.Fatal(st)
		}
	}
}
