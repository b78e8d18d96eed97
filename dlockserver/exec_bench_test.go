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

// BenchmarkStateOpenLockOp measures the server's CPU cost of the first use
// of a lock: an open-and-trylock (TOpenLockOp) of a lock nobody has open,
// then its unlock and release, through the state's transitions, without
// the network. Compare with BenchmarkStateTryLockUnlock.
func BenchmarkStateOpenLockOp(b *testing.B) {
	s, c := benchStateConn(b)
	arg := dlock.AtomicState{Owner: c.client.id, Timeout: 30}.State()
	names := make([][]byte, 4096)
	for i := range names {
		names[i] = fmt.Appendf(nil, "open-%d", i)
	}
	var out outbox
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		desc := names[i%len(names)]
		i++
		id := int32(uint32(dlockDJB2(desc)) & 0x7FFFFFFF)
		m := wire.OpenLockOp{
			Op:   wire.LockOp{LockID: id, Cmd: uint8(dlock.CmdExclusiveTrylock), Arg: arg},
			Open: wire.GetLock{Preferred: id, Type: uint8(dlock.Atomic), Desc: desc},
		}
		if res := s.openLockOp(s.instant(), c, 1, &m, &out); !res.ran || res.r.Status != dlock.Success {
			b.Fatal(res)
		}
		u := wire.LockOp{LockID: id, Cmd: uint8(dlock.CmdExclusiveUnlock), Arg: arg}
		if r, _ := s.lockOp(s.instant(), c, 2, &u, &out); r.Status != dlock.Success {
			b.Fatal(r.Status)
		}
		if st := s.releaseOne(s.instant(), c, &wire.ID{ID: id}, &out); st != dlock.Success {
			b.Fatal(st)
		}
	}
}

// BenchmarkStateTryLockUnlock is a trylock and an unlock through the
// state's lockOp (a lock the client has open), for comparison.
func BenchmarkStateTryLockUnlock(b *testing.B) {
	s, c := benchStateConn(b)
	arg := dlock.AtomicState{Owner: c.client.id, Timeout: 30}.State()
	s.mu.Lock()
	id, status := s.locks.Get(c.client.id, []byte("trylock"), dlock.Atomic, 0, 0)
	s.mu.Unlock()
	if status != dlock.Success {
		b.Fatal(status)
	}
	var out outbox
	b.ReportAllocs()
	for b.Loop() {
		m := wire.LockOp{LockID: id, Cmd: uint8(dlock.CmdExclusiveTrylock), Arg: arg}
		if r, _ := s.lockOp(s.instant(), c, 1, &m, &out); r.Status != dlock.Success {
			b.Fatal(r.Status)
		}
		m.Cmd = uint8(dlock.CmdExclusiveUnlock)
		if r, _ := s.lockOp(s.instant(), c, 2, &m, &out); r.Status != dlock.Success {
			b.Fatal(r.Status)
		}
	}
}

// benchStateConn returns a server and a connection of a registered client
// without a socket.
func benchStateConn(b *testing.B) (*Server, *conn) {
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	c := newConn(s, nil, 1)
	c.client = &client{id: 7}
	return s, c
}

// dlockDJB2 is the client's hash of a lock name (the id it predicts).
func dlockDJB2(b []byte) int32 {
	h := uint32(5381)
	for _, c := range b {
		h = h*33 + uint32(c)
	}
	return int32(h)
}
