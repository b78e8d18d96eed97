package dlock_test

// The robustness suite: real dlockd processes, clients doing a random mix of
// operations on all three lock types and on atomic64 objects, faults
// injected by signals (by pid) and by an in-test TCP proxy, and a history of
// everything checked afterwards (robust_check_test.go). Each test prints its
// seed; DLOCK_SEED=<seed> replays the same random choices. On failure the
// history and the server logs are kept and their paths printed.
//
// The default run is short (a few seconds per fault); DLOCK_SOAK=1 runs
// every fault for longer, and the mixed test for minutes.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/wire"
)

// soak reports whether the long runs were asked for (DLOCK_SOAK=1).
func soak() bool { return os.Getenv("DLOCK_SOAK") != "" }

// robustTTL is the lease of the suite's atomic and fair locks, and
// robustSession the servers' session timeout (longer than the lease, so
// that a lease is what ends a lost leased hold).
const (
	robustTTL     = 2 * time.Second
	robustSession = 3 * time.Second
)

// lockSpec is one lock the workers share.
type lockSpec struct {
	name string
	typ  dlock.LockType
}

var robustLocks = []lockSpec{{"atomic-a", dlock.Atomic}, {"rw-a", dlock.RW}, {"fair-a", dlock.Fair}}

// robustEnv is one run: its servers, proxy, workers, storage and history.
type robustEnv struct {
	t    *testing.T
	seed uint64
	dir  string // kept on failure: history, server logs
	addr string // the server's address (kept across restarts)

	hist  history
	store store

	mu      sync.Mutex
	daemons []*robustDaemon
	healed  int64 // when the last fault healed (ns)

	epoch  atomic.Int64 // generation of the atomic64 objects (one per primary)
	objMu  sync.RWMutex // held by the harness while it replaces the primary
	proxy  *faultProxy
	procs  []int // in-process workers, for liveness
	nextID atomic.Int32
}

// newRobustEnv makes the run's directory and seed and starts a server.
func newRobustEnv(t *testing.T, serverArgs ...string) *robustEnv {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DLOCK_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DLOCK_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay: DLOCK_SEED=%d go test -race -run '^%s$' .)", seed, seed, t.Name())
	dir, err := os.MkdirTemp("", "dlock-robust-")
	if err != nil {
		t.Fatal(err)
	}
	e := &robustEnv{t: t, seed: seed, dir: dir, addr: loopbackAddr(t), store: newFencedStore()}
	e.epoch.Store(1)
	t.Cleanup(func() {
		e.mu.Lock()
		ds := e.daemons
		e.mu.Unlock()
		for _, d := range ds {
			d.stop()
		}
		if t.Failed() {
			hp := filepath.Join(dir, "history.jsonl")
			if err := e.hist.save(hp); err != nil {
				t.Logf("saving the history: %v", err)
			}
			logs, _ := filepath.Glob(filepath.Join(dir, "dlockd-*.log"))
			t.Logf("kept for replay (seed %d): history %s; server logs %s", seed, hp, strings.Join(logs, " "))
			return
		}
		os.RemoveAll(dir)
	})
	e.startServer(serverArgs...)
	return e
}

func (e *robustEnv) rng(stream uint64) *rand.Rand { return rand.New(rand.NewPCG(e.seed, stream)) }

// robustDaemon is a dlockd process whose log goes to a file of the run.
type robustDaemon struct {
	pid  int
	log  string
	done chan struct{}
	once sync.Once
}

// startServer starts dlockd on e.addr with the suite's session timeout.
func (e *robustEnv) startServer(args ...string) *robustDaemon {
	t := e.t
	t.Helper()
	e.mu.Lock()
	n := len(e.daemons) + 1
	e.mu.Unlock()
	logPath := filepath.Join(e.dir, fmt.Sprintf("dlockd-%d.log", n))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	all := append([]string{"-addr", e.addr, "-log-level", "debug", "-session-timeout", robustSession.String()}, args...)
	cmd := exec.Command(buildDlockd(t), all...)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &robustDaemon{pid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	e.mu.Lock()
	e.daemons = append(e.daemons, d)
	e.mu.Unlock()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "listening") {
		t.Fatalf("dlockd did not start: %q %v (log %s)", line, err, logPath)
	}
	go io.Copy(io.Discard, stdout)
	return d
}

func (d *robustDaemon) signal(sig syscall.Signal) { syscall.Kill(d.pid, sig) }

// stop kills the process (resuming it first if it was stopped) and waits.
func (d *robustDaemon) stop() {
	d.once.Do(func() {
		syscall.Kill(d.pid, syscall.SIGKILL)
		syscall.Kill(d.pid, syscall.SIGCONT)
		<-d.done
	})
}

