package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/dlock-io/dlock"
)

// Exit statuses of "dlockctl lock" besides the command's own.
const (
	exitNotAcquired = 124 // the lock was not acquired (-wait ran out, or -try found it held)
	exitLockLost    = 125 // the lock was lost or its lease could not be extended: the command was terminated
	exitCannotRun   = 126 // the command could not be started
	exitNotFound    = 127 // the command was not found
)

const lockUsage = `usage: dlockctl lock -name N [flags] -- command [args...]

Takes the lock, runs the command while holding it and releases it when the
command ends. The command runs in its own process group with these
environment variables:

  DLOCK_LOCK   the lock's name
  DLOCK_TOKEN  the fencing token of the hold (decimal)
  DLOCK_HELD   1

While the command runs, dlockctl extends the lease every ttl/3. When the lock
is lost, an extension fails, or the last successful extension is about to
run out (less than -grace plus a safety margin left), the command's process
group gets SIGTERM and, if it is still running after -grace, SIGKILL: the
command is dead before the lease can expire on the server. For rw locks,
which have no lease, a failed heartbeat to the server does the same.

Exit status:
  the command's    it ran to its end while the lock was held
  124              the lock was not acquired (-wait ran out, or -try found it held)
  125              the lock was lost while the command ran; the command was terminated
  126              the command could not be started
  127              the command was not found
  1                another error (no server, bad lock type...)
  2                bad usage
  128+n            dlockctl was stopped by signal n (the command got SIGTERM first)

Flags:
`

// runLock is "dlockctl lock": take a lock, run a command while holding it
// (extending the lease as it runs), release it, exit with the command's
// status; terminate the command when the lock can no longer be guaranteed.
func runLock(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), lockUsage)
		fs.PrintDefaults()
	}
	cf := addConnFlags(fs)
	name := fs.String("name", "", "lock `name`")
	typ := fs.String("type", "atomic", "lock `type`: atomic, rw or fair")
	shared := fs.Bool("shared", false, "take the lock in shared mode (rw, fair)")
	ttl := fs.Duration("ttl", dlock.DefaultTTL, "lease of the hold (atomic, fair), whole seconds, at least 2s; extended every ttl/3 while the command runs")
	wait := fs.Duration("wait", 0, "give up after waiting this long (0: wait forever)")
	try := fs.Bool("try", false, "do not wait: give up at once if the lock is held")
	grace := fs.Duration("grace", 0, "time between SIGTERM and SIGKILL when the lock is lost (default: ttl/4, at most 5s)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || fs.NArg() == 0 {
		fs.Usage()
		return usageError("lock: need -name and a command")
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
		return usageError(fmt.Sprintf("lock: -type %q: want atomic, rw or fair", *typ))
	}
	*ttl = (*ttl + time.Second - 1).Truncate(time.Second) // what the server enforces
	if *ttl < 2*time.Second {
		return usageError("lock: -ttl must be at least 2s")
	}
	if *grace <= 0 {
		*grace = min(*ttl/4, 5*time.Second)
	}
	// The command must be dead margin before the lease runs out on the
	// server, whose clock may run a little faster than ours.
	margin := 200*time.Millisecond + *ttl/20
	if lt != dlock.RW && *grace+margin >= *ttl*2/3 {
		return usageError(fmt.Sprintf("lock: -grace %v too long for -ttl %v", *grace, *ttl))
	}

	c, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Shutdown(sctx) // the server releases whatever is still held
		cancel()
	}()
	l, err := c.OpenLock(ctx, *name, dlock.LockOptions{Type: lt, TTL: *ttl})
	if err != nil {
		return err
	}
	if err := acquire(ctx, l, *shared, *try, *wait); err != nil {
		if errors.Is(err, errNotAcquired) {
			fmt.Fprintf(stderr, "dlockctl: lock %q: not acquired\n", *name)
			return exitError(exitNotAcquired)
		}
		return err
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.Unlock(uctx)
		cancel()
	}()

	// The lease runs at least ttl from the moment a successful extension was
	// sent. The grant itself happened at an unknown moment while we waited,
	// so extend once before starting the command to know where we stand.
	var expiry time.Time
	extend := func() error {
		sent := time.Now()
		ectx, cancel := context.WithTimeout(ctx, *ttl/3)
		defer cancel()
		if lt == dlock.RW {
			return c.Heartbeat(ectx)
		}
		if err := l.Extend(ectx, *ttl); err != nil {
			return err
		}
		expiry = sent.Add(*ttl)
		return nil
	}
	if err := extend(); err != nil {
		fmt.Fprintf(stderr, "dlockctl: lock %q: lost before the command started: %v\n", *name, err)
		return exitError(exitLockLost)
	}

	cmd := exec.Command(fs.Arg(0), fs.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	cmd.Env = append(os.Environ(), "DLOCK_LOCK="+*name, "DLOCK_TOKEN="+strconv.FormatUint(l.Token(), 10), "DLOCK_HELD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "dlockctl: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return exitError(exitNotFound)
		}
		return exitError(exitCannotRun)
	}
	pgid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	tick := time.NewTicker(*ttl / 3)
	defer tick.Stop()
	// watchdog fires when the last successful extension leaves less than
	// grace+margin: even if an extension hangs, the command is SIGKILLed
	// margin before the lease ends.
	watchdog := time.NewTimer(time.Hour)
	defer watchdog.Stop()
	arm := func() {
		if lt != dlock.RW {
			watchdog.Reset(time.Until(expiry) - *grace - margin)
		} else {
			watchdog.Stop()
		}
	}
	arm()
	// Extensions run in their own goroutine so that a hung one cannot delay
	// the watchdog.
	extended := make(chan error, 1)
	extending := false
	var why string
	var status int
