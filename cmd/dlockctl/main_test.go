package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// benchJSON runs "dlockctl bench -inproc -json args..." and decodes its
// report.
func benchJSON(t *testing.T, args ...string) *benchReport {
	t.Helper()
	var stdout, stderr bytes.Buffer
	args = append([]string{"bench", "-inproc", "-json"}, args...)
	if err := run(testContext(t), args, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("run %q: %v\nstderr: %s", args, err, stderr.String())
	}
	var rep benchReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("output of %q does not parse: %v\n%s", args, err, stdout.String())
	}
	if rep.Dlock == nil {
		t.Fatalf("output of %q has no dlock run:\n%s", args, stdout.String())
	}
	return &rep
}

func TestBenchClientsWithEcho(t *testing.T) {
	rep := benchJSON(t, "-clients", "2", "-duration", "200ms", "-warmup", "20ms", "-baseline", "echo")
	d, e := rep.Dlock, rep.Echo
	if d.Ops == 0 || d.Latency.Count != d.Ops || d.Latency.P50 <= 0 {
		t.Errorf("dlock run: ops %d, latency %+v; want ops > 0 with a latency each", d.Ops, d.Latency)
	}
	if d.LockOps != 2*d.Ops || d.Failed != 0 {
		t.Errorf("uncontended run: %d lock ops, %d failed for %d ops; want 2 per op, none failed", d.LockOps, d.Failed, d.Ops)
	}
	if e == nil || e.Ops == 0 || e.Acquire.Count != 2*e.Ops {
		t.Fatalf("echo run %+v: want ops > 0 and two ping-pongs each", e)
	}
	if rep.Ratios == nil || rep.Ratios.P50 <= 0 || rep.Ratios.Throughput <= 0 {
		t.Errorf("ratios %+v: want positive", rep.Ratios)
	}
	if d.ServerCPUMicros != -1 || d.ClientCPUMicros != -1 {
		t.Errorf("in-process server CPU = %v, client CPU = %v, want -1 (unknown: one process)", d.ServerCPUMicros, d.ClientCPUMicros)
	}
}

func TestBenchCount(t *testing.T) {
	rep := benchJSON(t, "-clients", "2", "-inflight", "3", "-count", "300", "-warmup", "0", "-type", "rw", "-mode", "shared")
	if got := rep.Dlock.Ops; got != 300 {
		t.Errorf("ops = %d, want 300", got)
	}
}

func TestBenchBatch(t *testing.T) {
	rep := benchJSON(t, "-batch", "31", "-count", "50", "-warmup", "0")
	if d := rep.Dlock; d.Ops != 50 || d.LockOps != 50*62 || d.Failed != 0 {
		t.Errorf("batch run: ops %d lock ops %d failed %d; want 50, %d, 0", d.Ops, d.LockOps, d.Failed, 50*62)
	}
}

func TestBenchContendedFair(t *testing.T) {
	rep := benchJSON(t, "-clients", "4", "-locks", "1", "-type", "fair", "-op", "block", "-duration", "200ms", "-warmup", "20ms")
	d := rep.Dlock
	if d.Ops == 0 || d.HandOversPerSec <= 0 {
		t.Fatalf("contended run: ops %d, hand-overs/s %v; want > 0", d.Ops, d.HandOversPerSec)
	}
	if !d.OrderChecked || d.OrderViolations != 0 || d.ExclusionViolations != 0 {
		t.Errorf("order checked %v, %d order violations (%s), %d exclusion violations; want checked, none",
			d.OrderChecked, d.OrderViolations, d.OrderFirst, d.ExclusionViolations)
	}
}

func TestBenchContendedTry(t *testing.T) {
	for _, typ := range []string{"atomic", "fair"} {
		rep := benchJSON(t, "-clients", "3", "-locks", "1", "-type", typ, "-count", "300", "-warmup", "0")
		if d := rep.Dlock; d.Ops != 300 || d.ExclusionViolations != 0 {
			t.Errorf("%s: ops %d, exclusion violations %d; want 300, 0", typ, d.Ops, d.ExclusionViolations)
		}
	}
}

