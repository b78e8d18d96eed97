package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/dlock-io/dlock"
)

// scenario is one of the targets the tool is built to check (the targets of
// the performance issue, each a ratio to a raw TCP echo measured in the same
// run). Each runs against a fresh server, with its echo floor served by the
// same server process.
type scenario struct {
	name string
	desc string
	// setup adjusts a copy of the user's flags (duration, warmup, inproc,
	// pin are kept).
	setup func(c *benchConfig)
	// echo, if set, adjusts the echo floor's copy of the flags; without it
	// the echo runs at the dlock run's concurrency.
	echo func(c *benchConfig)
	// checks compares a run with its targets.
	checks func(d, e *runResult) []check
}

// check is one line of the scenario table.
type check struct {
	Scenario string  `json:"scenario"`
	What     string  `json:"what"`
	Measured string  `json:"measured"`
	Floor    string  `json:"floor,omitempty"`
	Ratio    float64 `json:"ratio,omitempty"` // to the echo floor
	Value    float64 `json:"value"`           // the quantity compared with Limit
	Target   string  `json:"target"`
	Pass     bool    `json:"pass"`
}

func atMost(v, limit float64) bool  { return v <= limit }
func atLeast(v, limit float64) bool { return v >= limit }

// ratioCheck is a check of a ratio to the echo floor.
func ratioCheck(what, measured, floor string, r float64, least bool, limit float64) check {
	c := check{What: what, Measured: measured, Floor: floor, Ratio: r, Value: r}
	if least {
		c.Target, c.Pass = fmt.Sprintf("≥ %.2f×", limit), atLeast(r, limit)
	} else {
		c.Target, c.Pass = fmt.Sprintf("≤ %.2f×", limit), atMost(r, limit)
	}
	return c
}

func perSec(v float64) string { return fmt.Sprintf("%.0f/s", v) }

// oneConn makes the echo floor one connection with one request in flight:
// one round trip, the floor of one hand-over.
func oneConn(c *benchConfig) { c.clients, c.inflight, c.locks, c.block = 1, 1, 0, false }

// contended is the scenario of 64 clients waiting for one lock of type typ
// with blocking Lock: hand-overs against one per echo round trip, the wait
// against 63 round trips, and the order of service.
func contended(name string, typ dlock.LockType) *scenario {
	return &scenario{
		name: name,
		desc: fmt.Sprintf("64 clients contending for one %s lock with blocking Lock, vs one echo round trip per hand-over", typ),
		setup: func(c *benchConfig) {
			c.clients, c.locks, c.typ, c.mode, c.block = 64, 1, typ, dlock.Exclusive, true
		},
		echo: oneConn,
		checks: func(d, e *runResult) []check {
			rtt := e.Acquire.Mean // µs
			wait63 := 63 * rtt
			cs := []check{
				ratioCheck("hand-overs/s ÷ one per echo round trip", perSec(d.HandOversPerSec), perSec(e.LockOpsPerSec),
					div(d.HandOversPerSec, e.LockOpsPerSec), true, 0.95),
				ratioCheck("wait p99 ÷ 63 echo round trips", fmtMicros(d.Acquire.P99), fmtMicros(wait63),
					div(d.Acquire.P99, wait63), false, 1.5),
				{What: "mutual exclusion", Measured: fmt.Sprintf("%d overlapping holds", d.ExclusionViolations),
					Value: float64(d.ExclusionViolations), Target: "0 violations", Pass: d.ExclusionViolations == 0},
			}
			if d.OrderChecked {
				order := "ticket order held"
				if d.OrderViolations > 0 {
					order = fmt.Sprintf("%d out of order (%s)", d.OrderViolations, d.OrderFirst)
				}
				cs = append(cs, check{What: "strict FIFO: grants in ticket order", Measured: order, Value: float64(d.OrderViolations),
					Target: "0 violations", Pass: d.OrderViolations == 0})
			}
			if d.TurnsChecked {
				// Not a FIFO check: a worker whose goroutine is late to queue
				// again is overtaken legitimately. Reported, not judged.
				cs = append(cs, check{What: "round-robin breaks (FIFO, or late re-queues)", Measured: fmt.Sprintf("%d of %d holds", d.TurnBreaks, d.Acquire.Count),
					Value: float64(d.TurnBreaks), Target: "reported", Pass: true})
			}
			return cs
		},
	}
}

