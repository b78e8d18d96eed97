package dlockserver

import (
	"fmt"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/wire"
)

// TestStateBatchesAndTransitionsDoNotDeadlock: a batch holds the stripes
// of all its locks at once. Batches naming the same locks in opposite
// entry orders, single requests, and transitions that take the whole
// server (opening and releasing a lock) run at once and all finish: every
// path takes the stripes in index order.
func TestStateBatchesAndTransitionsDoNotDeadlock(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Closed only at the end: Close waits for every stripe, which a
	// deadlock would leave held.
	a, b, o := registered(t, s, 1), registered(t, s, 2), registered(t, s, 3)
	var ids []int32
	var stripes stripeSet
	for i := 0; stripes != 1<<numStripes-1 || len(ids) < wire.MaxBatch; i++ {
		if i > 1000 {
			t.Fatalf("1000 locks do not cover every stripe: %b", stripes)
		}
		id := opened(t, s, a, fmt.Sprintf("l%d", i))
		if opened(t, s, b, fmt.Sprintf("l%d", i)) != id {
			t.Fatal("the same name opened two locks")
		}
		if len(ids) < wire.MaxBatch {
			ids = append(ids, id)
			stripes.add(id)
		}
	}
	if stripes != 1<<numStripes-1 {
		t.Fatalf("the batch's %d locks do not cover every stripe: %b", len(ids), stripes)
	}
	const rounds = 300
	batches := func(c *conn, reverse bool) error {
		var m wire.BatchLockOp
		var res wire.BatchLockResult
		var out outbox
		m.N = len(ids)
		for r := range rounds {
			cmd := dlock.CmdExclusiveTrylock
			if r%2 == 1 {
				cmd = dlock.CmdExclusiveUnlock
			}
			for i, id := range ids {
				if reverse {
					i = len(ids) - 1 - i
				}
				m.Items[i] = *atomicOp(c, id, cmd, false)
			}
			s.batchLockOp(s.instant(), c, &m, &res, &out)
			out.msgs, out.closes = out.msgs[:0], out.closes[:0]
			if res.N != m.N {
				return fmt.Errorf("batch of %d answered %d", m.N, res.N)
			}
		}
		return nil
	}
	done := make(chan error, 4)
	go func() { done <- batches(a, false) }()
	go func() { done <- batches(b, true) }()
	go func() { // single requests on the same locks
		var out outbox
		for r := range rounds {
			id := ids[r%len(ids)]
			s.lockOp(s.instant(), o, 1, atomicOp(o, id, dlock.CmdExclusiveTrylock, false), &out)
			s.lockOp(s.instant(), o, 2, atomicOp(o, id, dlock.CmdExclusiveUnlock, false), &out)
			out.msgs = out.msgs[:0]
		}
		done <- nil
	}()
	go func() { // transitions: the whole server
		var out outbox
		for r := range rounds {
			id, st := s.getLock(o, &wire.GetLock{Desc: []byte(fmt.Sprintf("t%d", r)), Type: uint8(dlock.Atomic)})
			if st != dlock.Success {
				done <- fmt.Errorf("get lock: %v", st)
				return
			}
			if st := s.releaseOne(s.instant(), o, &wire.ID{ID: id}, &out); st != dlock.Success {
				done <- fmt.Errorf("release lock: %v", st)
				return
			}
			out.msgs = out.msgs[:0]
		}
		done <- nil
	}()
	timeout := time.After(60 * time.Second)
	for range 4 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-timeout:
			t.Fatal("batches, requests and transitions did not finish in 60 s: they wait for each other's stripes")
		}
	}
	s.Close()
}