func (e *robustEnv) server() *robustDaemon {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.daemons[len(e.daemons)-1]
}

// heal records that the last fault healed now.
func (e *robustEnv) heal() {
	e.mu.Lock()
	e.healed = time.Now().UnixNano()
	e.mu.Unlock()
}

// restartServer SIGKILLs the primary and starts a new one on the same
// address in recovery mode, waiting for clients clients. The atomic64
// objects die with the primary: workers move to a new generation of them.
func (e *robustEnv) restartServer(clients int, args ...string) {
	e.objMu.Lock()
	defer e.objMu.Unlock()
	e.server().stop()
	e.epoch.Add(1)
	e.startServer(append([]string{"-recovery-clients", strconv.Itoa(clients)}, args...)...)
}

func now() int64 { return time.Now().UnixNano() }

// unknownOutcome reports whether err leaves the operation's outcome unknown
// (a transport failure or a deadline with the request in flight), as
// opposed to a status the server or the client's cache answered.
func unknownOutcome(err error) bool {
	var st dlock.Status
	return err != nil && !errors.As(err, &st)
}

// worker is one client of the run doing random operations.
type worker struct {
	e     *robustEnv
	proc  int
	c     *dlock.Client
	rng   *rand.Rand
	locks map[string]*dlock.Lock
	objs  map[string]*dlock.Atomic64
	seq   uint64
}

