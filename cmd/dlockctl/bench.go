package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/dlock-io/dlock"
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
	inflight int  // requests in flight per client: goroutines, or the window of -async
	async    bool // one goroutine per client keeps inflight requests in flight (Pipeline)
	duration time.Duration
	warmup   time.Duration
	count    int64
	echo     bool // also run the echo baseline
	scenario string
	json     bool
	inproc   bool // run the server in this process (tests)
	echoMux  bool // echo client with a reader goroutine even for one request in flight
	// first: each operation is the first use of a lock — 1: OpenAndTryLock
	// (one round trip), 2: OpenLock then TryLock (two) — then Unlock and
	// Release.
	first int
	// pinServer, pinClient: CPUs for the spawned server and this process;
	// -1 leaves them unpinned.
	pinServer, pinClient int

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
	case c.first == 1:
		return "first"
	case c.first == 2:
		return "first-split"
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
	c := &benchConfig{pinServer: -1, pinClient: -1}
	var typ, mode, op, baseline, pin string
	fs.StringVar(&c.addr, "addr", "", "`address` of an existing server; empty spawns a server child process")
	fs.StringVar(&c.compare, "compare", "", "`address` of a second existing server: measure -addr and it interleaved in one run and print the ratios (e.g. an HA primary against a standalone server)")
	fs.IntVar(&c.clients, "clients", 1, "number of clients (connections)")
	fs.IntVar(&c.locks, "locks", 0, "number of locks (groups of -batch locks); 0 = one per worker (clients×inflight, uncontended); 1 = everybody contends")
	fs.StringVar(&typ, "type", "atomic", "lock `type`: atomic, rw or fair")
	fs.StringVar(&mode, "mode", "exclusive", "lock `mode`: exclusive or shared")
	fs.StringVar(&op, "op", "try", "acquire with `try` (TryLock), block (Lock), first (each operation the first use of a lock: OpenAndTryLock, one round trip) or first-split (OpenLock then TryLock, two)")
	fs.IntVar(&c.batch, "batch", 1, "`K` locks per BatchTryLock/BatchUnlock (1..31); 1 = single operations")
	fs.IntVar(&c.inflight, "inflight", 1, "requests in flight per client: goroutines sharing its connection, each making synchronous calls (or, with -async, the window of one goroutine)")
	fs.BoolVar(&c.async, "async", false, "one goroutine per client keeps -inflight requests in flight with the asynchronous Pipeline API (TryLock, Unlock), as the echo window does")
	fs.DurationVar(&c.duration, "duration", 3*time.Second, "measurement time (unless -count)")
	fs.DurationVar(&c.warmup, "warmup", 300*time.Millisecond, "time run before measuring")
	fs.Int64Var(&c.count, "count", 0, "measure this many operations instead of -duration")
	fs.StringVar(&baseline, "baseline", "", "`echo`: also measure the raw TCP ping-pong floor")
	fs.BoolVar(&c.echoMux, "echo-mux", false, "build the echo client like dlock.Client (reader goroutine, shared write buffer, a goroutine per request in flight) instead of the plain ping-pong (one in flight) or the one-goroutine window (several)")
	fs.StringVar(&pin, "pin", "", "`S,C`: pin the spawned server to CPU S and this process to CPU C (Linux; as taskset -c does; GOMAXPROCS 1 each)")
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
	case "first":
		c.first = 1
	case "first-split":
		c.first = 2
	default:
		return nil, fmt.Errorf("bench: -op %q: want try, block, first or first-split", op)
	}
	if pin != "" {
		srv, cli, ok := strings.Cut(pin, ",")
		var err1, err2 error
		c.pinServer, err1 = strconv.Atoi(srv)
		c.pinClient, err2 = strconv.Atoi(cli)
		if !ok || err1 != nil || err2 != nil || c.pinServer < 0 || c.pinClient < 0 {
			return nil, fmt.Errorf("bench: -pin %q: want two CPU numbers, server,client", pin)
		}
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
	case c.batch > 1 && (c.block || c.first > 0):
		return nil, errors.New("bench: batches are trylocks: -batch needs -op try")
	case c.async && (c.batch > 1 || c.block || c.first > 0 || c.locks != 0):
		return nil, errors.New("bench: -async runs TryLock and Unlock on one lock per request in flight: it needs -op try, -batch 1 and -locks 0")
	case c.first > 0 && c.mode != dlock.Exclusive:
		return nil, errors.New("bench: -op first takes exclusive locks")
	case c.pinServer >= 0 && (c.inproc || c.addr != ""):
		return nil, errors.New("bench: -pin needs a spawned server: drop -inproc and -addr")
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
	if cfg.pinClient >= 0 {
		if err := pinProcess(cfg.pinClient); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
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
	d, e, err := measurePair(ctx, cfg, nil, srv)
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
		s, err := startServer(cfg.inproc, false, true, "", -1)
		if err != nil {
			return nil, err
		}
		s.dlockAddr, s.pid = cfg.addr, 0
		return s, nil
	}
	return startServer(cfg.inproc, true, cfg.echo, prof, cfg.pinServer)
}
