package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/wire"
)

// benchConfig is what the bench flags ask for.
type benchConfig struct {
	addr     string // existing server; empty spawns one
	compare  string // a second existing server measured against addr (compare.go)
	clients  int
	locks    int // lock groups; 0 = one per worker (distinct)
	typ      dlock.LockType
	mode     dlock.Mode
	block    bool // blocking Lock instead of TryLock
	batch    int  // locks per BatchTryLock; 1 = single operations
	inflight int  // goroutines per client
	duration time.Duration
	warmup   time.Duration
	count    int64
	echo     bool // also run the echo baseline
	scenario string
	json     bool
	inproc   bool // run the server in this process (tests)
	echoMux  bool // echo client with a reader goroutine even for one request in flight

	cpuprofile       string
	serverCPUProfile string
}

func (c *benchConfig) workers() int { return c.clients * c.inflight }

func (c *benchConfig) lockGroups() int {
	if c.locks > 0 {
		return c.locks
	}
	return c.workers()
}

func (c *benchConfig) opName() string {
	switch {
	case c.batch > 1:
		return fmt.Sprintf("batch%d", c.batch)
	case c.block:
		return "block"
	}
	return "try"
}

func parseBenchFlags(args []string, stderr io.Writer) (*benchConfig, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: dlockctl bench [flags]

Runs N clients × M locks against a dlock server and prints throughput,
latency quantiles and the server's CPU time per operation. An operation is
one acquire + release (two round trips; a batch is one BatchTryLock + one
BatchUnlock). With -baseline echo it also measures a raw TCP ping-pong of
the same frame sizes at the same concurrency and prints the ratios.

`)
		fs.PrintDefaults()
	}
	c := &benchConfig{}
	var typ, mode, op, baseline string
	fs.StringVar(&c.addr, "addr", "", "`address` of an existing server; empty spawns a server child process")
	fs.StringVar(&c.compare, "compare", "", "`address` of a second existing server: measure -addr and it interleaved in one run and print the ratios (e.g. an HA primary against a standalone server)")
	fs.IntVar(&c.clients, "clients", 1, "number of clients (connections)")
	fs.IntVar(&c.locks, "locks", 0, "number of locks (groups of -batch locks); 0 = one per worker (clients×inflight, uncontended); 1 = everybody contends")
	fs.StringVar(&typ, "type", "atomic", "lock `type`: atomic, rw or fair")
	fs.StringVar(&mode, "mode", "exclusive", "lock `mode`: exclusive or shared")
	fs.StringVar(&op, "op", "try", "acquire with `try` (TryLock) or block (Lock)")
	fs.IntVar(&c.batch, "batch", 1, "`K` locks per BatchTryLock/BatchUnlock (1..31); 1 = single operations")
	fs.IntVar(&c.inflight, "inflight", 1, "goroutines per client sharing its connection (requests in flight)")
	fs.DurationVar(&c.duration, "duration", 3*time.Second, "measurement time (unless -count)")
	fs.DurationVar(&c.warmup, "warmup", 300*time.Millisecond, "time run before measuring")
	fs.Int64Var(&c.count, "count", 0, "measure this many operations instead of -duration")
	fs.StringVar(&baseline, "baseline", "", "`echo`: also measure the raw TCP ping-pong floor")
	fs.BoolVar(&c.echoMux, "echo-mux", false, "build the echo client like dlock.Client (reader goroutine, shared write buffer) even with one request in flight")
	fs.StringVar(&c.scenario, "scenario", "", "run a target scenario: "+strings.Join(scenarioNames(), ", ")+" or all")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.BoolVar(&c.inproc, "inproc", false, "run the server in this process (no server CPU or RSS figures)")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of the bench client to `file`")
	fs.StringVar(&c.serverCPUProfile, "server-cpuprofile", "", "write a CPU profile of the spawned server to `file` (suffixed .NAME per scenario)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("bench: unexpected argument %q", fs.Arg(0))
	}
	switch typ {
	case "atomic":
		c.typ = dlock.Atomic
	case "rw":
		c.typ = dlock.RW
	case "fair":
		c.typ = dlock.Fair
	default:
		return nil, fmt.Errorf("bench: -type %q: want atomic, rw or fair", typ)
	}
	switch mode {
	case "exclusive":
		c.mode = dlock.Exclusive
	case "shared":
		c.mode = dlock.Shared
		if c.typ == dlock.Atomic {
			return nil, errors.New("bench: atomic locks have no shared mode")
		}
	default:
		return nil, fmt.Errorf("bench: -mode %q: want exclusive or shared", mode)
	}
	switch op {
	case "try":
	case "block":
		c.block = true
	default:
		return nil, fmt.Errorf("bench: -op %q: want try or block", op)
	}
	switch baseline {
	case "":
	case "echo":
		c.echo = true
	default:
		return nil, fmt.Errorf("bench: -baseline %q: want echo", baseline)
	}
	switch {
	case c.clients < 1:
		return nil, errors.New("bench: -clients must be ≥ 1")
	case c.inflight < 1:
		return nil, errors.New("bench: -inflight must be ≥ 1")
	case c.locks < 0:
		return nil, errors.New("bench: -locks must be ≥ 0")
	case c.batch < 1 || c.batch > dlock.MaxBatch:
		return nil, fmt.Errorf("bench: -batch must be within 1..%d", dlock.MaxBatch)
	case c.batch > 1 && c.block:
		return nil, errors.New("bench: batches are trylocks: -batch needs -op try")
	case c.duration <= 0 && c.count <= 0:
		return nil, errors.New("bench: need a positive -duration or -count")
	case c.warmup < 0 || c.count < 0:
		return nil, errors.New("bench: negative -warmup or -count")
	case c.scenario != "" && c.addr != "":
		return nil, errors.New("bench: -scenario spawns its own servers: drop -addr")
	case c.compare != "" && (c.addr == "" || c.echo || c.scenario != ""):
		return nil, errors.New("bench: -compare needs -addr, without -baseline or -scenario")
	}
	if c.scenario != "" && c.scenario != "all" && scenarioByName(c.scenario) == nil {
		return nil, fmt.Errorf("bench: unknown -scenario %q: want %s or all", c.scenario, strings.Join(scenarioNames(), ", "))
	}
	return c, nil
}

// runBench is the "bench" subcommand.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if cfg.scenario != "" {
		return runScenarios(ctx, cfg, stdout, stderr)
	}
	if cfg.compare != "" {
		return runCompare(ctx, cfg, stdout)
	}
	srv, err := benchServer(cfg, "")
	if err != nil {
		return err
	}
	defer srv.stop()
	d, e, err := measurePair(ctx, cfg, srv)
	if err != nil {
		return err
	}
	rep := &benchReport{Config: describe(cfg), Dlock: d, Echo: e}
	rep.ratios()
	if cfg.json {
		if err := writeJSON(stdout, rep); err != nil {
			return err
		}
	} else {
		rep.print(stdout)
	}
	if d.OrderViolations > 0 || d.ExclusionViolations > 0 {
		return fmt.Errorf("bench: %d ticket-order and %d mutual-exclusion violations", d.OrderViolations, d.ExclusionViolations)
	}
	return nil
}

// benchServer starts (or, with -addr, adopts) the server a run uses.
func benchServer(cfg *benchConfig, profileSuffix string) (*server, error) {
	prof := cfg.serverCPUProfile
	if prof != "" && profileSuffix != "" {
		prof += "." + profileSuffix
	}
	if cfg.addr != "" {
		if !cfg.echo {
			return &server{dlockAddr: cfg.addr}, nil
		}
		// An echo-only child; the server's CPU time is not ours to read.
		s, err := startServer(cfg.inproc, false, true, "")
		if err != nil {
			return nil, err
		}
		s.dlockAddr, s.pid = cfg.addr, 0
		return s, nil
	}
	return startServer(cfg.inproc, true, cfg.echo, prof)
}

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
	cpu0 := r.srv.cpuTime()
	t0 := time.Now()
	rc.phase.Store(phaseMeasure)
	if count > 0 {
		d = 0 // until the workers are done
	}
	wait(d)
	rc.phase.Store(phaseStop)
	r.elapsed += time.Since(t0)
	cpu1 := r.srv.cpuTime()
	<-done
	if cpu0 < 0 || cpu1 < 0 {
		r.cpuUnknown = true
	} else {
		r.cpu += cpu1 - cpu0
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

// worker is one goroutine of a dlock run.
type worker struct {
	c       *dlock.Client
	group   int
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
	seq   uint64
	nx    uint16
	token uint64
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
	groups     int
	cont       []contention
	checkExcl  bool
	checkOrder bool
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
		w := &worker{c: clients[i/cfg.inflight], group: i % r.groups}
		for j := range cfg.batch {
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
	// Checks of a contended exclusive lock: at most one holder at a time
	// (across clients: a client's own goroutines share its holds), and for
	// a FAIR lock, grants in ticket order.
	r.checkExcl = cfg.mode == dlock.Exclusive && cfg.inflight == 1 && cfg.batch == 1 && r.groups < len(r.ws)
	r.checkOrder = r.checkExcl && cfg.typ == dlock.Fair && r.groups == 1
	r.cont = make([]contention, r.groups)
	return r, nil
}

func (r *dlockRun) close() { closeClients(r.clients) }

func (r *dlockRun) slice(ctx context.Context, warmup, d time.Duration, count int64) error {
	err := r.runner.slice(ctx, warmup, d, count, func(ctx context.Context, rc *runControl, spawn func(func() error)) {
		for _, w := range r.ws {
			spawn(func() error { return w.run(ctx, r, rc) })
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
	r.fill(res)
	res.Latency = summarize(&op)
	res.Acquire = summarize(&acq)
	res.ExclusionViolations = r.exclViol.Load()
	if r.checkOrder {
		res.OrderChecked = true
		res.OrderViolations, res.OrderFirst = checkTicketOrder(holds)
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
			if r.checkOrder {
				l := w.locks[0]
				w.holds = append(w.holds, holdRecord{seq: cont.seq.Add(1), nx: l.State().Fair().Nx, token: l.Token()})
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

// release unlocks what acquire took.
func (w *worker) release(ctx context.Context, cfg *benchConfig, got int) error {
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

// echoRun is the floor: as many connections and requests in flight as the
// dlock run, each exchanging a 44-byte request for a 40-byte reply. An
// operation is a pair of ping-pongs, like an acquire + release.
type echoRun struct {
	runner
	conns []*echoConn
	ws    []*echoWorker
}

type echoWorker struct {
	conn       *echoConn
	slot       int
	pair, ping hist
	ops        uint64
}

func newEchoRun(ctx context.Context, cfg *benchConfig, srv *server) (*echoRun, error) {
	if srv.echoAddr == "" {
		return nil, errors.New("bench: no echo server")
	}
	r := &echoRun{runner: runner{srv: srv}, conns: make([]*echoConn, cfg.clients)}
	var d net.Dialer
	for i := range r.conns {
		nc, err := d.DialContext(ctx, "tcp", srv.echoAddr)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("bench: echo: %w", err)
		}
		r.conns[i] = newEchoConn(nc, cfg.inflight, cfg.echoMux)
	}
	r.ws = make([]*echoWorker, cfg.workers())
	for i := range r.ws {
		r.ws[i] = &echoWorker{conn: r.conns[i/cfg.inflight], slot: i % cfg.inflight}
	}
	return r, nil
}

func (r *echoRun) close() {
	for _, c := range r.conns {
		if c != nil {
			c.close()
		}
	}
}

func (r *echoRun) slice(ctx context.Context, warmup, d time.Duration, count int64) error {
	err := r.runner.slice(ctx, warmup, d, count, func(ctx context.Context, rc *runControl, spawn func(func() error)) {
		for _, w := range r.ws {
			spawn(func() error { return w.run(ctx, rc) })
		}
	})
	if err != nil {
		return fmt.Errorf("bench: echo: %w", err)
	}
	return nil
}

func (w *echoWorker) run(ctx context.Context, rc *runControl) error {
	for {
		run, record := rc.next(ctx)
		if !run {
			return nil
		}
		t0 := time.Now()
		if err := w.conn.pingPong(w.slot); err != nil {
			return err
		}
		t1 := time.Now()
		if err := w.conn.pingPong(w.slot); err != nil {
			return err
		}
		if record {
			w.ping.Record(int64(t1.Sub(t0)))
			w.ping.RecordSince(t1)
			w.pair.RecordSince(t0)
			w.ops++
		}
	}
}

func (r *echoRun) result() *runResult {
	res := &runResult{Kind: "echo"}
	var pair, ping hist
	for _, w := range r.ws {
		pair.Merge(&w.pair)
		ping.Merge(&w.ping)
		res.Ops += w.ops
	}
	res.LockOps = 2 * res.Ops
	r.fill(res)
	res.Latency = summarize(&pair)
	res.Acquire = summarize(&ping)
	return res
}

// measurePair measures the dlock workload of cfg and, with cfg.echo, its
// echo floor interleaved with it.
func measurePair(ctx context.Context, cfg *benchConfig, srv *server) (d, e *runResult, err error) {
	dr, err := newDlockRun(ctx, cfg, srv)
	if err != nil {
		return nil, nil, err
	}
	defer dr.close()
	ws := []workload{dr}
	var er *echoRun
	if cfg.echo {
		er, err = newEchoRun(ctx, cfg, srv)
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
// goroutine: the floor. Otherwise it is built like dlock.Client: callers
// append their frames to a shared buffer that one of them writes, and a
// reader goroutine hands each reply to the slot whose id it carries.
type echoConn struct {
	nc    net.Conn
	frame [echoRequestLen]byte
	reply [echoReplyLen]byte

	wmu          sync.Mutex
	wbuf, wspare []byte
	flushing     bool

	slots []chan error
	done  chan struct{}
}

func newEchoConn(nc net.Conn, inflight int, mux bool) *echoConn {
	c := &echoConn{nc: nc}
	m := wire.LockOp{LockID: 1, Cmd: uint8(dlock.CmdExclusiveTrylock)}
	if b := m.Append(nil, 0, 1); len(b) == echoRequestLen {
		copy(c.frame[:], b)
	}
	if inflight > 1 || mux {
		c.slots = make([]chan error, inflight)
		for i := range c.slots {
			c.slots[i] = make(chan error, 1)
		}
		c.wbuf = make([]byte, 0, 4096)
		c.wspare = make([]byte, 0, 4096)
		c.done = make(chan struct{})
		go c.readLoop()
	}
	return c
}

func (c *echoConn) pingPong(slot int) error {
	if c.slots == nil {
		if _, err := c.nc.Write(c.frame[:]); err != nil {
			return err
		}
		_, err := io.ReadFull(c.nc, c.reply[:])
		return err
	}
	if err := c.send(slot); err != nil {
		return err
	}
	select {
	case err := <-c.slots[slot]:
		return err
	case <-c.done:
		return errors.New("echo connection closed")
	}
}

// send queues the frame of slot and writes the queue unless another
// goroutine is writing it already.
func (c *echoConn) send(slot int) error {
	c.wmu.Lock()
	n := len(c.wbuf)
	c.wbuf = append(c.wbuf, c.frame[:]...)
	c.wbuf[n+4], c.wbuf[n+5] = byte(slot), byte(slot>>8)
	if c.flushing {
		c.wmu.Unlock()
		return nil
	}
	c.flushing = true
	for len(c.wbuf) > 0 {
		buf := c.wbuf
		c.wbuf = c.wspare[:0]
		c.wmu.Unlock()
		_, err := c.nc.Write(buf)
		c.wmu.Lock()
		c.wspare = buf[:0]
		if err != nil {
			c.wbuf = c.wbuf[:0]
			c.flushing = false
			c.wmu.Unlock()
			return err
		}
	}
	c.flushing = false
	c.wmu.Unlock()
	return nil
}

func (c *echoConn) readLoop() {
	defer close(c.done)
	var rep [echoReplyLen]byte
	br := bufio.NewReaderSize(c.nc, 16<<10)
	for {
		if _, err := io.ReadFull(br, rep[:]); err != nil {
			for _, s := range c.slots {
				select {
				case s <- err:
				default:
				}
			}
			return
		}
		slot := int(rep[4]) | int(rep[5])<<8
		if slot < len(c.slots) {
			c.slots[slot] <- nil
		}
	}
}

func (c *echoConn) close() {
	c.nc.Close()
	if c.done != nil {
		<-c.done
	}
}