// newWorker dials a client (through dial if not nil) with automatic
// recovery.
func (e *robustEnv) newWorker(ctx context.Context, dial func(ctx context.Context, network, address string) (net.Conn, error)) *worker {
	t := e.t
	t.Helper()
	proc := int(e.nextID.Add(1))
	cfg := &dlock.Config{AutoRecover: true, DialTimeout: 2 * time.Second, DialContext: dial}
	c, err := dlock.Dial(ctx, e.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	w := &worker{e: e, proc: proc, c: c, rng: e.rng(uint64(proc)), locks: map[string]*dlock.Lock{}, objs: map[string]*dlock.Atomic64{}}
	for _, spec := range robustLocks {
		l, err := c.OpenLock(ctx, spec.name, dlock.LockOptions{Type: spec.typ, TTL: robustTTL})
		if err != nil {
			t.Fatal(err)
		}
		w.locks[spec.name] = l
	}
	return w
}

// run does operations until ctx ends.
func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		var ok bool
		switch r := w.rng.IntN(10); {
		case r < 6:
			ok = w.lockRound(ctx, robustLocks[w.rng.IntN(len(robustLocks))])
		case r < 8:
			ok = w.faa(ctx)
		default:
			ok = w.cas(ctx)
		}
		pause := time.Duration(2+w.rng.IntN(8)) * time.Millisecond
		if !ok {
			pause = time.Duration(20+w.rng.IntN(30)) * time.Millisecond
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// lockRound takes a lock (shared one time in three on RW and fair locks),
// does a fenced read-modify-write of the storage behind it (a read only
// when shared), and unlocks.
func (w *worker) lockRound(ctx context.Context, spec lockSpec) bool {
	e := w.e
	l := w.locks[spec.name]
	shared := spec.typ != dlock.Atomic && w.rng.IntN(3) == 0
	leased := spec.typ != dlock.RW
	base := histOp{Proc: w.proc, Key: spec.name, Leased: leased, TTL: int64(robustTTL), Shared: shared}

	op := base
	op.Kind, op.Invoke = opLock, now()
	lctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	var err error
	if shared {
		err = l.RLock(lctx)
	} else {
		err = l.Lock(lctx)
	}
	cancel()
	op.Complete, op.OK, op.Unknown, op.Err = now(), err == nil, unknownOutcome(err), errString(err)
	if err == nil {
		op.Token = l.Token()
	}
	e.hist.add(op)
	if err != nil {
		return false
	}
	token := op.Token

	rd := base
	rd.Kind, rd.Token, rd.Invoke = opRead, token, now()
	v, readOK := e.store.read(spec.name, token, shared)
	rd.Complete, rd.OK, rd.Value = now(), readOK, v
	e.hist.add(rd)
	time.Sleep(time.Duration(w.rng.IntN(20)) * time.Millisecond)
	if readOK && !shared {
		wr := base
		wr.Kind, wr.Token, wr.Value, wr.Invoke = opWrite, token, v+1, now()
		wr.OK = e.store.write(spec.name, token, v+1)
		wr.Complete = now()
		e.hist.add(wr)
	}

	e.hist.add(unlockUntilKnown(l, base, token))
	return true
}

// unlockUntilKnown unlocks, retrying (bounded) while the outcome is unknown
// or the server is not ready, as a careful caller does: a failed unlock
// leaves the hold in place. The operation it returns spans every attempt:
// invoked with the first (which may have released the hold, its reply
// lost), its outcome the last's (whose invocation is Retry).
func unlockUntilKnown(l *dlock.Lock, base histOp, token uint64) histOp {
	un := base
	un.Kind, un.Token, un.Invoke = opUnlock, token, now()
	for try := 0; try < 50; try++ {
		un.Retry = now()
		uctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := l.Unlock(uctx)
		cancel()
		un.Complete, un.OK, un.Unknown, un.Err = now(), err == nil, unknownOutcome(err), errString(err)
		if !un.Unknown && !errors.Is(err, dlock.ErrNotReady) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return un
}

// object returns the worker's handle on the current generation's object
// called prefix, creating the object if nobody did.
func (w *worker) object(ctx context.Context, prefix string) (*dlock.Atomic64, error) {
	w.e.objMu.RLock()
	defer w.e.objMu.RUnlock()
	name := fmt.Sprintf("%s-%d", prefix, w.e.epoch.Load())
	if o := w.objs[name]; o != nil {
		return o, nil
	}
	octx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	o, err := w.c.CreateAtomic64(octx, name, 0, dlock.Atomic64Options{})
	if errors.Is(err, dlock.ErrObjectAlreadyExisted) || errors.Is(err, dlock.ErrObjectAlreadyCreated) {
		o, err = w.c.OpenAtomic64(octx, name, dlock.Atomic64Options{})
	}
	if err != nil {
		return nil, err
	}
	w.objs[name] = o
	return o, nil
}

// objectFailed forgets a handle that stopped working (its primary died).
func (w *worker) objectFailed(o *dlock.Atomic64, err error) {
	if errors.Is(err, dlock.ErrObjectNotGet) || errors.Is(err, dlock.ErrObjectNotCreate) {
		delete(w.objs, o.Name())
	}
}

func (w *worker) faa(ctx context.Context) bool {
	o, err := w.object(ctx, "faa")
	if err != nil {
		return false
	}
	op := histOp{Proc: w.proc, Kind: opFAA, Key: o.Name(), A: 1, Invoke: now()}
	octx, cancel := context.WithTimeout(ctx, time.Second)
	v, err := o.FetchAndAdd(octx, 1)
	cancel()
	op.Complete, op.OK, op.Unknown, op.Err, op.Value = now(), err == nil, unknownOutcome(err), errString(err), v
	w.e.hist.add(op)
	w.objectFailed(o, err)
	return err == nil
}

// cas loads the register and tries to swap in a value unique to this
// worker and operation.
func (w *worker) cas(ctx context.Context) bool {
	o, err := w.object(ctx, "cas")
	if err != nil {
		return false
	}
	ld := histOp{Proc: w.proc, Kind: opLoad, Key: o.Name(), Invoke: now()}
	octx, cancel := context.WithTimeout(ctx, time.Second)
	v, err := o.Load(octx)
	cancel()
	ld.Complete, ld.OK, ld.Unknown, ld.Err, ld.Value = now(), err == nil, unknownOutcome(err), errString(err), v
	w.e.hist.add(ld)
	if err != nil {
		w.objectFailed(o, err)
		return false
	}
	w.seq++
	next := uint64(w.proc)<<40 | w.seq
	op := histOp{Proc: w.proc, Kind: opCAS, Key: o.Name(), A: v, B: next, Invoke: now()}
	octx, cancel = context.WithTimeout(ctx, time.Second)
	swapped, err := o.CompareAndSwap(octx, v, next)
	cancel()
	op.Complete, op.OK, op.Unknown, op.Err = now(), err == nil, unknownOutcome(err), errString(err)
	if swapped {
		op.Value = 1
	}
	w.e.hist.add(op)
	w.objectFailed(o, err)
	return err == nil
}

// scenario is one robustness run.
type scenario struct {
	workers int // in-process clients dialing the server directly
	proxied int // more of them, through the fault proxy
	warmup  time.Duration
	bound   time.Duration // liveness bound after the last fault healed
	// fault injects the faults and returns once the last one healed.
	fault func(ctx context.Context, e *robustEnv)
	// dial, if set, is the DialContext of the direct workers' clients.
	dial func(ctx context.Context, network, address string) (net.Conn, error)
}

// runRobust runs sc and reports every violation the checkers find.
func (e *robustEnv) runRobust(sc scenario) {
	for _, b := range e.run(sc) {
		e.t.Error(b)
	}
}

// run starts the workers, lets them run for the warm-up, injects the
// faults, runs until every worker and lock made progress after the heal (or
// the liveness bound passed), stops the workers and checks the history. It
// returns the violations found.
func (e *robustEnv) run(sc scenario) []string {
	t := e.t
	ctx, cancel := context.WithTimeout(context.Background(), faultTime(3*time.Minute, time.Hour))
	t.Cleanup(cancel)
	if sc.proxied > 0 && e.proxy == nil {
		e.proxy = newFaultProxy(t, e.addr)
	}
	var ws []*worker
	for range sc.workers {
		ws = append(ws, e.newWorker(ctx, sc.dial))
	}
	for range sc.proxied {
		ws = append(ws, e.newWorker(ctx, e.proxy.dial))
	}
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() }) // before the clients close, also after a Fatal
	for _, w := range ws {
		e.mu.Lock()
		e.procs = append(e.procs, w.proc)
		e.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(wctx)
		}()
	}
	time.Sleep(sc.warmup)
	e.heal()
	if sc.fault != nil {
		sc.fault(wctx, e)
		e.heal()
	}
	e.mu.Lock()
	healed, procs := e.healed, append([]int(nil), e.procs...)
	e.mu.Unlock()
	keys := make([]string, len(robustLocks))
	for i, s := range robustLocks {
		keys[i] = s.name
	}
	// Run until the liveness condition holds or its bound has passed.
	deadline := time.Now().Add(sc.bound)
	for time.Now().Before(deadline) && len(checkLiveness(e.hist.snapshot(), procs, keys, healed, sc.bound)) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a little more history after the heal
	stop()
	wg.Wait()
	finals := e.finalValues(ctx)
	ops := e.hist.snapshot()
	t.Logf("history: %d operations; last fault healed at %s", len(ops), stamp(healed))
	var bad []string
	bad = append(bad, checkTokens(ops)...)
	bad = append(bad, checkHolders(ops)...)
	bad = append(bad, checkUnlocks(ops)...)
	bad = append(bad, checkStorage(e.store)...)
	bad = append(bad, checkFAA(ops, finals)...)
	bad = append(bad, checkCAS(ops, 30*time.Second)...)
	bad = append(bad, checkLiveness(ops, procs, keys, healed, sc.bound)...)
	if counts := countOps(ops); counts[opLock] == 0 || counts[opFAA] == 0 || counts[opCAS] == 0 {
		t.Errorf("the run exercised too little: %v", counts)
	}
	return bad
}

