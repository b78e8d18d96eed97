package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-io/dlock"
)

// firstNames is how many lock names a worker of -op first cycles through.
const firstNames = 4096

// worker is one goroutine of a dlock run.
type worker struct {
	c       *dlock.Client
	index   int
	group   int
	names   []string // -op first: the lock names it cycles through
	opts    dlock.LockOptions
	n       int // -op first: locks used so far
	locks   []*dlock.Lock
	reqs    []dlock.LockRequest
	results []dlock.Result
	held    []*dlock.Lock

	op, acq hist
	ops     uint64
	lockOps uint64
	failed  uint64 // acquisitions that did not get the lock (busy)
	holds   []holdRecord
}

// holdRecord is one exclusive hold of a contended lock, for the order checks.
type holdRecord struct {
	seq      uint64
	nx       uint16
	token    uint64
	worker   int
	slice    int
	measured bool
}

// contention is the per-lock state the checks share.
type contention struct {
	holders atomic.Int32
	seq     atomic.Uint64
}

// dlockRun is the dlock workload: clients × inflight workers, each
// acquiring and releasing its lock group.
type dlockRun struct {
	runner
	cfg        *benchConfig
	clients    []*dlock.Client
	ws         []*worker
	aws        []*asyncWorker // -async: one per client
	groups     int
	cont       []contention
	checkExcl  bool
	checkOrder bool
	checkTurns bool // blocking requests on one lock: count round-robin breaks
	slices     int  // slices run so far
	exclViol   atomic.Int64
}

func newDlockRun(ctx context.Context, cfg *benchConfig, srv *server) (*dlockRun, error) {
	if srv.dlockAddr == "" {
		return nil, errors.New("bench: no dlock server")
	}
	clients, err := dialClients(ctx, srv.dlockAddr, cfg.clients)
	if err != nil {
		return nil, err
	}
	r := &dlockRun{runner: runner{srv: srv}, cfg: cfg, clients: clients, groups: cfg.lockGroups()}
	prefix := fmt.Sprintf("bench/%x/%s/", time.Now().UnixNano(), cfg.typ)
	opts := dlock.LockOptions{Type: cfg.typ, TTL: time.Minute}
	r.ws = make([]*worker, cfg.workers())
	for i := range r.ws {
		w := &worker{c: clients[i/cfg.inflight], index: i, group: i % r.groups, opts: opts}
		if cfg.first > 0 {
			// Made here, so that formatting a name is not timed as part
			// of the open-and-lock (the echo floor formats nothing).
			w.names = make([]string, firstNames)
			for k := range w.names {
				w.names[k] = fmt.Sprintf("%s%d/first/%d", prefix, i, k)
			}
		}
		for j := range cfg.batch {
			if cfg.first > 0 {
				break // each operation opens its own lock
			}
			l, err := w.c.OpenLock(ctx, fmt.Sprintf("%s%d/%d", prefix, w.group, j), opts)
			if err != nil {
				r.close()
				return nil, fmt.Errorf("bench: %w", err)
			}
			w.locks = append(w.locks, l)
			w.reqs = append(w.reqs, dlock.LockRequest{Lock: l, Mode: cfg.mode})
		}
		w.results = make([]dlock.Result, cfg.batch)
		r.ws[i] = w
	}
	if cfg.async {
		// The same locks, each kept busy by one slot of its client's
		// window instead of by a goroutine.
		for k, c := range clients {
			var locks []*dlock.Lock
			for _, w := range r.ws[k*cfg.inflight : (k+1)*cfg.inflight] {
				locks = append(locks, w.locks[0])
			}
			r.aws = append(r.aws, newAsyncWorker(c, locks, cfg.mode == dlock.Shared))
		}
		r.ws = nil
	}
	// Checks of a contended exclusive lock: at most one holder at a time
	// (across clients: a client's own goroutines share its holds), and for
	// a FAIR lock, grants in ticket order.
	r.checkExcl = cfg.mode == dlock.Exclusive && cfg.inflight == 1 && cfg.batch == 1 && r.groups < len(r.ws)
	r.checkOrder = r.checkExcl && cfg.typ == dlock.Fair && r.groups == 1
	r.checkTurns = r.checkExcl && cfg.block && r.groups == 1
	r.cont = make([]contention, r.groups)
	return r, nil
}

func (r *dlockRun) close() { closeClients(r.clients) }