func TestBenchTextOutput(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "-inproc", "-count", "20", "-warmup", "0", "-baseline", "echo"}
	if err := run(testContext(t), args, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{"echo   20 pairs", "dlock  20 ops", "acq+rel   p50", "ratio  ops/s"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestParseBenchFlags(t *testing.T) {
	c, err := parseBenchFlags([]string{"-clients", "4", "-inflight", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.lockGroups() != 8 || c.typ != dlock.Atomic || c.mode != dlock.Exclusive || c.block || c.batch != 1 {
		t.Errorf("defaults: %+v (lock groups %d); want 8 distinct atomic exclusive try locks", c, c.lockGroups())
	}
	c, err = parseBenchFlags([]string{"-type", "fair", "-mode", "shared", "-op", "block", "-locks", "1", "-baseline", "echo"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.typ != dlock.Fair || c.mode != dlock.Shared || !c.block || c.lockGroups() != 1 || !c.echo {
		t.Errorf("parsed %+v", c)
	}
	bad := [][]string{
		{"-type", "mutex"},
		{"-mode", "shared"}, // atomic has no shared mode
		{"-op", "spin"},
		{"-batch", "32"},
		{"-batch", "4", "-op", "block"},
		{"-clients", "0"},
		{"-baseline", "udp"},
		{"-scenario", "nope"},
		{"-scenario", "single", "-addr", "127.0.0.1:1"},
		{"-duration", "0"},
		{"-async", "-locks", "1"}, // a window of requests needs a lock per request
		{"-async", "-op", "block"},
		{"extra"},
	}
	for _, args := range bad {
		if _, err := parseBenchFlags(args, io.Discard); err == nil {
			t.Errorf("parseBenchFlags(%q) succeeded, want an error", args)
		}
	}
}

func TestEchoServer(t *testing.T) {
	e, err := listenEcho("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	for _, tc := range []struct {
		inflight int
		mux      bool
	}{{1, false}, {1, true}, {4, true}} {
		inflight := tc.inflight
		nc, err := net.Dial("tcp", e.ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c := newEchoConn(nc, inflight, tc.mux)
		done := make(chan error, inflight)
		for slot := range inflight {
			go func() {
				for range 100 {
					if err := c.pingPong(slot); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
		}
		for range inflight {
			if err := <-done; err != nil {
				t.Errorf("inflight %d: %v", inflight, err)
			}
		}
		if !tc.mux {
			if got := c.reply[3]; got != c.frame[3]|0x80 {
				t.Errorf("reply type %#x, want %#x", got, c.frame[3]|0x80)
			}
		}
		c.close()
	}
}

func TestCheckTicketOrder(t *testing.T) {
	good := []holdRecord{{seq: 2, nx: 0, token: 5}, {seq: 1, nx: 0xFFFF, token: 4}, {seq: 3, nx: 1, token: 9}}
	if n, first := checkTicketOrder(good); n != 0 {
		t.Errorf("in-order holds (with Nx wrap): %d violations (%s)", n, first)
	}
	// A skipped ticket (given up by its waiter) is not a violation; serving
	// an earlier ticket after a later one, or a repeated token, is.
	skipped := []holdRecord{{seq: 1, nx: 3, token: 1}, {seq: 2, nx: 5, token: 2}}
	if n, first := checkTicketOrder(skipped); n != 0 {
		t.Errorf("a retired ticket between two holds: %d violations (%s)", n, first)
	}
	bad := []holdRecord{{seq: 1, nx: 3, token: 1}, {seq: 2, nx: 5, token: 2}, {seq: 3, nx: 4, token: 3}, {seq: 4, nx: 6, token: 3}}
	if n, _ := checkTicketOrder(bad); n != 2 {
		t.Errorf("out-of-order ticket and repeated token: %d violations, want 2", n)
	}
}

func TestMemoryFill(t *testing.T) {
	srv, err := startServer(true, true, false, "", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	m, err := runMemory(testContext(t), srv, memFill{clients: 5, locks: 50, objects: 40, nameLen: 64})
	if err != nil {
		t.Fatal(err)
	}
	if m.Locks != 50 || m.Objects != 40 || m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("memory result %+v", m)
	}
	if got := len(fixedName("memory/lock/", 7, 64)); got != 64 {
		t.Errorf("name length %d, want 64", got)
	}
}
