package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/dlock-io/dlock"
)

// runStats is "dlockctl stats": print the server's non-zero debug counters.
func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addConnFlags(fs)
	all := fs.Bool("all", false, "print zero counters too")
	reset := fs.Bool("reset", false, "zero the counters after printing them")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Shutdown(ctx)
	st, err := c.ServerStats(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		m := make(map[string]uint64)
		for i, v := range st {
			if v != 0 || *all {
				m[dlock.Counter(i).String()] = v
			}
		}
		if err := writeJSON(stdout, m); err != nil {
			return err
		}
	} else {
		printed := false
		for i, v := range st {
			if v != 0 || *all {
				fmt.Fprintf(stdout, "%-24s %d\n", dlock.Counter(i), v)
				printed = true
			}
		}
		if !printed {
			fmt.Fprintln(stdout, "all counters are zero")
		}
	}
	if *reset {
		return c.ResetServerStats(ctx)
	}
	return nil
}