func (r *dlockRun) slice(ctx context.Context, warmup, d time.Duration, count int64) error {
	r.slices++
	err := r.runner.slice(ctx, warmup, d, count, func(ctx context.Context, rc *runControl, spawn func(func() error)) {
		for _, w := range r.ws {
			spawn(func() error { return w.run(ctx, r, rc) })
		}
		for _, w := range r.aws {
			spawn(func() error { return w.run(ctx, rc) })
		}
	})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func (r *dlockRun) result() *runResult {
	res := &runResult{Kind: "dlock"}
	var op, acq hist
	var holds []holdRecord
	for _, w := range r.ws {
		op.Merge(&w.op)
		acq.Merge(&w.acq)
		res.Ops += w.ops
		res.LockOps += w.lockOps
		res.Failed += w.failed
		holds = append(holds, w.holds...)
	}
	for _, w := range r.aws {
		op.Merge(&w.op)
		acq.Merge(&w.acq)
		res.Ops += w.ops
		res.LockOps += w.lockOps
		res.Failed += w.failed
	}
	r.fill(res)
	res.Latency = summarize(&op)
	res.Acquire = summarize(&acq)
	res.ExclusionViolations = r.exclViol.Load()
	if r.checkOrder {
		res.OrderChecked = true
		res.OrderViolations, res.OrderFirst = checkTicketOrder(holds)
	}
	if r.checkTurns {
		res.TurnsChecked = true
		res.TurnBreaks = countTurnBreaks(holds, len(r.ws))
	}
	if r.groups < len(r.ws) {
		acquired := res.Ops*uint64(r.cfg.batch) - res.Failed
		res.HandOversPerSec = div(float64(acquired), res.Seconds)
	}
	return res
}

// run loops acquire + release until the slice stops.
func (w *worker) run(ctx context.Context, r *dlockRun, rc *runControl) error {
	cfg := r.cfg
	cont := &r.cont[w.group]
	for {
		run, record := rc.next(ctx)
		if !run {
			return nil
		}
		lockOps := w.lockOps
		t0 := time.Now()
		got, err := w.acquire(ctx, cfg)
		t1 := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if got > 0 && r.checkExcl {
			if cont.holders.Add(1) != 1 {
				r.exclViol.Add(1)
			}
			if r.checkOrder || r.checkTurns {
				l := w.locks[0]
				w.holds = append(w.holds, holdRecord{seq: cont.seq.Add(1), nx: l.State().Fair().Nx, token: l.Token(),
					worker: w.index, slice: r.slices, measured: record})
			}
			cont.holders.Add(-1)
		}
		if err := w.release(ctx, cfg, got); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !record {
			w.lockOps = lockOps
			continue
		}
		w.acq.Record(int64(t1.Sub(t0)))
		w.op.RecordSince(t0)
		w.ops++
		w.failed += uint64(cfg.batch - got)
	}
}

// acquire takes the worker's lock(s) and returns how many it got.
func (w *worker) acquire(ctx context.Context, cfg *benchConfig) (int, error) {
	if cfg.first > 0 {
		return w.firstUse(ctx, cfg)
	}
	if cfg.batch > 1 {
		w.lockOps += uint64(cfg.batch)
		if err := w.c.BatchTryLock(ctx, w.reqs, w.results); err != nil {
			return 0, err
		}
		w.held = w.held[:0]
		n := 0
		for i, res := range w.results {
			switch res.Status {
			case dlock.Success, dlock.ErrAlreadyLocked:
				w.held = append(w.held, w.locks[i])
				n++
			case dlock.ErrFail:
			case dlock.ErrAgain: // a FAIR ticket: the unlock gives it up
				w.held = append(w.held, w.locks[i])
			default:
				return 0, fmt.Errorf("batch trylock entry %d: %w", i, res.Status)
			}
		}
		return n, nil
	}
	l := w.locks[0]
	w.lockOps++
	var ok bool
	var err error
	switch {
	case cfg.block && cfg.mode == dlock.Shared:
		err, ok = l.RLock(ctx), true
	case cfg.block:
		err, ok = l.Lock(ctx), true
	case cfg.mode == dlock.Shared:
		ok, err = l.TryRLock(ctx)
	default:
		ok, err = l.TryLock(ctx)
	}
	if err != nil || !ok {
		if err == nil && cfg.typ == dlock.Fair {
			// The failed FAIR trylock left a ticket: Unlock gives it up.
			w.lockOps++
			if err := l.Unlock(ctx); err != nil {
				return 0, err
			}
		}
		return 0, err
	}
	return 1, nil
}

// firstUse opens a lock the worker has not open and tries to take it:
// with OpenAndTryLock (one round trip) or OpenLock then TryLock (two).
// The worker cycles through firstNames names; release drops each lock
// again.
func (w *worker) firstUse(ctx context.Context, cfg *benchConfig) (int, error) {
	name := w.names[w.n%len(w.names)]
	w.n++
	w.locks = w.locks[:0]
	w.lockOps++
	var l *dlock.Lock
	var ok bool
	var err error
	if cfg.first == 1 {
		l, ok, err = w.c.OpenAndTryLock(ctx, name, w.opts)
	} else if l, err = w.c.OpenLock(ctx, name, w.opts); err == nil {
		w.lockOps++
		ok, err = l.TryLock(ctx)
	}
	if l != nil {
		w.locks = append(w.locks, l)
	}
	if err != nil || !ok {
		return 0, err
	}
	return 1, nil
}

// release unlocks what acquire took.
func (w *worker) release(ctx context.Context, cfg *benchConfig, got int) error {
	if cfg.first > 0 {
		if len(w.locks) == 0 {
			return nil
		}
		if got > 0 {
			w.lockOps++
			if err := w.locks[0].Unlock(ctx); err != nil {
				return err
			}
		}
		w.lockOps++
		return w.locks[0].Release(ctx)
	}
	if cfg.batch > 1 {
		if len(w.held) == 0 {
			return nil
		}
		w.lockOps += uint64(len(w.held))
		if err := w.c.BatchUnlock(ctx, w.held, w.results); err != nil {
			return err
		}
		for i, res := range w.results[:len(w.held)] {
			if res.Status != dlock.Success {
				return fmt.Errorf("batch unlock entry %d: %w", i, res.Status)
			}
		}
		return nil
	}
	if got == 0 {
		return nil
	}
	w.lockOps++
	return w.locks[0].Unlock(ctx)
}

// checkTicketOrder checks that the successive exclusive holders of a FAIR
// lock were served in ticket order — each saw a later Nx than the holder
// before it (16-bit, so "later" is a forward distance of 1..0x7FFF) — and
// got strictly increasing fencing tokens. Nx may advance by more than one
// between two holders: the ticket of a waiter that gave up (a cancelled
// Lock at the end of a run) is retired without a hold. It returns the number
// of violations and a description of the first.
func checkTicketOrder(holds []holdRecord) (int64, string) {
	slices.SortFunc(holds, func(a, b holdRecord) int { return cmp.Compare(a.seq, b.seq) })
	var n int64
	first := ""
	for i := 1; i < len(holds); i++ {
		p, h := holds[i-1], holds[i]
		var why string
		switch d := h.nx - p.nx; {
		case d == 0 || d > 0x7FFF:
			why = fmt.Sprintf("hold %d got Nx %d after Nx %d", h.seq, h.nx, p.nx)
		case h.token <= p.token:
			why = fmt.Sprintf("hold %d got token %d after token %d", h.seq, h.token, p.token)
		}
		if why != "" {
			n++
			if first == "" {
				first = why
			}
		}
	}
	return n, first
}

// countTurnBreaks counts, among the measured holds of a lock that every
// worker waits for with a blocking request, those a worker got before every
// other worker had a turn since its previous hold in the same slice. A FIFO
// queue serves the workers round robin, so a break is either a request
// served out of order or a worker that was late to queue again (its
// goroutine was not scheduled in time): zero proves round-robin service,
// a few are noise, many are unfairness.
func countTurnBreaks(holds []holdRecord, workers int) int64 {
	slices.SortFunc(holds, func(a, b holdRecord) int { return cmp.Compare(a.seq, b.seq) })
	type key struct{ slice, worker int }
	last := map[key]uint64{}
	var n int64
	for _, h := range holds {
		k := key{h.slice, h.worker}
		if p, ok := last[k]; ok && h.measured && h.seq-p-1 < uint64(workers-1) {
			n++
		}
		last[k] = h.seq
	}
	return n
}

// dialClients registers n clients, a few at a time.
func dialClients(ctx context.Context, addr string, n int) ([]*dlock.Client, error) {
	clients := make([]*dlock.Client, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			clients[i], errs[i] = dlock.Dial(ctx, addr, nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeClients(clients)
		return nil, fmt.Errorf("bench: %w", err)
	}
	return clients, nil
}

// closeClients deregisters the clients (releasing whatever they hold).
func closeClients(clients []*dlock.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, c := range clients {
		if c == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Shutdown(ctx)
		}()
	}
	wg.Wait()
}
