package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCMainPthreadExit runs testdata/main_exit.c, whose main ends with
// pthread_exit while its worker threads go on using the library: the
// process must exit with status 0 within a second of its last thread
// (through exit(), so buffered stdout and atexit handlers are not lost),
// whether or not the program called the deinit functions, and must wait for
// a thread that keeps running long after the others.
func TestCMainPthreadExit(t *testing.T) {
	t.Parallel()
	prog := compile(t, filepath.Join("testdata", "main_exit.c"))
	for _, mode := range []string{"bare", "deinit", "nodeinit", "linger"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, prog, freePorts(t, 1)[0], mode)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			exited := time.Now()
			out := stdout.String()
			if err != nil {
				t.Fatalf("%s: %v after %v\nstdout:\n%s\nstderr:\n%s", mode, err, exited.Sub(start), out, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if lines[len(lines)-1] != "atexit" {
				t.Errorf("last line %q, want the atexit handler's line\nstdout:\n%s", lines[len(lines)-1], out)
			}
			if mode == "bare" {
				if len(lines) != 1 {
					t.Errorf("stdout:\n%s\nwant only the atexit line", out)
				}
				if d := exited.Sub(start); d > 10*time.Second {
					t.Errorf("exited after %v", d)
				}
				return
			}
			if !strings.Contains(out, "main: pthread_exit\n") || !strings.Contains(out, "\nOK ") || strings.Contains(out, "FAIL") {
				t.Fatalf("stdout:\n%s\nstderr:\n%s", out, stderr.String())
			}
			var endNS int64
			for _, l := range lines {
				if v, ok := strings.CutPrefix(l, "END "); ok {
					endNS, _ = strconv.ParseInt(v, 10, 64)
				}
			}
			if endNS == 0 {
				t.Fatalf("no END line:\n%s", out)
			}
			end := time.Unix(0, endNS)
			lag := exited.Sub(end)
			t.Logf("%s: ran %v; exited %v after its last thread", mode, exited.Sub(start).Round(time.Millisecond), lag.Round(time.Millisecond))
			if lag < 0 || lag > time.Second {
				t.Errorf("process exited %v after its last thread ended, want within 1s", lag)
			}
			if mode == "linger" {
				if !strings.Contains(out, "late thread done\n") {
					t.Errorf("the late thread did not finish:\n%s", out)
				}
				if d := end.Sub(start); d < 1500*time.Millisecond {
					t.Errorf("the last thread ended %v after start, want ≥ 1.5s", d)
				}
			}
		})
	}
}
