package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// latency is a summary of a histogram, in microseconds.
type latency struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
}

func summarize(h *hist) latency {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	l := latency{Count: h.Count()}
	if h.Count() > 0 {
		l.Mean = h.Mean() / 1e3
		l.P50 = us(h.Quantile(0.5))
		l.P99 = us(h.Quantile(0.99))
		l.P999 = us(h.Quantile(0.999))
		l.Max = us(h.Max())
	}
	return l
}

// runResult is the outcome of one measured run. For "dlock" an operation
// is an acquire + release, Latency its duration and Acquire that of the
// acquire alone (the wait, for a blocking contended run). For "echo" an
// operation is a pair of ping-pongs, Latency the pair and Acquire one
// ping-pong.
type runResult struct {
	Kind            string  `json:"kind"`
	Ops             uint64  `json:"ops"`
	LockOps         uint64  `json:"lock_ops"` // requests: 2 per op, K per batch entry set
	Failed          uint64  `json:"failed"`   // acquisitions that found the lock busy
	Seconds         float64 `json:"seconds"`
	OpsPerSec       float64 `json:"ops_per_sec"`
	LockOpsPerSec   float64 `json:"lock_ops_per_sec"`
	HandOversPerSec float64 `json:"handovers_per_sec,omitempty"`
	Latency         latency `json:"latency"`
	Acquire         latency `json:"acquire"`
	// ServerCPUMicros is the server's CPU time per operation; -1 when it
	// cannot be read (in-process or external server).
	ServerCPUMicros float64 `json:"server_cpu_us_per_op"`
	// ClientCPUMicros is the load tool's own CPU time per operation (the
	// clients', and the tool's clock readings and histograms); -1 when the
	// server runs in the process.
	ClientCPUMicros     float64 `json:"client_cpu_us_per_op"`
	ExclusionViolations int64   `json:"exclusion_violations"`
	OrderChecked        bool    `json:"order_checked,omitempty"`
	OrderViolations     int64   `json:"order_violations"`
	OrderFirst          string  `json:"order_first_violation,omitempty"`
	TurnsChecked        bool    `json:"turns_checked,omitempty"`
	TurnBreaks          int64   `json:"round_robin_breaks"`
}

// ratios of a dlock run to the echo floor of the same run.
type ratios struct {
	Throughput float64 `json:"throughput"` // dlock ops/s ÷ echo pairs/s
	P50        float64 `json:"p50"`        // dlock op p50 ÷ echo pair p50
	P99        float64 `json:"p99"`
	P999       float64 `json:"p999"`
}

type benchReport struct {
	Config string     `json:"config"`
	Dlock  *runResult `json:"dlock"`
	Echo   *runResult `json:"echo,omitempty"`
	Ratios *ratios    `json:"ratios,omitempty"`
}

func (r *benchReport) ratios() {
	if r.Dlock == nil || r.Echo == nil {
		return
	}
	d, e := r.Dlock, r.Echo
	r.Ratios = &ratios{
		Throughput: div(d.OpsPerSec, e.OpsPerSec),
		P50:        div(d.Latency.P50, e.Latency.P50),
		P99:        div(d.Latency.P99, e.Latency.P99),
		P999:       div(d.Latency.P999, e.Latency.P999),
	}
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0 // JSON has no NaN
	}
	return a / b
}

func describe(c *benchConfig) string {
	s := fmt.Sprintf("clients=%d locks=%d type=%s mode=%s op=%s inflight=%d", c.clients, c.lockGroups(), c.typ, c.mode, c.opName(), c.inflight)
	if c.async {
		s += " async"
	}
	if c.count > 0 {
		return s + fmt.Sprintf(" count=%d", c.count)
	}
	return s + fmt.Sprintf(" duration=%s", c.duration)
}

func (r *benchReport) print(w io.Writer) {
	fmt.Fprintf(w, "bench %s\n", r.Config)
	if e := r.Echo; e != nil {
		fmt.Fprintf(w, "echo   %d pairs in %.2fs = %.0f pairs/s (%.0f ping-pongs/s)\n", e.Ops, e.Seconds, e.OpsPerSec, e.LockOpsPerSec)
		if e.Latency.Count > 0 { // not measured by the pipelined window
			fmt.Fprintf(w, "       pair      %s\n", fmtLatency(e.Latency))
		}
		fmt.Fprintf(w, "       ping-pong %s\n", fmtLatency(e.Acquire))
		fmt.Fprintf(w, "       server CPU %s%s\n", fmtCPU(e.ServerCPUMicros, "pair"), fmtClientCPU(e.ClientCPUMicros, "pair"))
	}
	if d := r.Dlock; d != nil {
		fmt.Fprintf(w, "dlock  %d ops in %.2fs = %.0f ops/s (%.0f lock requests/s)", d.Ops, d.Seconds, d.OpsPerSec, d.LockOpsPerSec)
		if d.Failed > 0 {
			fmt.Fprintf(w, ", %d acquisitions found the lock busy", d.Failed)
		}
		fmt.Fprintln(w)
		if d.HandOversPerSec > 0 {
			fmt.Fprintf(w, "       hand-overs %.0f/s\n", d.HandOversPerSec)
		}
		fmt.Fprintf(w, "       acq+rel   %s\n", fmtLatency(d.Latency))
		fmt.Fprintf(w, "       acquire   %s\n", fmtLatency(d.Acquire))
		fmt.Fprintf(w, "       server CPU %s%s\n", fmtCPU(d.ServerCPUMicros, "op"), fmtClientCPU(d.ClientCPUMicros, "op"))
		if d.TurnsChecked {
			fmt.Fprintf(w, "       round-robin breaks %d\n", d.TurnBreaks)
		}
		if d.OrderChecked || d.ExclusionViolations > 0 {
			fmt.Fprintf(w, "       ticket order violations %d, mutual exclusion violations %d", d.OrderViolations, d.ExclusionViolations)
			if d.OrderFirst != "" {
				fmt.Fprintf(w, " (first: %s)", d.OrderFirst)
			}
			fmt.Fprintln(w)
		}
	}
	if q := r.Ratios; q != nil {
		fmt.Fprintf(w, "ratio  ops/s ÷ echo pairs/s %.2f; p50 %.2f× p99 %.2f× p99.9 %.2f× the echo pair\n", q.Throughput, q.P50, q.P99, q.P999)
	}
}

func fmtLatency(l latency) string {
	return fmt.Sprintf("p50 %s  p99 %s  p99.9 %s  max %s  (n=%d)", fmtMicros(l.P50), fmtMicros(l.P99), fmtMicros(l.P999), fmtMicros(l.Max), l.Count)
}

// fmtMicros formats a duration given in microseconds.
func fmtMicros(us float64) string {
	d := time.Duration(us * 1e3)
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", us)
	case d < time.Second:
		return fmt.Sprintf("%.2fms", us/1e3)
	}
	return fmt.Sprintf("%.2fs", us/1e6)
}

func fmtCPU(us float64, per string) string {
	if us < 0 {
		return "n/a (the server is not a child process)"
	}
	return fmt.Sprintf("%.2fµs/%s", us, per)
}

// fmtClientCPU is the load tool's CPU time per operation, for the line of
// the server's; nothing when unknown.
func fmtClientCPU(us float64, per string) string {
	if us < 0 {
		return ""
	}
	return fmt.Sprintf(", client CPU %.2fµs/%s", us, per)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