func countOps(ops []histOp) map[string]int {
	m := map[string]int{}
	for _, op := range ops {
		if op.OK {
			m[op.Kind]++
		}
	}
	return m
}

// finalValues loads the current generation's objects with a fresh client.
func (e *robustEnv) finalValues(ctx context.Context) map[string]uint64 {
	finals := map[string]uint64{}
	c, err := dlock.Dial(ctx, e.addr, nil)
	if err != nil {
		e.t.Errorf("final read: %v", err)
		return finals
	}
	defer c.Shutdown(ctx)
	for _, prefix := range []string{"faa", "cas"} {
		name := fmt.Sprintf("%s-%d", prefix, e.epoch.Load())
		o, err := c.OpenAtomic64(ctx, name, dlock.Atomic64Options{})
		if err != nil {
			continue // never created in this generation
		}
		if v, err := o.Load(ctx); err == nil {
			finals[name] = v
		}
		o.Release(ctx)
	}
	return finals
}

// dial is a dlock.Config.DialContext that connects through the fault proxy
// (proxy_test.go).
func (p *faultProxy) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", p.Addr())
}

// --- Client processes -------------------------------------------------

// The suite runs some clients as processes of their own (this test binary
// re-executed with robustHelperEnv set), so that they can be paused and
// killed by pid. A helper loops on one lock: Lock, fenced read, a short
// hold, fenced write, Unlock. It prints each operation as a JSON line; the
// fenced storage is in the test process, which applies the helper's
// read and write requests as they arrive.
const robustHelperEnv = "DLOCK_ROBUST_HELPER"

type helperSpec struct {
	Addr string `json:"addr"`
	Proc int    `json:"proc"`
	Lock string `json:"lock"`
	Type int    `json:"type"`
	Hold int64  `json:"hold"` // ns
}

// helperLine is one line a helper prints: an operation it completed, or a
// request to read or write the storage.
type helperLine struct {
	Op *histOp `json:"op,omitempty"`
	// Unlocking is an unlock as the helper starts it, before its request
	// is sent: if the helper is killed before it reports the outcome, the
	// unlock is recorded with an unknown outcome from that instant (the
	// server may have applied it).
	Unlocking *histOp `json:"unlocking,omitempty"`
	Req       string  `json:"req,omitempty"` // opRead or opWrite
	Token     uint64  `json:"token,omitempty"`
}

