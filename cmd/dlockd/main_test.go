package main

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

// buildDlockd compiles the daemon into a temporary directory.
func buildDlockd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dlockd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDaemon runs dlockd as a real process: it prints where it listens,
// serves a client over TCP and a Unix socket, and exits cleanly on SIGTERM;
// with its event loops (the default on Linux) and with -goroutine-conns.
func TestDaemon(t *testing.T) {
	bin := buildDlockd(t)
	t.Run("default", func(t *testing.T) { testDaemon(t, bin, runtime.GOOS == "linux") })
	t.Run("goroutine-conns", func(t *testing.T) { testDaemon(t, bin, false, "-goroutine-conns") })
}

func testDaemon(t *testing.T, bin string, loops bool, args ...string) {
	addr := freePort(t)
	sock := filepath.Join(t.TempDir(), "dlockd.sock")
	cmd := exec.Command(bin, append([]string{"-addr", addr, "-unix", sock, "-log-level", "debug", "-log-format", "json"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL) // by pid, whatever happened
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	var lines []string
	for len(lines) < 2 && sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) < 2 || !strings.Contains(lines[0], addr) || !strings.Contains(lines[1], sock) {
		t.Fatalf("dlockd printed %q; want its TCP and Unix addresses", lines)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, target := range []string{addr, "unix:" + sock} {
		c, err := dlock.Dial(ctx, target, nil)
		if err != nil {
			t.Fatalf("dial %s: %v", target, err)
		}
		l, err := c.OpenLock(ctx, "daemon", dlock.LockOptions{Type: dlock.Fair})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatalf("%s: TryLock = %v, %v", target, ok, err)
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}

	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dlockd exited with %v\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("dlockd did not stop on SIGTERM")
	}
	if !strings.Contains(stderr.String(), `"msg":"shutting down"`) {
		t.Errorf("no shutdown log line in JSON format:\n%s", stderr.String())
	}
	if got := strings.Count(stderr.String(), `"loop":true`); loops != (got == 2) {
		t.Errorf("%d connections served by an event loop, want both: %v\n%s", got, loops, stderr.String())
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-addr", "127.0.0.1:80"},
		{"-log-level", "loud"},
		{"-log-format", "xml"},
		{"-recovery-clients", "1001"},
	} {
		var out, errw strings.Builder
		if err := run(args, &out, &errw); err == nil {
			t.Errorf("dlockd %v: no error", args)
		}
	}
}
