package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCMainPthreadExit runs testdata/main_exit.c, whose main ends with
// pthread_exit while its worker threads go on using the library: the
// process must exit with status 0 within a second of its last thread
// (through exit(), so buffered stdout and atexit handlers are not lost),
// whether or not the program called the deinit functions, and must wait for
// a thread that keeps running long after the others; a program thread that
// joins the main thread succeeds, as without the library; a chain of
// short-lived threads, each starting the next, is followed to its end. A process whose main
// ended with only a server left goes on serving, as with DLock: the client
// programs use it, and it is still running afterwards.
func TestCMainPthreadExit(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"main_exit.c", "main_exit.cpp"} {
		t.Run(src, func(t *testing.T) {
			t.Parallel()
			testMainExit(t, src)
		})
	}
}

func testMainExit(t *testing.T, src string) {
	prog := compile(t, filepath.Join("testdata", src))
	// What exit() prints last: the atexit handler, then (C++) the static
	// destructor registered before it.
	tail := []string{"atexit"}
	if strings.HasSuffix(src, ".cpp") {
		tail = append(tail, "static destructor")
	}
	t.Run("bare", func(t *testing.T) {
		t.Parallel()
		runMainExit(t, prog, freePorts(t, 1)[0], "bare", tail)
	})
	t.Run("deinit", func(t *testing.T) {
		t.Parallel()
		runMainExit(t, prog, freePorts(t, 1)[0], "deinit", tail)
	})
	t.Run("joinmain", func(t *testing.T) {
		t.Parallel()
		runMainExit(t, prog, freePorts(t, 1)[0], "joinmain", tail)
	})
	t.Run("relay", func(t *testing.T) {
		t.Parallel()
		runMainExit(t, prog, freePorts(t, 1)[0], "relay", tail)
	})
	t.Run("serve", func(t *testing.T) {
		t.Parallel()
		port := freePorts(t, 1)[0]
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server := exec.CommandContext(ctx, prog, port, "serve")
		stderr, err := server.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := server.Start(); err != nil {
			t.Fatal(err)
		}
		serving := make(chan bool, 1)
		var rest bytes.Buffer
		copied := make(chan struct{})
		go func() {
			defer close(copied)
			sc := bufio.NewScanner(stderr)
			ok := false
			for sc.Scan() {
				if sc.Text() == "SERVING" && !ok {
					ok = true
					serving <- true
					continue
				}
				rest.WriteString(sc.Text() + "\n")
			}
			if !ok {
				serving <- false
			}
			io.Copy(io.Discard, stderr)
		}()
		if !<-serving {
			server.Wait()
			t.Fatalf("the server program did not start: %v", server.ProcessState)
		}
		mainGone := time.Now()

		var wg sync.WaitGroup
		for _, mode := range []string{"nodeinit", "linger"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				runMainExit(t, prog, port, mode, tail)
			}()
		}
		wg.Wait()

		// Only the server was left in that process since main's
		// pthread_exit, and it served both programs: it must still run.
		if err := server.Process.Signal(syscall.Signal(0)); err != nil {
			t.Fatalf("the server program ended after main's pthread_exit with its server running: %v", err)
		}
		t.Logf("server program alive and serving %v after main's pthread_exit", time.Since(mainGone).Round(time.Millisecond))
		server.Process.Signal(syscall.SIGTERM)
		err = server.Wait()
		<-copied
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
			t.Errorf("server program: %v, want killed by SIGTERM\nstderr:\n%s", err, rest.String())
		}
	})
}

// runMainExit runs main_exit in mode and checks how it ended: tail are the
// last lines exit() prints.
func runMainExit(t *testing.T, prog, port, mode string, tail []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, port, mode)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	exited := time.Now()
	out := stdout.String()
	if err != nil {
		t.Errorf("%s: %v after %v\nstdout:\n%s\nstderr:\n%s", mode, err, exited.Sub(start), out, stderr.String())
		return
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < len(tail) || !slices.Equal(lines[len(lines)-len(tail):], tail) {
		t.Errorf("%s: stdout:\n%s\nwant it to end with %q", mode, out, tail)
	}
	if mode == "bare" {
		if len(lines) != len(tail) {
			t.Errorf("bare: stdout:\n%s\nwant only %q", out, tail)
		}
		return
	}
	if !strings.Contains(out, "main: pthread_exit\n") || !strings.Contains(out, "\nOK ") || strings.Contains(out, "FAIL") {
		t.Errorf("%s: stdout:\n%s\nstderr:\n%s", mode, out, stderr.String())
		return
	}
	var endNS int64
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, "END "); ok {
			endNS, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	if endNS == 0 {
		t.Errorf("%s: no END line:\n%s", mode, out)
		return
	}
	end := time.Unix(0, endNS)
	lag := exited.Sub(end)
	t.Logf("%s: ran %v; exited %v after its last thread", mode, exited.Sub(start).Round(time.Millisecond), lag.Round(time.Millisecond))
	if lag < 0 || lag > time.Second {
		t.Errorf("%s: process exited %v after its last thread ended, want within 1s", mode, lag)
	}
	if mode == "relay" && !strings.Contains(out, "relay done\n") {
		t.Errorf("relay: the last thread of the chain did not finish:\n%s", out)
	}
	if mode == "linger" {
		if !strings.Contains(out, "late thread done\n") {
			t.Errorf("linger: the late thread did not finish:\n%s", out)
		}
		if d := end.Sub(start); d < 1500*time.Millisecond {
			t.Errorf("linger: the last thread ended %v after start, want ≥ 1.5s", d)
		}
	}
}

// TestCDlopenFromThread: a program not linked with the library has a thread
// load it with dlopen (so the library cannot learn the main thread's
// handle), then main calls pthread_exit; the process still exits 0 once that
// thread has finished.
func TestCDlopenFromThread(t *testing.T) {
	t.Parallel()
	dir := libDir(t)
	prog := filepath.Join(t.TempDir(), "dlopen_thread")
	args := []string{"-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-O1", "-Iinclude", "-o", prog,
		filepath.Join("testdata", "dlopen_thread.c"), "-ldl", "-lpthread"}
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	for _, n := range elfNeeded(t, prog) {
		if strings.HasPrefix(n, "libdlock") {
			t.Fatalf("the program is linked with %s; it must only dlopen it", n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, filepath.Join(dir, "libdlock.so"), freePorts(t, 1)[0])
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	exited := time.Now()
	out := stdout.String()
	if err != nil || !strings.Contains(out, "\nOK ") || !strings.HasSuffix(out, "atexit\n") {
		t.Fatalf("%v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	i := strings.Index(out, "END ")
	if i < 0 {
		t.Fatalf("no END line:\n%s", out)
	}
	endNS, _ := strconv.ParseInt(strings.Fields(out[i+4:])[0], 10, 64)
	lag := exited.Sub(time.Unix(0, endNS))
	t.Logf("exited %v after its last thread", lag.Round(time.Millisecond))
	if lag < 0 || lag > time.Second {
		t.Errorf("exited %v after its last thread, want within 1s\n%s", lag, out)
	}
}