loop:
	for {
		select {
		case err := <-done:
			return commandStatus(err)
		case <-ctx.Done():
			why, status = "interrupted", 128+int(signalOf(ctx))
			break loop
		case <-tick.C:
			if !extending {
				extending = true
				go func() { extended <- extend() }()
			}
		case err := <-extended:
			extending = false
			if err != nil {
				why, status = "extend: "+err.Error(), exitLockLost
				break loop
			}
			arm()
		case <-watchdog.C:
			why, status = "the lease could not be extended in time", exitLockLost
			break loop
		}
	}
	fmt.Fprintf(stderr, "dlockctl: lock %q: %s: terminating the command\n", *name, why)
	syscall.Kill(-pgid, syscall.SIGTERM)
	kill := time.NewTimer(*grace)
	defer kill.Stop()
	select {
	case <-done:
	case <-kill.C:
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	syscall.Kill(-pgid, syscall.SIGKILL) // whatever the command left behind in its group
	if extending {
		// Let the pending extension end before unlocking.
		select {
		case <-extended:
		case <-time.After(*ttl / 3):
		}
	}
	return exitError(status)
}

var errNotAcquired = errors.New("not acquired")

// acquire takes l as asked; errNotAcquired when -try or -wait gave up.
func acquire(ctx context.Context, l *dlock.Lock, shared, try bool, wait time.Duration) error {
	if try {
		var ok bool
		var err error
		if shared {
			ok, err = l.TryRLock(ctx)
		} else {
			ok, err = l.TryLock(ctx)
		}
		if err == nil && !ok {
			// A fair lock may have left a ticket: give it up.
			uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			l.Unlock(uctx)
			cancel()
			return errNotAcquired
		}
		return err
	}
	lctx := ctx
	if wait > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	var err error
	if shared {
		err = l.RLock(lctx)
	} else {
		err = l.Lock(lctx)
	}
	if err != nil && ctx.Err() == nil && (lctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, dlock.ErrTimeout)) {
		return errNotAcquired
	}
	return err
}

// commandStatus turns the command's end into dlockctl's exit status.
func commandStatus(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return exitError(128 + int(ws.Signal()))
		}
		return exitError(ee.ExitCode())
	}
	return err
}

// sigContext records which signal cancelled the context made by main.
type sigKey struct{}

func signalOf(ctx context.Context) syscall.Signal {
	if s, ok := ctx.Value(sigKey{}).(*syscall.Signal); ok && *s != 0 {
		return *s
	}
	return syscall.SIGTERM
}

// usageError is a command-line mistake: exit status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

// addrFlag defines -addr, defaulting to $DLOCK_ADDR or the local server.
func addrFlag(fs *flag.FlagSet) *string {
	def := fmt.Sprintf("127.0.0.1:%d", dlock.DefaultPort)
	if v := os.Getenv("DLOCK_ADDR"); v != "" {
		def = v
	}
	return fs.String("addr", def, "server `address` (host:port or unix:path; default from $DLOCK_ADDR)")
}
