package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"time"

	"github.com/dlock-io/dlock"
)

// runLock is "dlockctl lock": take a lock, run a command while holding it
// (extending the lease as it runs), release it, exit with the command's
// status.
func runLock(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: dlockctl lock -addr A -name N [flags] -- command [args...]\n\n")
		fs.PrintDefaults()
	}
	addr := fs.String("addr", fmt.Sprintf("127.0.0.1:%d", dlock.DefaultPort), "server `address`")
	name := fs.String("name", "", "lock `name`")
	typ := fs.String("type", "atomic", "lock `type`: atomic, rw or fair")
	shared := fs.Bool("shared", false, "take the lock in shared mode (rw, fair)")
	ttl := fs.Duration("ttl", dlock.DefaultTTL, "lease of the hold (atomic, fair); extended while the command runs")
	wait := fs.Duration("wait", 0, "give up after waiting this long (0: wait forever)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || fs.NArg() == 0 {
		fs.Usage()
		return errors.New("lock: need -name and a command")
	}
	var lt dlock.LockType
	switch *typ {
	case "atomic":
		lt = dlock.Atomic
	case "rw":
		lt = dlock.RW
	case "fair":
		lt = dlock.Fair
	default:
		return fmt.Errorf("lock: -type %q: want atomic, rw or fair", *typ)
	}
	c, err := dlock.Dial(ctx, *addr, nil)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Shutdown(sctx)
		cancel()
	}()
	l, err := c.OpenLock(ctx, *name, dlock.LockOptions{Type: lt, TTL: *ttl})
	if err != nil {
		return err
	}
	lctx := ctx
	if *wait > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, *wait)
		defer cancel()
	}
	if *shared {
		err = l.RLock(lctx)
	} else {
		err = l.Lock(lctx)
	}
	if err != nil {
		return err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.Unlock(uctx)
		cancel()
	}()

	cmd := exec.CommandContext(ctx, fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var tick <-chan time.Time
	if lt != dlock.RW {
		t := time.NewTicker(max(*ttl/3, 100*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				return exitError(ee.ExitCode())
			}
			return err
		case <-tick:
			ectx, cancel := context.WithTimeout(ctx, *ttl/3+time.Second)
			err := l.Extend(ectx, *ttl)
			cancel()
			if err != nil {
				fmt.Fprintf(stderr, "dlockctl: lock %q: extend: %v\n", *name, err)
			}
		}
	}
}

// runStats is "dlockctl stats": print the server's non-zero debug counters.
func runStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", fmt.Sprintf("127.0.0.1:%d", dlock.DefaultPort), "server `address`")
	all := fs.Bool("all", false, "print zero counters too")
	reset := fs.Bool("reset", false, "zero the counters after printing them")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := dlock.Dial(ctx, *addr, nil)
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
