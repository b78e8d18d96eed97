package main

import (
	"context"
	"fmt"
	"io"
)

// runCompare measures the same workload against two servers, -addr and
// -compare (for instance the primary of a highly available cluster and a
// standalone server), interleaved in slices in one run, and prints each
// figure of -addr as a ratio to -compare's.
func runCompare(ctx context.Context, cfg *benchConfig, stdout io.Writer) error {
	a, err := newDlockRun(ctx, cfg, &server{dlockAddr: cfg.addr})
	if err != nil {
		return err
	}
	defer a.close()
	b, err := newDlockRun(ctx, cfg, &server{dlockAddr: cfg.compare})
	if err != nil {
		return err
	}
	defer b.close()
	if err := measureAll(ctx, cfg, a, b); err != nil {
		return err
	}
	ra, rb := a.result(), b.result()
	fmt.Fprintf(stdout, "bench %s, interleaved in %v slices\n", describe(cfg), sliceLen)
	for _, x := range []struct {
		name string
		r    *runResult
	}{{cfg.addr, ra}, {cfg.compare, rb}} {
		fmt.Fprintf(stdout, "%-22s %10.0f ops/s  acq+rel p50 %8.1fµs  p99 %8.1fµs  p99.9 %8.1fµs\n",
			x.name, x.r.OpsPerSec, x.r.Latency.P50, x.r.Latency.P99, x.r.Latency.P999)
	}
	div := func(x, y float64) float64 {
		if y == 0 {
			return 0
		}
		return x / y
	}
	fmt.Fprintf(stdout, "ratio %s ÷ %s: ops/s %.3f  p50 %.3f  p99 %.3f\n", cfg.addr, cfg.compare,
		div(ra.OpsPerSec, rb.OpsPerSec), div(ra.Latency.P50, rb.Latency.P50), div(ra.Latency.P99, rb.Latency.P99))
	if ra.ExclusionViolations+rb.ExclusionViolations > 0 {
		return fmt.Errorf("bench: %d mutual-exclusion violations", ra.ExclusionViolations+rb.ExclusionViolations)
	}
	return nil
}
