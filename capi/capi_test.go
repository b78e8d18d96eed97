package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock/dlocktest"
)

// The C ABI tests build the library once per test binary with
// go build -buildmode=c-shared, install it as libdlockc.so and libdlocks.so
// too, compile the C and C++ programs of testdata/ against include/, run
// them and check their output. Each program prints a FAIL line per failed
// check and ends with "OK <n> checks".

var lib struct {
	once sync.Once
	dir  string
	err  error
}

// libDir builds the library into a temporary directory (once) and returns
// the directory.
func libDir(t *testing.T) string {
	t.Helper()
	requireTools(t)
	lib.once.Do(func() {
		dir, err := os.MkdirTemp("", "dlock-capi-")
		if err != nil {
			lib.err = err
			return
		}
		lib.dir = dir
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command(gobin, "build", "-buildmode=c-shared", "-ldflags=-extldflags=-Wl,-soname,libdlock.so",
			"-o", filepath.Join(dir, "libdlock.so"), ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			lib.err = fmt.Errorf("go build -buildmode=c-shared: %v\n%s", err, out)
			return
		}
		for _, name := range []string{"libdlockc.so", "libdlocks.so", "libdlockm.so"} {
			if err := os.Symlink("libdlock.so", filepath.Join(dir, name)); err != nil {
				lib.err = err
				return
			}
		}
	})
	if lib.err != nil {
		t.Fatal(lib.err)
	}
	return lib.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if lib.dir != "" {
		os.RemoveAll(lib.dir)
	}
	if installed.prefix != "" {
		os.RemoveAll(installed.prefix)
	}
	os.Exit(code)
}

// requireTools fails (in CI) or skips (elsewhere) when gcc or g++ is
// missing.
func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"gcc", "g++"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required for the C ABI tests: %v", tool, err)
			}
			t.Skipf("%s not found: %v", tool, err)
		}
	}
}

// compile builds the program src (C11 or C++17 by extension) against our
// headers and the library, with warnings as errors.
func compile(t *testing.T, src string) string {
	t.Helper()
	dir := libDir(t)
	base := filepath.Base(src)
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(base, filepath.Ext(base)))
	compiler, std := "gcc", "-std=c11"
	if strings.HasSuffix(src, ".cpp") {
		compiler, std = "g++", "-std=c++17"
	}
	args := []string{std, "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O1", "-Iinclude", "-o", out,
		src, "-L" + dir, "-ldlockc", "-ldlocks", "-ldlockm", "-Wl,-rpath," + dir, "-lpthread"}
	cmd := exec.Command(compiler, args...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", compiler, strings.Join(args, " "), err, b)
	}
	return out
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	var lns []net.Listener
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

// run runs a compiled program with args and returns its standard output; it
// fails the test if the program fails or does not end with "OK".
func run(t *testing.T, prog string, timeout time.Duration, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s ran in %v", filepath.Base(prog), time.Since(start).Round(time.Millisecond))
	if err != nil || !strings.Contains(stdout.String(), "\nOK ") && !strings.HasPrefix(stdout.String(), "OK ") {
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(prog), args, err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// runProgram compiles and runs testdata/src with nports free ports as its
// arguments.
func runProgram(t *testing.T, src string, nports int, timeout time.Duration) string {
	t.Helper()
	prog := compile(t, filepath.Join("testdata", src))
	return run(t, prog, timeout, freePorts(t, nports)...)
}

func TestCErrorPaths(t *testing.T) {
	t.Parallel()
	runProgram(t, "api_errors.c", 3, time.Minute)
}

func TestCLocks(t *testing.T) {
	t.Parallel()
	runProgram(t, "locks.c", 1, time.Minute)
}

func TestCBatch(t *testing.T) {
	t.Parallel()
	runProgram(t, "batch.c", 1, time.Minute)
}

func TestCAsync(t *testing.T) {
	t.Parallel()
	runProgram(t, "async.c", 1, time.Minute)
}

func TestCObjects(t *testing.T) {
	t.Parallel()
	runProgram(t, "objects.c", 1, time.Minute)
}

func TestCStats(t *testing.T) {
	t.Parallel()
	runProgram(t, "stats.c", 1, time.Minute)
}

func TestCThreads(t *testing.T) {
	t.Parallel()
	runProgram(t, "threads.c", 1, time.Minute)
}

func TestCRecovery(t *testing.T) {
	t.Parallel()
	runProgram(t, "recovery.c", 1, time.Minute)
}

func TestCPlusPlus(t *testing.T) {
	t.Parallel()
	runProgram(t, "cpp_api.cpp", 1, time.Minute)
}

func TestCTLS(t *testing.T) {
	t.Parallel()
	pki := dlocktest.NewPKI(t, "dlock capi CA")
	other := dlocktest.NewPKI(t, "another CA")
	server := pki.Issue("server", dlocktest.CertOptions{Password: []byte("secret")})
	client := pki.Issue("client", dlocktest.CertOptions{Password: []byte("secret")})
	prog := compile(t, filepath.Join("testdata", "tls.c"))
	args := append(freePorts(t, 1), pki.CAFile, server.CertFile, server.KeyFile, client.CertFile, client.KeyFile, other.CAFile)
	run(t, prog, time.Minute, args...)
}

func TestCTiming(t *testing.T) {
	t.Parallel()
	runProgram(t, "timing.c", 1, time.Minute)
}

func TestCServers(t *testing.T) {
	t.Parallel()
	runProgram(t, "servers.c", 33, time.Minute)
}