var scenarios = []*scenario{
	{
		name: "single",
		desc: "1 client, acquire + release of an uncontended ATOMIC lock vs two echo ping-pongs",
		setup: func(c *benchConfig) {
			c.clients, c.typ, c.mode = 1, dlock.Atomic, dlock.Exclusive
		},
		checks: func(d, e *runResult) []check {
			return []check{
				ratioCheck("acq+rel p50 ÷ echo pair p50", fmtMicros(d.Latency.P50), fmtMicros(e.Latency.P50),
					div(d.Latency.P50, e.Latency.P50), false, 1.05),
				ratioCheck("acq+rel p99 ÷ echo pair p99", fmtMicros(d.Latency.P99), fmtMicros(e.Latency.P99),
					div(d.Latency.P99, e.Latency.P99), false, 1.3),
			}
		},
	},
	{
		name: "distinct64",
		desc: "64 clients on 64 distinct ATOMIC locks vs echo pairs at 64 connections",
		setup: func(c *benchConfig) {
			c.clients, c.typ, c.mode = 64, dlock.Atomic, dlock.Exclusive
		},
		checks: func(d, e *runResult) []check {
			cs := []check{ratioCheck("pairs/s ÷ echo pairs/s", perSec(d.OpsPerSec), perSec(e.OpsPerSec),
				div(d.OpsPerSec, e.OpsPerSec), true, 0.9)}
			if d.ServerCPUMicros >= 0 && e.ServerCPUMicros > 0 {
				cs = append(cs, ratioCheck("server CPU per pair ÷ echo's", fmtCPU(d.ServerCPUMicros, "pair"), fmtCPU(e.ServerCPUMicros, "pair"),
					div(d.ServerCPUMicros, e.ServerCPUMicros), false, 1.15))
			}
			return cs
		},
	},
	{
		name: "pipeline",
		desc: "1 client, one goroutine keeping 256 requests in flight with the Pipeline API (TryLock, Unlock on 256 distinct ATOMIC locks) vs the pipelined echo window (-inflight 256 without -async: 256 goroutines of synchronous calls)",
		setup: func(c *benchConfig) {
			c.clients, c.inflight, c.async, c.typ, c.mode = 1, 256, true, dlock.Atomic, dlock.Exclusive
		},
		checks: func(d, e *runResult) []check {
			return []check{ratioCheck("lock requests/s ÷ pipelined echo ping-pongs/s", perSec(d.LockOpsPerSec), perSec(e.LockOpsPerSec),
				div(d.LockOpsPerSec, e.LockOpsPerSec), true, 0.9)}
		},
	},
	{
		name: "batch31",
		desc: "1 client, BatchTryLock of 31 ATOMIC locks (one round trip) vs one echo ping-pong",
		setup: func(c *benchConfig) {
			c.clients, c.batch, c.typ, c.mode = 1, dlock.MaxBatch, dlock.Atomic, dlock.Exclusive
		},
		checks: func(d, e *runResult) []check {
			return []check{ratioCheck("batch trylock p50 ÷ echo ping-pong p50", fmtMicros(d.Acquire.P50), fmtMicros(e.Acquire.P50),
				div(d.Acquire.P50, e.Acquire.P50), false, 1.1)}
		},
	},
	contended("fair64", dlock.Fair),
	contended("atomic64", dlock.Atomic),
	{
		name: "first",
		desc: "1 client, first use of a lock: OpenAndTryLock (open and lock in one request) vs one echo ping-pong",
		setup: func(c *benchConfig) {
			c.clients, c.first, c.typ, c.mode = 1, 1, dlock.Atomic, dlock.Exclusive
		},
		checks: func(d, e *runResult) []check {
			return []check{ratioCheck("open-and-lock p50 ÷ echo ping-pong p50", fmtMicros(d.Acquire.P50), fmtMicros(e.Acquire.P50),
				div(d.Acquire.P50, e.Acquire.P50), false, 1.1)}
		},
	},
	{name: "memory", desc: "server filled to its limits: 1000 clients, 51 200 locks (64-byte names), 102 400 objects"},
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios {
		names = append(names, s.name)
	}
	return names
}

