package dlock_test

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

var (
	dlockdOnce sync.Once
	dlockdBin  string
	dlockdErr  error
	dlockdDir  string
)

// buildDlockd compiles cmd/dlockd once per test binary.
func buildDlockd(t *testing.T) string {
	t.Helper()
	dlockdOnce.Do(func() {
		dir, err := makeTempDir()
		if err != nil {
			dlockdErr = err
			return
		}
		dlockdDir = dir
		dlockdBin = filepath.Join(dir, "dlockd")
		out, err := exec.Command("go", "build", "-o", dlockdBin, "./cmd/dlockd").CombinedOutput()
		if err != nil {
			dlockdErr = fmt.Errorf("go build ./cmd/dlockd: %v\n%s", err, out)
		}
	})
	if dlockdErr != nil {
		t.Fatal(dlockdErr)
	}
	return dlockdBin
}

// daemon is a dlockd process the test started; it is killed by pid when
// the test ends.
type daemon struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{}
}

func startDaemon(t *testing.T, addr string, args ...string) *daemon {
	t.Helper()
	cmd := exec.Command(buildDlockd(t), append([]string{"-addr", addr, "-log-level", "warn"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { cmd.Wait(); close(d.done) }()
	t.Cleanup(d.kill)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.Contains(line, "listening") {
		t.Fatalf("dlockd did not start: %q %v", line, err)
	}
	return d
}

// kill sends SIGKILL to the daemon's pid and waits for it to be gone.
func (d *daemon) kill() {
	syscall.Kill(d.pid, syscall.SIGKILL)
	<-d.done
}

func loopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestCrashRecovery kills a real dlockd with SIGKILL while clients hold a
// mix of atomic, RW (shared and exclusive) and fair locks (a holder and two
// queued tickets) and objects, starts a new one in recovery mode on the same
// address, and lets the clients recover — two by hand, two automatically,
// one restarting its recovery — while others keep sending requests. Then a
// second crash hits during recovery. Afterwards the state is as before the
// first crash: same holders, fair tickets served in their order, objects
// gone, never two exclusive holders.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx := testCtx(t)
	addr := loopbackAddr(t)
	first := startDaemon(t, addr)

	reports := make(chan dlock.RecoveryReport, 8)
	auto := &dlock.Config{AutoRecover: true, OnRecover: func(r dlock.RecoveryReport) { reports <- r }}
	dial := func(cfg *dlock.Config) *dlock.Client {
		c, err := dlock.Dial(ctx, addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	m1, m2 := dial(nil), dial(nil)   // recover by hand
	a1, a2 := dial(auto), dial(auto) // recover automatically
	opts := func(typ dlock.LockType) dlock.LockOptions { return dlock.LockOptions{Type: typ, TTL: time.Minute} }

	atomicM1 := open(t, m1, "atomic", opts(dlock.Atomic))
	atomicA1 := open(t, a1, "atomic", opts(dlock.Atomic))
	rwShM1 := open(t, m1, "rw-shared", opts(dlock.RW))
	rwShA2 := open(t, a2, "rw-shared", opts(dlock.RW))
	rwExM2 := open(t, m2, "rw-excl", opts(dlock.RW))
	rwExA1 := open(t, a1, "rw-excl", opts(dlock.RW))
	fairA1 := open(t, a1, "fair", opts(dlock.Fair)) // holder
	fairM2 := open(t, m2, "fair", opts(dlock.Fair)) // first ticket
	fairA2 := open(t, a2, "fair", opts(dlock.Fair)) // second ticket
	mustTry(t, atomicM1, false, true)
	mustTry(t, rwShM1, true, true)
	mustTry(t, rwShA2, true, true)
	mustTry(t, rwExM2, false, true)
	mustTry(t, fairA1, false, true)
	mustTry(t, fairM2, false, false)
	mustTry(t, fairA2, false, false)
	obj, err := m1.CreateAtomic64(ctx, "counter", 7, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}

	first.kill()
	second := startDaemon(t, addr, "-recovery-clients", "4")

	// Load during recovery: every request is refused with NOT_READY.
	stopLoad := make(chan struct{})
	var loadWG sync.WaitGroup
	var notReady, other int
	var loadMu sync.Mutex
	loadWG.Add(1)
	go func() {
		defer loadWG.Done()
		for {
			select {
			case <-stopLoad:
				return
			default:
			}
			c, err := dlock.Dial(ctx, addr, nil)
			loadMu.Lock()
			if errors.Is(err, dlock.ErrNotReady) {
				notReady++
			} else {
				other++
			}
			loadMu.Unlock()
			if err == nil {
				c.Close()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()

	// m1 recovers fully; m2 reinits twice (restarting its recovery) and
	// uploads, and then the second primary dies too.
	recoverManually(t, m1, addr)
	if _, err := atomicM1.TryLock(ctx); !errors.Is(err, dlock.ErrNotReady) {
		t.Errorf("lock op during recovery: %v, want ErrNotReady", err)
	}
	if err := m2.Reinit(ctx, addr); err != nil {
		t.Fatal(err)
	}
	if err := m2.UpdateAllLocks(ctx); err != nil {
		t.Fatal(err)
	}
	second.kill()
	third := startDaemon(t, addr, "-recovery-clients", "4")
	_ = third
	recoverManually(t, m1, addr)
	recoverManually(t, m2, addr)
	for range 2 {
		select {
		case r := <-reports:
			if r.Err != nil || !r.NewPrimary || len(r.Lost) != 0 {
				t.Errorf("automatic recovery report %+v", r)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("automatic clients did not recover")
		}
	}
	// The automatic clients may have recovered against the second primary
	// too; drain those reports.
	for len(reports) > 0 {
		<-reports
	}
	close(stopLoad)
	loadWG.Wait()
	if notReady == 0 {
		t.Error("no ErrNotReady seen by new clients during recovery")
	}

	// Same holders as before the crash.
	for _, c := range []*dlock.Client{m1, m2, a1, a2} {
		kept, lost, err := c.Revalidate(ctx)
		if err != nil || len(lost) != 0 {
			t.Errorf("client %d: Revalidate kept %d lost %v err %v", c.ID(), len(kept), lost, err)
		}
	}
	mustTry(t, atomicA1, false, false)
	mustTry(t, rwExA1, true, false)
	mustTry(t, open(t, m2, "rw-shared", opts(dlock.RW)), false, false)
	// Fair: the holder unlocks; the first ticket is served, not the second.
	if err := fairA1.Unlock(ctx); err != nil {
		t.Fatalf("fair holder unlock after recovery: %v", err)
	}
	mustTry(t, fairA2, false, false)
	mustTry(t, fairM2, false, true)
	if err := fairM2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	mustTry(t, fairA2, false, true)
	// Objects are gone.
	if _, err := obj.Load(ctx); !errors.Is(err, dlock.ErrObjectNotGet) {
		t.Errorf("object after recovery: %v", err)
	}
	if _, err := m1.OpenAtomic64(ctx, "counter", dlock.Atomic64Options{}); !errors.Is(err, dlock.ErrObjectNotCreate) {
		t.Errorf("object after recovery: %v, want ErrObjectNotCreate", err)
	}
	// Exclusive holds still exclude after recovery.
	if err := atomicM1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	mustTry(t, atomicA1, false, true)
	mustTry(t, atomicM1, false, false)
}

func makeTempDir() (string, error) { return os.MkdirTemp("", "dlockd-test-") }

func TestMain(m *testing.M) {
	if spec := os.Getenv(robustHelperEnv); spec != "" {
		os.Exit(runRobustHelper(spec)) // a client process of the robustness suite
	}
	code := m.Run()
	if dlockdDir != "" {
		os.RemoveAll(dlockdDir)
	}
	os.Exit(code)
}
