package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

var (
	binOnce sync.Once
	binDir  string
	binErr  error
)

// binaries builds dlockd and dlockctl once per test run.
func binaries(t *testing.T) (dlockd, dlockctl string) {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "dlockctl-test-bin")
		if binErr != nil {
			return
		}
		for _, pkg := range []string{"../dlockd", "."} {
			out, err := exec.Command("go", "build", "-o", binDir, pkg).CombinedOutput()
			if err != nil {
				binErr = errors.New("go build " + pkg + ": " + err.Error() + "\n" + string(out))
				return
			}
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return filepath.Join(binDir, "dlockd"), filepath.Join(binDir, "dlockctl")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// startDaemon runs dlockd as a real process on a free loopback port and
// waits until it accepts clients. It returns the address and the process.
func startDaemon(t *testing.T, args ...string) (string, *exec.Cmd) {
	t.Helper()
	dlockd, _ := binaries(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(dlockd, append([]string{"-addr", addr}, args...)...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		cmd.Wait()
		if t.Failed() {
			t.Logf("dlockd output:\n%s", logs.String())
		}
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr, cmd
		}
		if i == 200 {
			t.Fatalf("dlockd does not listen on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exitCode waits for cmd and returns its exit status.
func exitCode(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

// waitFile waits until name exists and is not empty, and returns it.
func waitFile(t *testing.T, name string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		b, err := os.ReadFile(name)
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written within %v", name, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether process pid exists and is not a zombie (a killed
// orphan may wait a moment for its new parent to reap it).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// TestLockCommandKilledWhenServerDies is the consul-lock guarantee with real
// processes: dlockd is SIGKILLed while "dlockctl lock" runs a command that
// ignores SIGTERM; the command (and its child) must be dead before the lease
// of the last extension could have run out on the server, and dlockctl must
// exit 125.
func TestLockCommandKilledWhenServerDies(t *testing.T) {
	addr, daemon := startDaemon(t)
	_, dlockctl := binaries(t)
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	const ttl = 9 * time.Second
	script := `trap "" TERM; sleep 300 & echo "$DLOCK_LOCK $DLOCK_TOKEN $DLOCK_HELD $$ $!" > "$1.tmp"; mv "$1.tmp" "$1"; wait`
	cmd := exec.Command(dlockctl, "lock", "-addr", addr, "-name", "job", "-ttl", ttl.String(), "-grace", "500ms",
		"--", "sh", "-c", script, "sh", envFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(cmd.Process.Pid, syscall.SIGKILL) })
	f := strings.Fields(waitFile(t, envFile, 20*time.Second))
	if len(f) != 5 || f[0] != "job" || f[2] != "1" {
		t.Fatalf("command saw DLOCK_LOCK DLOCK_TOKEN DLOCK_HELD = %q; want job <token> 1", f)
	}
	if tok, err := strconv.ParseUint(f[1], 10, 64); err != nil || tok == 0 {
		t.Fatalf("DLOCK_TOKEN = %q; want a non-zero fencing token", f[1])
	}
	shPid, _ := strconv.Atoi(f[3])
	sleepPid, _ := strconv.Atoi(f[4])
	t.Cleanup(func() { syscall.Kill(sleepPid, syscall.SIGKILL) })

	killed := time.Now()
	if err := syscall.Kill(daemon.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	code := exitCode(t, cmd)
	took := time.Since(killed)
	if code != exitLockLost {
		t.Errorf("dlockctl exit status %d, want %d (lock lost)\nstderr: %s", code, exitLockLost, stderr.String())
	}
	// The last extension was sent at most ttl/3 before the kill, and the
	// server keeps a lease at least ttl from the moment the extension was
	// sent: the command must be gone within 2/3 ttl of the kill.
	if took >= ttl*2/3 {
		t.Errorf("dlockctl ended %v after the server died; the lease may have run out after %v", took, ttl*2/3)
	}
	if alive(shPid) || alive(sleepPid) {
		t.Errorf("the command (pid %d) or its child (pid %d) outlived dlockctl", shPid, sleepPid)
	}
	if !strings.Contains(stderr.String(), "terminating the command") {
		t.Errorf("dlockctl did not say why it stopped the command: %s", stderr.String())
	}
}

// TestLockCommandExitCodes checks the documented statuses: the command's
// own, 124 when the lock is held by someone else, 127 for a missing command,
// 2 for bad usage, 0 for -h.
func TestLockCommandExitCodes(t *testing.T) {
	addr, _ := startDaemon(t)
	_, dlockctl := binaries(t)
	ctl := func(args ...string) *exec.Cmd {
		return exec.Command(dlockctl, append([]string{"lock", "-addr", addr}, args...)...)
	}
	run := func(cmd *exec.Cmd) int {
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return exitCode(t, cmd)
	}
	if code := run(ctl("-name", "a", "--", "sh", "-c", `test "$DLOCK_HELD" = 1 && exit 7`)); code != 7 {
		t.Errorf("command exiting 7: dlockctl exit status %d", code)
	}
	if code := run(ctl("-name", "a", "--", "/nonexistent/command")); code != exitNotFound {
		t.Errorf("missing command: exit status %d, want %d", code, exitNotFound)
	}
	if code := run(ctl("-name", "a")); code != 2 {
		t.Errorf("no command: exit status %d, want 2", code)
	}
	if code := run(exec.Command(dlockctl, "lock", "-h")); code != 0 {
		t.Errorf("lock -h: exit status %d, want 0", code)
	}

	// Someone else holds the lock: -try and -wait give up with 124.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.OpenLock(ctx, "held", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatalf("TryLock: %v %v", ok, err)
	}
	if code := run(ctl("-name", "held", "-try", "--", "true")); code != exitNotAcquired {
		t.Errorf("-try on a held lock: exit status %d, want %d", code, exitNotAcquired)
	}
	if code := run(ctl("-name", "held", "-wait", "300ms", "--", "true")); code != exitNotAcquired {
		t.Errorf("-wait on a held lock: exit status %d, want %d", code, exitNotAcquired)
	}
}

// TestVersionAndHelp: -version and -h exit 0.
func TestVersionAndHelp(t *testing.T) {
	_, dlockctl := binaries(t)
	out, err := exec.Command(dlockctl, "-version").Output()
	if err != nil || !strings.HasPrefix(string(out), "dlockctl version ") || !strings.Contains(string(out), "revision ") {
		t.Errorf("dlockctl -version: %q, %v; want the version and revision, exit status 0", out, err)
	}
	for _, args := range [][]string{{"-h"}, {"stats", "-h"}, {"bench", "-h"}} {
		if err := exec.Command(dlockctl, args...).Run(); err != nil {
			t.Errorf("dlockctl %v: %v; want exit status 0", args, err)
		}
	}
	if err := exec.Command(dlockctl, "no-such-command").Run(); err == nil {
		t.Error("dlockctl no-such-command exited 0")
	}
}

// TestLockCommandInterrupted: SIGTERM to dlockctl reaches the command
// (through its process group), the lock is released, and dlockctl exits
// 128+15.
func TestLockCommandInterrupted(t *testing.T) {
	addr, _ := startDaemon(t)
	_, dlockctl := binaries(t)
	envFile := filepath.Join(t.TempDir(), "env")
	cmd := exec.Command(dlockctl, "lock", "-addr", addr, "-name", "job", "-ttl", "6s",
		"--", "sh", "-c", `sleep 300 & echo "$$ $!" > "$1.tmp"; mv "$1.tmp" "$1"; wait`, "sh", envFile)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(cmd.Process.Pid, syscall.SIGKILL) })
	f := strings.Fields(waitFile(t, envFile, 20*time.Second))
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cmd); code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit status %d, want %d", code, 128+int(syscall.SIGTERM))
	}
	for _, p := range f {
		if pid, _ := strconv.Atoi(p); alive(pid) {
			t.Errorf("process %d of the command outlived dlockctl", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// The lock is free again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.OpenLock(ctx, "job", dlock.LockOptions{Type: dlock.Atomic})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Errorf("TryLock after dlockctl ended: %v, %v; want the lock free", ok, err)
	}
}
