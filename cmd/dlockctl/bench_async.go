package main

import (
	"context"
	"fmt"
	"time"

	"github.com/dlock-io/dlock"
)

// asyncWorker is the -async workload of one client: one goroutine keeps
// -inflight requests in flight with the asynchronous Pipeline API, as the
// echo window does with raw frames. Each slot of the window cycles through
// its own lock: TryLock, then Unlock (an operation, as for a synchronous
// worker), then the next TryLock, started as soon as the reply before it
// is collected.
type asyncWorker struct {
	p      *dlock.Pipeline
	slots  []asyncSlot
	shared bool

	op, acq hist
	ops     uint64
	lockOps uint64
	failed  uint64
}

// asyncSlot is one request of the window and the operation it is in.
type asyncSlot struct {
	lock   *dlock.Lock
	req    dlock.Request
	t0, t1 time.Time
	record bool
}

func newAsyncWorker(c *dlock.Client, locks []*dlock.Lock, shared bool) *asyncWorker {
	w := &asyncWorker{p: c.NewPipeline(), slots: make([]asyncSlot, len(locks)), shared: shared}
	for i, l := range locks {
		s := &w.slots[i]
		s.lock = l
		s.req.Tag = s
	}
	return w
}

// acquire starts slot s's next operation if the run goes on, and reports
// whether it did.
func (w *asyncWorker) acquire(ctx context.Context, rc *runControl, s *asyncSlot, now time.Time) (bool, error) {
	run, record := rc.next(ctx)
	if !run {
		return false, nil
	}
	s.t0, s.record = now, record
	if w.shared {
		return true, w.p.TryRLock(&s.req, s.lock)
	}
	return true, w.p.TryLock(&s.req, s.lock)
}

func (w *asyncWorker) run(ctx context.Context, rc *runControl) error {
	now := time.Now()
	for i := range w.slots {
		if ok, err := w.acquire(ctx, rc, &w.slots[i], now); err != nil || !ok {
			if err != nil {
				return err
			}
			break
		}
	}
	// Collect until the window is empty: a request started is always
	// collected, so no lock is left busy or held when the slice ends.
	for w.p.Outstanding() > 0 {
		r, err := w.p.Next(ctx)
		if err != nil {
			return err
		}
		s := r.Tag.(*asyncSlot)
		t := time.Now()
		if err := r.Err(); err != nil {
			return fmt.Errorf("%v %s: %w", r.Op(), s.lock.Name(), err)
		}
		if s.record {
			w.lockOps++
		}
		if r.Op() != dlock.OpUnlock {
			s.t1 = t
			got := r.Acquired()
			if s.record && !got {
				w.failed++
			}
			if got || s.lock.Type() == dlock.Fair {
				// Release the hold (or the FAIR ticket a failed try left).
				if err := w.p.Unlock(&s.req, s.lock); err != nil {
					return err
				}
				continue
			}
		}
		if s.record {
			w.acq.Record(int64(s.t1.Sub(s.t0)))
			w.op.Record(int64(t.Sub(s.t0)))
			w.ops++
		}
		if _, err := w.acquire(ctx, rc, s, t); err != nil {
			return err
		}
	}
	return nil
}
