package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock/dlocktest"
)

// logLine is a record a failure must print: its syslog level and text
// that must all be on one line of stderr.
type logLine struct {
	level int // syslog: 3 ERR, 4 WARNING, 5 NOTICE
	parts []string
}

var syslogName = map[int]string{3: "ERR", 4: "WARNING", 5: "NOTICE"}

// TestCFailuresSayWhy runs testdata/failure_logs.c once per failure and log
// level: each failure's reason is on stderr, at its level, exactly when
// log_level lets that level through; at log_level 2 (CRIT) nothing is
// printed.
func TestCFailuresSayWhy(t *testing.T) {
	t.Parallel()
	prog := compile(t, filepath.Join("testdata", "failure_logs.c"))
	pki := dlocktest.NewPKI(t, "dlock failure logs CA")
	other := dlocktest.NewPKI(t, "another CA")
	server := pki.Issue("server", dlocktest.CertOptions{Password: []byte("secret")})
	client := pki.Issue("client", dlocktest.CertOptions{Password: []byte("secret")})
	tlsFiles := []string{pki.CAFile, server.CertFile, server.KeyFile, client.CertFile, client.KeyFile, other.CAFile}

	cases := map[string][]logLine{
		"client_tp_mode": {{3, []string{"dclient_lib_init: invalid tp_mode", "tp_mode=7", "ret=-1"}}},
		"server_tp_mode": {{3, []string{"server_start: invalid tp_mode", "tp_mode=7", "ret=-1"}}},
		"client_port":    {{3, []string{"dclient_lib_init: invalid primary_port", "primary_port=80", "ret=4099"}}},
		"server_port":    {{3, []string{"server_start: invalid primary.server_port", "server_port=70000", "ret=-1"}}},
		"client_device":  {{3, []string{"dclient_lib_init: dev_name is not a network interface", "dev_name=nosuchdev0", "ret=-1"}}},
		"server_device":  {{3, []string{"server_start: dev_name is not a network interface", "dev_name=nosuchdev0", "ret=-1"}}},
		"client_eid":     {{3, []string{"dclient_lib_init: eid is not an address of a local network interface", "eid=192.0.2.1", "ret=-1"}}},
		"server_eid":     {{3, []string{"server_start: eid is not an address of a local network interface", "eid=192.0.2.1", "ret=-1"}}},
		"tp_mismatch": {
			{3, []string{"client_init: the server refused the registration: is tp_mode the same on both sides?", "tp_mode=1", "ret=-1"}},
			{4, []string{"refusing a client: its transport mode differs from the server's", "client_tp_mode=1", "tp_mode=0"}},
		},
		"refused":       {{5, []string{"client_init: the server is not ready", "connection refused", "ret=8200"}}},
		"tls_path":      {{3, []string{"dclient_lib_init: TLS setup failed", "ssl.ca_path", "/nonexistent/ca.pem", "no such file or directory", "ret=-1"}}},
		"tls_password":  {{3, []string{"client_init: cannot connect to the server", "TLS configuration", "client.key", "ret=-1"}}},
		"tls_untrusted": {{3, []string{"client_init: cannot connect to the server", "TLS handshake", "unknown authority", "ret=-1"}}},
	}
	for name, want := range cases {
		for _, level := range []int{2, 3, 7} {
			t.Run(fmt.Sprintf("%s/log_level=%d", name, level), func(t *testing.T) {
				t.Parallel()
				args := []string{freePorts(t, 1)[0], fmt.Sprint(level), name}
				if strings.HasPrefix(name, "tls_") {
					args = append(args, tlsFiles...)
				}
				stderr := runStderr(t, prog, args...)
				if level == 2 {
					if stderr != "" {
						t.Errorf("log_level 2 printed:\n%s", stderr)
					}
					return
				}
				for _, w := range want {
					found := findLog(stderr, syslogName[w.level], w.parts)
					if shown := level >= w.level; found != shown {
						t.Errorf("a %s line with %q: found %v, want %v at log_level %d; stderr:\n%s",
							syslogName[w.level], w.parts, found, shown, level, stderr)
					}
				}
			})
		}
	}
}

// findLog reports whether a line of stderr has level=<level> and every
// part.
func findLog(stderr, level string, parts []string) bool {
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, " level="+level+" ") {
			continue
		}
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// runStderr runs prog, which must end with "OK", and returns its stderr.
func runStderr(t *testing.T, prog string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || !strings.Contains(stdout.String(), "OK ") {
		t.Fatalf("%s %v: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(prog), args, err, stdout.String(), stderr.String())
	}
	return stderr.String()
}
