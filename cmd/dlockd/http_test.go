package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestHTTPEndpoints runs dlockd -http-addr as a real process and scrapes
// it: the listener's address is in a startup record, /healthz and /readyz
// answer 200, /metrics parses with Prometheus's text parser.
func TestHTTPEndpoints(t *testing.T) {
	bin := buildDlockd(t)
	addr := freePort(t)
	cmd := exec.Command(bin, "-addr", addr, "-http-addr", "127.0.0.1:0", "-log-format", "json")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		cmd.Wait()
	})
	var web string
	sc := bufio.NewScanner(stdout)
	for web == "" && sc.Scan() {
		var rec struct{ Network, Addr string }
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("startup line %q: %v", sc.Text(), err)
		}
		if rec.Network == "http" {
			web = "http://" + rec.Addr
		}
	}
	if web == "" {
		t.Fatalf("no startup record for the HTTP listener; stderr:\n%s", stderr)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get(web + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, p := range []string{"/healthz", "/readyz", "/debug/pprof/"} {
		if code, body := get(p); code != http.StatusOK {
			t.Errorf("%s: %d %q", p, code, body)
		}
	}
	code, body := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	for _, name := range []string{"dlock_build_info", "dlock_clients", "dlock_locks", "dlock_waiters", "dlock_lock_wait_seconds",
		"dlock_lock_hold_seconds", "dlock_operations_total", "dlock_ready", "dlock_recovery_clients_pending",
		"dlock_debug_events_total", "dlock_connections", "go_goroutines", "process_resident_memory_bytes"} {
		if mf[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}