func scenarioByName(name string) *scenario {
	for _, s := range scenarios {
		if s.name == name {
			return s
		}
	}
	return nil
}

// scenarioResult is one scenario's runs and checks.
type scenarioResult struct {
	Name   string     `json:"name"`
	Desc   string     `json:"description"`
	Config string     `json:"config,omitempty"`
	Dlock  *runResult `json:"dlock,omitempty"`
	Echo   *runResult `json:"echo,omitempty"`
	Memory *memResult `json:"memory,omitempty"`
	Checks []check    `json:"checks"`
	Error  string     `json:"error,omitempty"`
}

func runScenarios(ctx context.Context, base *benchConfig, stdout, stderr io.Writer) error {
	list := scenarios
	if base.scenario != "all" {
		list = []*scenario{scenarioByName(base.scenario)}
	}
	var results []*scenarioResult
	failed := false
	for _, sc := range list {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "scenario %s: %s\n", sc.name, sc.desc)
		res := runScenario(ctx, base, sc)
		results = append(results, res)
		if res.Error != "" {
			failed = true
			fmt.Fprintf(stderr, "scenario %s: %s\n", sc.name, res.Error)
		}
		if !base.json {
			printScenarioDetail(stderr, res)
		}
	}
	if base.json {
		if err := writeJSON(stdout, results); err != nil {
			return err
		}
	} else {
		printScenarioTable(stdout, results)
	}
	// Only a broken guarantee (ticket order, exclusion) or an error makes
	// the exit status non-zero; performance misses are reported.
	for _, r := range results {
		if d := r.Dlock; d != nil && (d.OrderViolations > 0 || d.ExclusionViolations > 0) {
			failed = true
		}
	}
	if failed {
		return errors.New("bench: scenario errors or correctness violations")
	}
	return ctx.Err()
}

func runScenario(ctx context.Context, base *benchConfig, sc *scenario) *scenarioResult {
	res := &scenarioResult{Name: sc.name, Desc: sc.desc}
	if sc.name == "memory" {
		srv, err := benchServer(&benchConfig{inproc: base.inproc, serverCPUProfile: base.serverCPUProfile, pinServer: base.pinServer}, sc.name)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		defer srv.stop()
		m, err := runMemory(ctx, srv, memoryFill)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		res.Memory = m
		mb := float64(m.RSS) / (1 << 20)
		res.Checks = []check{{Scenario: sc.name, What: "server RSS when full", Measured: fmt.Sprintf("%.1f MB (peak %.1f MB)", mb, float64(m.HWM)/(1<<20)),
			Value: mb, Target: "≤ 80 MB", Pass: atMost(mb, 80)}}
		return res
	}
	cfg := *base
	cfg.scenario, cfg.addr, cfg.echo = "", "", true
	cfg.clients, cfg.locks, cfg.batch, cfg.inflight, cfg.block, cfg.first, cfg.async = 1, 0, 1, 1, false, 0, false
	sc.setup(&cfg)
	res.Config = describe(&cfg)
	var ecfg *benchConfig
	if sc.echo != nil {
		ec := cfg
		sc.echo(&ec)
		ecfg = &ec
		res.Config += fmt.Sprintf("; echo clients=%d inflight=%d", ec.clients, ec.inflight)
	}
	srv, err := benchServer(&cfg, sc.name)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer srv.stop()
	d, e, err := measurePair(ctx, &cfg, ecfg, srv)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Dlock, res.Echo = d, e
	res.Checks = sc.checks(d, e)
	for i := range res.Checks {
		res.Checks[i].Scenario = sc.name
	}
	return res
}

