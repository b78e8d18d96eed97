package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// TestLocksJSON: "dlockctl locks -json" prints an array of objects with the
// name, type, holders and waiters of each lock.
func TestLocksJSON(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testContext(t)
	a, b := srv.Dial(t), srv.Dial(t)
	la, err := a.OpenLock(ctx, "svc/leader", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.OpenLock(ctx, "svc/leader", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go lb.Lock(wctx)

	var objs []map[string]any
	for i := 0; ; i++ {
		var stdout, stderr bytes.Buffer
		if err := run(ctx, []string{"locks", "-addr", srv.Addr, "-prefix", "svc/", "-json"}, nil, &stdout, &stderr); err != nil {
			t.Fatalf("locks: %v\n%s", err, stderr.String())
		}
		objs = nil
		if err := json.Unmarshal(stdout.Bytes(), &objs); err != nil {
			t.Fatalf("locks -json printed %q: %v", stdout.String(), err)
		}
		if len(objs) == 1 && len(objs[0]["waiters"].([]any)) == 1 {
			break
		}
		if i == 500 {
			t.Fatalf("never listed with its waiter: %s", stdout.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	o := objs[0]
	holders := o["holders"].([]any)
	if o["name"] != "svc/leader" || o["type"] != "atomic" || len(holders) != 1 {
		t.Fatalf("locks -json: %v", o)
	}
	h := holders[0].(map[string]any)
	if h["client"] != float64(a.ID()) || h["token"] != float64(la.Token()) || h["since"] == nil || h["lease_expiry"] == nil {
		t.Errorf("holder %v; want client %d with token, since and lease expiry", h, a.ID())
	}
	if w := o["waiters"].([]any)[0].(map[string]any); w["client"] != float64(b.ID()) {
		t.Errorf("waiter %v; want client %d", w, b.ID())
	}

	var stdout, stderr bytes.Buffer
	if err := run(ctx, []string{"locks", "-addr", srv.Addr, "-prefix", "svc/"}, nil, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "svc/leader") {
		t.Errorf("locks (table): %v\n%s%s", err, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if err := run(ctx, []string{"top", "-addr", srv.Addr, "-count", "1"}, nil, &stdout, &stderr); err != nil || !strings.Contains(stdout.String(), "svc/leader") {
		t.Errorf("top: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var ue usageError
	if err := run(ctx, []string{"release", "-addr", srv.Addr, "svc/leader"}, nil, &stdout, &stderr); !errors.As(err, &ue) {
		t.Errorf("release without -force: %v, want a usage error", err)
	}
}

// TestForceReleaseStopsLockCommand: "dlockctl release -force" takes the
// lock from a running "dlockctl lock", which stops its command and exits
// 125 (real processes).
func TestForceReleaseStopsLockCommand(t *testing.T) {
	addr, _ := startDaemon(t)
	_, dlockctl := binaries(t)
	envFile := filepath.Join(t.TempDir(), "env")
	cmd := exec.Command(dlockctl, "lock", "-addr", addr, "-name", "batch", "-ttl", "6s",
		"--", "sh", "-c", `echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 300`, "sh", envFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(cmd.Process.Pid, syscall.SIGKILL) })
	waitFile(t, envFile, 20*time.Second)
	out, err := exec.Command(dlockctl, "release", "-addr", addr, "-force", "batch").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "released from client") {
		t.Fatalf("release -force: %v\n%s", err, out)
	}
	done := make(chan int, 1)
	go func() { done <- exitCode(t, cmd) }()
	select {
	case code := <-done:
		if code != exitLockLost {
			t.Errorf("dlockctl lock exit status %d, want %d\n%s", code, exitLockLost, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("dlockctl lock still runs 10s after its lock was force-released\n%s", stderr.String())
	}
}