// runRobustHelper is the main of a helper process.
func runRobustHelper(specJSON string) int {
	var spec helperSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx := context.Background()
	c, err := dlock.Dial(ctx, spec.Addr, &dlock.Config{AutoRecover: true, DialTimeout: 2 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	typ := dlock.LockType(spec.Type)
	l, err := c.OpenLock(ctx, spec.Lock, dlock.LockOptions{Type: typ, TTL: robustTTL})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	out := json.NewEncoder(os.Stdout)
	base := histOp{Proc: spec.Proc, Key: spec.Lock, Leased: typ != dlock.RW, TTL: int64(robustTTL)}
	for {
		op := base
		op.Kind, op.Invoke = opLock, now()
		lctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		err := l.Lock(lctx)
		cancel()
		op.Complete, op.OK, op.Unknown, op.Err = now(), err == nil, unknownOutcome(err), errString(err)
		if err == nil {
			op.Token = l.Token()
		}
		out.Encode(helperLine{Op: &op})
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		out.Encode(helperLine{Req: opRead, Token: op.Token})
		time.Sleep(time.Duration(spec.Hold))
		out.Encode(helperLine{Req: opWrite, Token: op.Token})
		start := base
		start.Kind, start.Token, start.Invoke = opUnlock, op.Token, now()
		out.Encode(helperLine{Unlocking: &start})
		un := unlockUntilKnown(l, base, op.Token)
		out.Encode(helperLine{Op: &un})
		time.Sleep(10 * time.Millisecond)
	}
}

// helperProc is a running helper process.
type helperProc struct {
	proc  int
	pid   int
	holds chan struct{} // signalled when the helper reports a fenced read (it holds the lock)
	done  chan struct{}
	once  sync.Once
}

// startHelper starts a client process looping on lock.
func (e *robustEnv) startHelper(lock lockSpec, hold time.Duration) *helperProc {
	t := e.t
	t.Helper()
	spec := helperSpec{Addr: e.addr, Proc: int(e.nextID.Add(1)), Lock: lock.name, Type: int(lock.typ), Hold: int64(hold)}
	js, _ := json.Marshal(spec)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), robustHelperEnv+"="+string(js))
	logf, err := os.Create(filepath.Join(e.dir, fmt.Sprintf("helper-%d.log", spec.Proc)))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{proc: spec.Proc, pid: cmd.Process.Pid, holds: make(chan struct{}, 1), done: make(chan struct{})}
	go func() {
		defer close(h.done)
		defer logf.Close()
		var last uint64       // the value of the helper's last fenced read
		var unlocking *histOp // an unlock started and not yet reported
		defer func() {
			if unlocking != nil {
				// Killed during the unlock: it may have been applied.
				unlocking.Complete, unlocking.Unknown = now(), true
				e.hist.add(*unlocking)
			}
		}()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var line helperLine
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue // a line cut by a kill
			}
			switch {
			case line.Unlocking != nil:
				unlocking = line.Unlocking
			case line.Op != nil:
				if line.Op.Kind == opUnlock {
					unlocking = nil
				}
				e.hist.add(*line.Op)
			case line.Req == opRead:
				op := histOp{Proc: h.proc, Kind: opRead, Key: lock.name, Leased: lock.typ != dlock.RW, TTL: int64(robustTTL), Token: line.Token, Invoke: now()}
				v, ok := e.store.read(lock.name, line.Token, false)
				op.Complete, op.OK, op.Value = now(), ok, v
				last = v
				e.hist.add(op)
				select {
				case h.holds <- struct{}{}:
				default:
				}
			case line.Req == opWrite:
				op := histOp{Proc: h.proc, Kind: opWrite, Key: lock.name, Leased: lock.typ != dlock.RW, TTL: int64(robustTTL), Token: line.Token, Value: last + 1, Invoke: now()}
				op.OK = e.store.write(lock.name, line.Token, last+1)
				op.Complete = now()
				e.hist.add(op)
			}
		}
		cmd.Wait()
	}()
	t.Cleanup(h.kill)
	return h
}

func (h *helperProc) signal(sig syscall.Signal) { syscall.Kill(h.pid, sig) }

// kill ends the helper (SIGKILL by pid) and waits for its output to end.
func (h *helperProc) kill() {
	h.once.Do(func() {
		syscall.Kill(h.pid, syscall.SIGKILL)
		syscall.Kill(h.pid, syscall.SIGCONT)
		<-h.done
	})
}