func printScenarioDetail(w io.Writer, r *scenarioResult) {
	if r.Dlock != nil {
		rep := &benchReport{Config: r.Config, Dlock: r.Dlock, Echo: r.Echo}
		rep.ratios()
		rep.print(w)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "memory %d clients, %d locks, %d objects in %.1fs; server VmRSS %.1f MB, VmHWM %.1f MB\n",
			m.Clients, m.Locks, m.Objects, m.Seconds, float64(m.RSS)/(1<<20), float64(m.HWM)/(1<<20))
	}
	fmt.Fprintln(w)
}

func printScenarioTable(w io.Writer, results []*scenarioResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tcheck\tmeasured\techo floor\tratio\ttarget\tresult")
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\tERROR\n", r.Name, strings.ReplaceAll(r.Error, "\t", " "))
			continue
		}
		for _, c := range r.Checks {
			ratio := "-"
			if c.Ratio != 0 {
				ratio = fmt.Sprintf("%.2f", c.Ratio)
			}
			floor := c.Floor
			if floor == "" {
				floor = "-"
			}
			verdict := "MISS"
			if c.Pass {
				verdict = "PASS"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Scenario, c.What, c.Measured, floor, ratio, c.Target, verdict)
		}
	}
	tw.Flush()
}

// memFill is how full the memory scenario makes the server.
type memFill struct {
	clients, locks, objects int
	nameLen                 int
}

var memoryFill = memFill{clients: dlock.MaxClients, locks: dlock.MaxLocks, objects: dlock.MaxObjects, nameLen: 64}

type memResult struct {
	Clients int     `json:"clients"`
	Locks   int     `json:"locks"`
	Objects int     `json:"objects"`
	Seconds float64 `json:"seconds"`
	RSS     int64   `json:"rss_bytes"`
	HWM     int64   `json:"hwm_bytes"`
}

// fixedName returns a name of exactly n bytes: kind, then i zero-padded.
func fixedName(kind string, i, n int) string {
	return kind + fmt.Sprintf("%0*d", n-len(kind), i)
}

// runMemory fills the server and reads its memory use.
func runMemory(ctx context.Context, srv *server, fill memFill) (*memResult, error) {
	start := time.Now()
	clients, err := dialClients(ctx, srv.dlockAddr, fill.clients)
	if err != nil {
		return nil, err
	}
	defer closeClients(clients)
	const parallel = 64
	run := func(n int, do func(c *dlock.Client, i int) error) error {
		var wg sync.WaitGroup
		errs := make([]error, parallel)
		for g := range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < n; i += parallel {
					if err := do(clients[i%len(clients)], i); err != nil {
						errs[g] = err
						return
					}
				}
			}()
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	err = run(fill.locks, func(c *dlock.Client, i int) error {
		_, err := c.OpenLock(ctx, fixedName("memory/lock/", i, fill.nameLen), dlock.LockOptions{Type: dlock.LockType(i % 3)})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("memory: open locks: %w", err)
	}
	err = run(fill.objects, func(c *dlock.Client, i int) error {
		_, err := c.CreateAtomic64(ctx, fixedName("memory/obj/", i, fill.nameLen), uint64(i), dlock.Atomic64Options{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("memory: create objects: %w", err)
	}
	rss, hwm, err := srv.memory()
	if err != nil {
		return nil, err
	}
	return &memResult{Clients: fill.clients, Locks: fill.locks, Objects: fill.objects,
		Seconds: time.Since(start).Seconds(), RSS: rss, HWM: hwm}, nil
}
