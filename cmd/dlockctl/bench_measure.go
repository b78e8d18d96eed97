package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Run phases: workers record only while measuring.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// runControl is what every worker of a slice shares.
type runControl struct {
	phase     atomic.Int32
	remaining atomic.Int64 // operations left with -count
	counted   bool
}

// next reports whether the worker should run another operation and
// whether to record it.
func (rc *runControl) next(ctx context.Context) (run, record bool) {
	if ctx.Err() != nil {
		return false, false
	}
	switch rc.phase.Load() {
	case phaseWarmup:
		return true, false
	case phaseMeasure:
		if rc.counted && rc.remaining.Add(-1) < 0 {
			return false, false
		}
		return true, true
	}
	return false, false
}

// sliceLen is the length of one measured slice when a dlock run and its
// echo floor are interleaved, and sliceWarmup the unrecorded start of each.
// Interleaving makes both see the same background load, which on a shared
// machine moves from second to second.
const (
	sliceLen    = 200 * time.Millisecond
	sliceWarmup = 20 * time.Millisecond
)

// runner measures one workload in slices and adds them up. Its workers
// keep their histograms and counters from slice to slice.
type runner struct {
	srv        *server
	elapsed    time.Duration
	cpu        time.Duration
	cpuUnknown bool
	// ccpu is the load tool's own CPU time (ccpuUnknown: not readable, or
	// the server runs in the process too).
	ccpu        time.Duration
	ccpuUnknown bool
}

// slice runs the workers started by start for warmup (unrecorded), then
// for d or until count operations are done, then stops them and waits for
// them. With neither d nor count it only warms up.
func (r *runner) slice(ctx context.Context, warmup, d time.Duration, count int64, start func(ctx context.Context, rc *runControl, spawn func(func() error))) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rc := &runControl{counted: count > 0}
	rc.remaining.Store(count)
	var wg sync.WaitGroup
	start(ctx, rc, func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				cancel(err)
			}
		}()
	})
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	wait := func(d time.Duration) {
		var tc <-chan time.Time
		if d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			tc = t.C
		}
		select {
		case <-tc:
		case <-done:
		case <-ctx.Done():
		}
	}
	if warmup > 0 {
		wait(warmup)
	}
	if d <= 0 && count <= 0 {
		rc.phase.Store(phaseStop)
		<-done
		return context.Cause(ctx)
	}
	cpu0, ccpu0 := r.srv.cpuTime(), r.srv.clientCPU()
	t0 := time.Now()
	rc.phase.Store(phaseMeasure)
	if count > 0 {
		d = 0 // until the workers are done
	}
	wait(d)
	rc.phase.Store(phaseStop)
	r.elapsed += time.Since(t0)
	cpu1, ccpu1 := r.srv.cpuTime(), r.srv.clientCPU()
	<-done
	if cpu0 < 0 || cpu1 < 0 {
		r.cpuUnknown = true
	} else {
		r.cpu += cpu1 - cpu0
	}
	if ccpu0 < 0 || ccpu1 < 0 {
		r.ccpuUnknown = true
	} else {
		r.ccpu += ccpu1 - ccpu0
	}
	return context.Cause(ctx)
}

// fill sets the totals of res from the runner's.
func (r *runner) fill(res *runResult) {
	s := r.elapsed.Seconds()
	res.Seconds = s
	res.OpsPerSec = div(float64(res.Ops), s)
	res.LockOpsPerSec = div(float64(res.LockOps), s)
	res.ServerCPUMicros = -1
	if !r.cpuUnknown && res.Ops > 0 {
		res.ServerCPUMicros = float64(r.cpu.Nanoseconds()) / 1e3 / float64(res.Ops)
	}
	res.ClientCPUMicros = -1
	if !r.ccpuUnknown && res.Ops > 0 {
		res.ClientCPUMicros = float64(r.ccpu.Nanoseconds()) / 1e3 / float64(res.Ops)
	}
}

// workload is a dlock run or its echo floor.
type workload interface {
	slice(ctx context.Context, warmup, d time.Duration, count int64) error
	result() *runResult
	close()
}

// measureAll runs the workloads: each warms up, then with -count each
// runs its count in turn; with -duration they take turns in slices,
// alternating which goes first, until each has run for the duration.
func measureAll(ctx context.Context, cfg *benchConfig, ws ...workload) error {
	for _, w := range ws {
		if err := w.slice(ctx, cfg.warmup, 0, 0); err != nil {
			return err
		}
	}
	if cfg.count > 0 {
		for _, w := range ws {
			if err := w.slice(ctx, 0, 0, cfg.count); err != nil {
				return err
			}
		}
		return nil
	}
	rounds := 1
	if len(ws) > 1 {
		rounds = max(1, int(cfg.duration/sliceLen))
	}
	d := cfg.duration / time.Duration(rounds)
	for i := range rounds {
		for j := range ws {
			w := ws[j]
			if i%2 == 1 {
				w = ws[len(ws)-1-j]
			}
			warm := time.Duration(0)
			if i > 0 {
				warm = min(sliceWarmup, cfg.warmup)
			}
			if err := w.slice(ctx, warm, d, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// measurePair measures the dlock workload of cfg and, with cfg.echo, its
// echo floor interleaved with it: at the same concurrency, or at ecfg's
// when ecfg is not nil (one connection's round trip, for a contended lock).
func measurePair(ctx context.Context, cfg, ecfg *benchConfig, srv *server) (d, e *runResult, err error) {
	dr, err := newDlockRun(ctx, cfg, srv)
	if err != nil {
		return nil, nil, err
	}
	defer dr.close()
	ws := []workload{dr}
	var er *echoRun
	if cfg.echo {
		if ecfg == nil {
			ecfg = cfg
		}
		er, err = newEchoRun(ctx, ecfg, srv)
		if err != nil {
			return nil, nil, err
		}
		defer er.close()
		ws = append([]workload{er}, ws...)
	}
	if err := measureAll(ctx, cfg, ws...); err != nil {
		return nil, nil, err
	}
	d = dr.result()
	if er != nil {
		e = er.result()
	}
	return d, e, nil
}

// echoConn is a connection to the echo server. With one request in flight
// (and mux false) it is a plain write-then-read ping-pong in the caller's
