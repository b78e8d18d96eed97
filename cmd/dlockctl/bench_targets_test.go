package main

import (
	"bytes"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestBenchFirstUse: -op first opens every lock in the operation that takes
// it (two requests before the unlock: the open-and-lock and no other), and
// -op first-split takes one more (OpenLock, then TryLock).
func TestBenchFirstUse(t *testing.T) {
	for _, tc := range []struct {
		op      string
		perOp   uint64 // lock requests per operation: acquire, unlock, release
		opsName string
	}{{"first", 3, "first"}, {"first-split", 4, "first-split"}} {
		rep := benchJSON(t, "-op", tc.op, "-count", "40", "-warmup", "0", "-baseline", "echo")
		d := rep.Dlock
		if d.Ops != 40 || d.Failed != 0 || d.LockOps != 40*tc.perOp {
			t.Errorf("-op %s: ops %d, failed %d, lock requests %d; want 40, 0, %d", tc.op, d.Ops, d.Failed, d.LockOps, 40*tc.perOp)
		}
		if !strings.Contains(rep.Config, "op="+tc.opsName) || d.Acquire.Count != 40 || rep.Echo == nil {
			t.Errorf("-op %s: config %q, %d acquisitions, echo %v", tc.op, rep.Config, d.Acquire.Count, rep.Echo)
		}
	}
}

// TestBenchPipelinedEcho: with several requests in flight the echo floor is
// the one-goroutine window, and counts each ping-pong once.
func TestBenchPipelinedEcho(t *testing.T) {
	rep := benchJSON(t, "-clients", "2", "-inflight", "8", "-count", "400", "-warmup", "0", "-baseline", "echo")
	e := rep.Echo
	if e == nil || e.LockOps != 400 || e.Ops != 200 || e.Acquire.Count != 400 || e.Latency.Count != 0 {
		t.Fatalf("pipelined echo %+v: want 400 ping-pongs (200 pairs), each timed", e)
	}
	rep = benchJSON(t, "-clients", "1", "-inflight", "8", "-count", "100", "-warmup", "0", "-baseline", "echo", "-echo-mux")
	if e := rep.Echo; e == nil || e.Ops != 100 || e.LockOps != 200 {
		t.Fatalf("-echo-mux echo %+v: want 100 pairs", e)
	}
}

// TestBenchAsync: -async keeps the window with the Pipeline API from one
// goroutine per client: every operation is a TryLock that got its lock and
// an Unlock, counted once, on every lock type; the pipeline scenario uses it.
func TestBenchAsync(t *testing.T) {
	for _, typ := range []string{"atomic", "rw", "fair"} {
		rep := benchJSON(t, "-clients", "2", "-inflight", "8", "-async", "-type", typ, "-count", "400", "-warmup", "0", "-baseline", "echo")
		d := rep.Dlock
		if d.Ops != 400 || d.LockOps != 800 || d.Failed != 0 || d.Acquire.Count != 400 || d.Latency.Count != 400 {
			t.Errorf("-async -type %s: ops %d, lock requests %d, failed %d, timed %d/%d; want 400, 800, 0, 400/400",
				typ, d.Ops, d.LockOps, d.Failed, d.Acquire.Count, d.Latency.Count)
		}
		if !strings.Contains(rep.Config, "inflight=8 async") || rep.Echo == nil || rep.Echo.LockOps != 400 { // the window counts a ping-pong as an operation
			t.Errorf("-async -type %s: config %q, echo %+v", typ, rep.Config, rep.Echo)
		}
	}
	var c benchConfig
	scenarioByName("pipeline").setup(&c)
	if !c.async || c.inflight != 256 || c.clients != 1 {
		t.Errorf("pipeline scenario: %+v, want one client keeping 256 requests in flight with -async", c)
	}
}

// TestBenchContendedTurns: 4 blocking clients on one lock are counted for
// round-robin breaks.
func TestBenchContendedTurns(t *testing.T) {
	rep := benchJSON(t, "-clients", "4", "-locks", "1", "-type", "atomic", "-op", "block", "-duration", "200ms", "-warmup", "20ms")
	if d := rep.Dlock; !d.TurnsChecked || d.ExclusionViolations != 0 || d.HandOversPerSec <= 0 {
		t.Fatalf("contended atomic run: turns checked %v, exclusion violations %d, hand-overs %v", d.TurnsChecked, d.ExclusionViolations, d.HandOversPerSec)
	}
}

func TestCountTurnBreaks(t *testing.T) {
	// Three workers served round robin: no break.
	var holds []holdRecord
	for i := range 9 {
		holds = append(holds, holdRecord{seq: uint64(i + 1), worker: i % 3, slice: 1, measured: true})
	}
	if n := countTurnBreaks(holds, 3); n != 0 {
		t.Errorf("round robin: %d breaks", n)
	}
	// Worker 0 served twice in a row: one break; across slices, none.
	holds = []holdRecord{
		{seq: 1, worker: 0, slice: 1, measured: true}, {seq: 2, worker: 1, slice: 1, measured: true},
		{seq: 3, worker: 2, slice: 1, measured: true}, {seq: 4, worker: 0, slice: 1, measured: true},
		{seq: 5, worker: 0, slice: 1, measured: true},
		{seq: 6, worker: 0, slice: 2, measured: true},
		{seq: 7, worker: 0, slice: 3, measured: false}, {seq: 8, worker: 0, slice: 3, measured: false},
	}
	if n := countTurnBreaks(holds, 3); n != 1 {
		t.Errorf("one repeat: %d breaks, want 1", n)
	}
}

// TestBenchScenarioPinned runs the built dlockctl: the first-use scenario
// against a spawned server pinned to CPU 0, the tool pinned to CPU 0 too
// (one CPU is all a test machine is sure to have), and checks the report.
func TestBenchScenarioPinned(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("-pin needs Linux")
	}
	_, dlockctl := binaries(t)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(dlockctl, "bench", "-scenario", "first", "-pin", "0,0", "-duration", "200ms", "-warmup", "20ms", "-json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "open-and-lock p50 ÷ echo ping-pong p50") {
		t.Errorf("table lacks the first-use check:\n%s", stdout.String())
	}
	// With the server in a child process, the tool's own CPU time is known.
	if out := stdout.String(); !strings.Contains(out, `"client_cpu_us_per_op"`) || strings.Contains(out, `"client_cpu_us_per_op": -1`) {
		t.Errorf("no client CPU figure with a spawned server:\n%s", out)
	}
}

func TestParseBenchPin(t *testing.T) {
	c, err := parseBenchFlags([]string{"-pin", "0,1"}, io.Discard)
	if err != nil || c.pinServer != 0 || c.pinClient != 1 {
		t.Fatalf("-pin 0,1: %+v, %v", c, err)
	}
	if c, _ := parseBenchFlags(nil, io.Discard); c.pinServer != -1 || c.pinClient != -1 {
		t.Errorf("default pins %d,%d; want none", c.pinServer, c.pinClient)
	}
	for _, args := range [][]string{{"-pin", "0"}, {"-pin", "a,b"}, {"-pin", "-1,0"}, {"-pin", "0,1", "-inproc"},
		{"-op", "first", "-batch", "2"}, {"-op", "first", "-type", "rw", "-mode", "shared"}} {
		if _, err := parseBenchFlags(args, io.Discard); err == nil {
			t.Errorf("parseBenchFlags(%q) succeeded, want an error", args)
		}
	}
}