// waitHolding waits until the helper reports that it holds its lock.
func (h *helperProc) waitHolding(ctx context.Context, t *testing.T) {
	t.Helper()
	select {
	case <-h.holds: // drop a stale signal, then wait for a fresh one
	default:
	}
	select {
	case <-h.holds:
	case <-ctx.Done():
		t.Fatal("the helper process never held its lock")
	}
}

// sleepFor sleeps for d or until ctx ends.
func sleepFor(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// reinitDoneBlip is a DialContext that, when armed, closes the connection
// instead of sending the client's ReinitDone: a connection blip in the
// middle of recovery, after the client re-registered and uploaded its locks.
type reinitDoneBlip struct {
	armed atomic.Bool
	hits  atomic.Int32
}

func (b *reinitDoneBlip) dial(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &blipConn{Conn: nc, b: b}, nil
}

type blipConn struct {
	net.Conn
	b *reinitDoneBlip
}

func (c *blipConn) Write(p []byte) (int, error) {
	if c.b.armed.Load() && containsFrame(p, wire.TReinitDone) && c.b.armed.CompareAndSwap(true, false) {
		c.b.hits.Add(1)
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// containsFrame reports whether the frames in p include one of type t.
func containsFrame(p []byte, t wire.Type) bool {
	for len(p) >= wire.HeaderLen {
		var h wire.Header
		copy(h[:], p)
		if h.Check() != nil {
			return false
		}
		if h.Type() == t {
			return true
		}
		p = p[min(len(p), wire.HeaderLen+int(binary.LittleEndian.Uint32(h[8:]))):]
	}
	return false
}

// --- The faults ---------------------------------------------------------

func faultTime(short, long time.Duration) time.Duration {
	if soak() {
		return long
	}
	return short
}

// TestRobustnessServerPause stops the server (SIGSTOP) for longer than the
// lease while clients hold and wait for locks, then resumes it: every lease
// has run out on the server's clock, holders that resume their critical
// sections are fenced off, and everyone makes progress again.
func TestRobustnessServerPause(t *testing.T) {
	e := newRobustEnv(t)
	e.runRobust(scenario{workers: 4, warmup: faultTime(time.Second, 10*time.Second), bound: 8 * time.Second,
		fault: func(ctx context.Context, e *robustEnv) {
			rounds := 1
			if soak() {
				rounds = 10
			}
			for range rounds {
				srv := e.server()
				srv.signal(syscall.SIGSTOP)
				sleepFor(ctx, robustTTL+time.Second)
				srv.signal(syscall.SIGCONT)
				sleepFor(ctx, faultTime(500*time.Millisecond, 5*time.Second))
			}
		}})
}

// TestRobustnessServerKill kills the primary (SIGKILL) while clients hold
// locks and starts a new one in recovery mode on the same address; the
// clients recover automatically. Tokens stay unique and ordered across the
// restart, and every hold reported to the new primary still excludes.
func TestRobustnessServerKill(t *testing.T) {
	e := newRobustEnv(t)
	const workers = 4
	e.runRobust(scenario{workers: workers, warmup: faultTime(time.Second, 10*time.Second), bound: 10 * time.Second,
		fault: func(ctx context.Context, e *robustEnv) {
			rounds := 1
			if soak() {
				rounds = 5
			}
			for range rounds {
				e.restartServer(workers)
				sleepFor(ctx, faultTime(time.Second, 10*time.Second))
			}
		}})
}

// TestRobustnessClientKill kills client processes (SIGKILL) while they hold
// an atomic lock and an RW lock: the atomic lock comes back when its lease
// runs out, the RW lock when the server's session for the dead client
// expires, and the other clients go on.
func TestRobustnessClientKill(t *testing.T) {
	e := newRobustEnv(t)
	e.runRobust(scenario{workers: 3, warmup: 500 * time.Millisecond, bound: 10 * time.Second,
		fault: func(ctx context.Context, e *robustEnv) {
			rounds := 1
			if soak() {
				rounds = 10
			}
			for range rounds {
				ha := e.startHelper(robustLocks[0], 300*time.Millisecond)
				hr := e.startHelper(robustLocks[1], 300*time.Millisecond)
				ha.waitHolding(ctx, t)
				ha.kill()
				hr.waitHolding(ctx, t)
				hr.kill()
				sleepFor(ctx, faultTime(200*time.Millisecond, 3*time.Second))
			}
		}})
}

// TestRobustnessClientPause stops client processes (SIGSTOP) while they hold
// an atomic and a fair lock, for longer than the lease, then resumes them:
// others take the locks meanwhile; the resumed clients' writes are refused
// by the fenced storage and their unlocks must not succeed.
func TestRobustnessClientPause(t *testing.T) {
	e := newRobustEnv(t)
	e.runRobust(scenario{workers: 3, warmup: 500 * time.Millisecond, bound: 8 * time.Second,
		fault: func(ctx context.Context, e *robustEnv) {
			ha := e.startHelper(robustLocks[0], 300*time.Millisecond)
			hf := e.startHelper(robustLocks[2], 300*time.Millisecond)
			rounds := 1
			if soak() {
				rounds = 10
			}
			for range rounds {
				ha.waitHolding(ctx, t)
				ha.signal(syscall.SIGSTOP)
				hf.waitHolding(ctx, t)
				hf.signal(syscall.SIGSTOP)
				sleepFor(ctx, robustTTL+1500*time.Millisecond)
				ha.signal(syscall.SIGCONT)
				hf.signal(syscall.SIGCONT)
				sleepFor(ctx, faultTime(time.Second, 3*time.Second))
			}
			// Let the helpers' last operations in before the checks.
			ha.kill()
			hf.kill()
			// The pause must have bitten: each paused holder's lease ran
			// out, so its unlock after the pause failed.
			for _, h := range []*helperProc{ha, hf} {
				lost := 0
				for _, op := range e.hist.snapshot() {
					if op.Proc == h.proc && op.Kind == opUnlock && !op.OK && !op.Unknown {
						lost++
					}
				}
				if lost == 0 {
					t.Errorf("client process %d was paused past its lease, yet none of its unlocks failed", h.proc)
				}
			}
		}})
}

// TestRobustnessPartition black-holes the connection of one client through
// the proxy (nothing forwarded, nothing closed) for longer than the lease,
// then heals it either by resuming the traffic or by severing the
// connection (the client then recovers on a new one).
func TestRobustnessPartition(t *testing.T) {
	for _, heal := range []string{"resume", "sever"} {
		t.Run(heal, func(t *testing.T) {
			e := newRobustEnv(t)
			e.runRobust(scenario{workers: 2, proxied: 1, warmup: 500 * time.Millisecond, bound: 10 * time.Second,
				fault: func(ctx context.Context, e *robustEnv) {
					rounds := 1
					if soak() {
						rounds = 10
					}
					for range rounds {
						e.proxy.blackhole()
						sleepFor(ctx, robustTTL+time.Second)
						if heal == "sever" {
							e.proxy.sever() // closes every connection, then forwards again
						} else {
							e.proxy.heal()
						}
						sleepFor(ctx, faultTime(500*time.Millisecond, 3*time.Second))
					}
				}})
		})
	}
}

// TestRobustnessLostGrant loses a grant in a partition: client X waits in a
// blocking Lock through the proxy; its path is black-holed; the holder
// unlocks, so the server grants X, but the grant is stuck in the proxy; then
// the connection is severed and X recovers on the same server. Nobody may
// be left holding a lock that no caller knows it holds: the lock must come
// back to the others within the bound.
func TestRobustnessLostGrant(t *testing.T) {
	for _, spec := range robustLocks {
		t.Run(spec.typ.String(), func(t *testing.T) {
			e := newRobustEnv(t)
			e.runRobust(scenario{workers: 2, warmup: 300 * time.Millisecond, bound: 6 * time.Second,
				fault: func(ctx context.Context, e *robustEnv) {
					rounds := 1
					if soak() {
						rounds = 10
					}
					for range rounds {
						e.lostGrant(ctx, spec)
					}
				}})
		})
	}
}

// lostGrant runs the lost-grant fault on lock spec.
func (e *robustEnv) lostGrant(ctx context.Context, spec lockSpec) {
	t := e.t
	if e.proxy == nil {
		e.proxy = newFaultProxy(t, e.addr)
	}
	x := e.newWorker(ctx, e.proxy.dial)
	holder := e.newWorker(ctx, nil)
	hl := holder.locks[spec.name]
	// The holder takes the lock (retrying while the workers have it).
	var inv int64
	for ctx.Err() == nil {
		inv = now()
		lctx, cancel := context.WithTimeout(ctx, time.Second)
		err := hl.Lock(lctx)
		cancel()
		if err == nil {
			break
		}
	}
	token := hl.Token()
	e.hist.add(histOp{Proc: holder.proc, Kind: opLock, Key: spec.name, Leased: spec.typ != dlock.RW, TTL: int64(robustTTL), OK: true, Token: token, Invoke: inv, Complete: now()})
	// X waits for it through the proxy.
	xl := x.locks[spec.name]
	xerr := make(chan error, 1)
	xop := histOp{Proc: x.proc, Kind: opLock, Key: spec.name, Leased: spec.typ != dlock.RW, TTL: int64(robustTTL), Invoke: now()}
	go func() {
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		xerr <- xl.Lock(lctx)
	}()
	time.Sleep(200 * time.Millisecond) // X's request is queued on the server
	e.proxy.blackhole()
	un := histOp{Proc: holder.proc, Kind: opUnlock, Key: spec.name, Leased: spec.typ != dlock.RW, TTL: int64(robustTTL), Token: token, Invoke: now()}
	err := hl.Unlock(ctx)
	un.Complete, un.OK, un.Err = now(), err == nil, errString(err)
	e.hist.add(un)
	time.Sleep(300 * time.Millisecond) // the grant to X is sent, and stuck
	e.proxy.sever()
	err = <-xerr
	xop.Complete, xop.OK, xop.Unknown, xop.Err = now(), err == nil, unknownOutcome(err), errString(err)
	if err == nil {
		xop.Token = xl.Token()
		e.hist.add(xop)
		// X knows it holds the lock: it releases it as any caller would.
		uctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		u := histOp{Proc: x.proc, Kind: opUnlock, Key: spec.name, Leased: xop.Leased, TTL: xop.TTL, Token: xop.Token, Invoke: now()}
		err = xl.Unlock(uctx)
		cancel()
		u.Complete, u.OK, u.Unknown, u.Err = now(), err == nil, unknownOutcome(err), errString(err)
		e.hist.add(u)
	} else {
		e.hist.add(xop)
		t.Logf("X's Lock after the severed grant: %v", err)
	}
}

// TestRobustnessRecoveryBlip restarts the primary in recovery mode and
// drops one client's connection in the middle of its recovery (after it
// re-registered and uploaded its locks, instead of its ReinitDone). The
// client recovers again, the server becomes ready as soon as every client
// finished, and nobody stalls past the bound.
func TestRobustnessRecoveryBlip(t *testing.T) {
	e := newRobustEnv(t)
	var blip reinitDoneBlip
	const workers = 3
	e.runRobust(scenario{workers: workers, warmup: time.Second, bound: 8 * time.Second, dial: blip.dial,
		fault: func(ctx context.Context, e *robustEnv) {
			rounds := 1
			if soak() {
				rounds = 5
			}
			for r := range rounds {
				blip.armed.Store(true)
				e.restartServer(workers)
				for i := 0; i < 100 && blip.hits.Load() == int32(r); i++ {
					sleepFor(ctx, 50*time.Millisecond)
				}
				if blip.hits.Load() == int32(r) {
					t.Errorf("round %d: no client's ReinitDone was dropped: the blip did not happen", r)
				}
				sleepFor(ctx, faultTime(0, 3*time.Second))
			}
		}})
}

// TestRobustnessMixed runs a seeded random sequence of faults — server
// pauses, a primary restart, partitions healed by resuming or severing —
// against clients on every lock type and object, checking the whole
// history at the end. DLOCK_SOAK=1 makes it run for minutes.
func TestRobustnessMixed(t *testing.T) {
	e := newRobustEnv(t)
	const direct, proxied = 3, 1
	e.runRobust(scenario{workers: direct, proxied: proxied, warmup: time.Second, bound: 10 * time.Second,
		fault: func(ctx context.Context, e *robustEnv) {
			rng := e.rng(1 << 40)
			faults := 4
			if soak() {
				faults = 60
			}
			for i := 0; i < faults && ctx.Err() == nil; i++ {
				switch f := rng.IntN(4); f {
				case 0:
					d := time.Duration(500+rng.IntN(3000)) * time.Millisecond
					t.Logf("fault %d: server SIGSTOP for %v", i, d)
					srv := e.server()
					srv.signal(syscall.SIGSTOP)
					sleepFor(ctx, d)
					srv.signal(syscall.SIGCONT)
				case 1:
					t.Logf("fault %d: primary SIGKILL and restart in recovery mode", i)
					e.restartServer(direct + proxied)
				default:
					d := time.Duration(500+rng.IntN(3000)) * time.Millisecond
					sever := f == 3
					t.Logf("fault %d: partition of the proxied client for %v, heal by severing: %v", i, d, sever)
					e.proxy.blackhole()
					sleepFor(ctx, d)
					if sever {
						e.proxy.sever()
					} else {
						e.proxy.heal()
					}
				}
				sleepFor(ctx, time.Duration(300+rng.IntN(1500))*time.Millisecond)
			}
		}})
}
