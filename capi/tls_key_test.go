package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock/dlocktest"
)

// TestCTLSOpenSSLKey: a C program whose keys were made by openssl req
// -newkey rsa:2048 -passout (OpenSSL 3's default: PBES2 with DES-EDE3-CBC)
// connects with TLS through client_init; when the key does not load,
// client_init fails and the library logs, at its error level, the file and
// the reason.
func TestCTLSOpenSSLKey(t *testing.T) {
	t.Parallel()
	pki := dlocktest.NewPKI(t, "dlock capi openssl CA")
	const password = "made by openssl req"
	server := pki.IssueOpenSSL("server", password)
	client := pki.IssueOpenSSL("client", password)
	prog := compile(t, filepath.Join("testdata", "tls_des3.c"))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, freePorts(t, 1)[0], pki.CAFile, server.CertFile, server.KeyFile,
		client.CertFile, client.KeyFile, password, client.CertFile)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil || !strings.Contains(stdout.String(), "OK ") {
		t.Fatalf("tls_des3: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	// The error-level log lines of each failing client_init.
	_, log, _ := strings.Cut(stderr.String(), "=== wrong password\n")
	wrong, notKey, _ := strings.Cut(log, "=== not a key\n")
	for _, tc := range []struct {
		name, log, file, reason string
	}{
		{"wrong password", wrong, client.KeyFile, "wrong private key password"},
		{"not a key", notKey, client.CertFile, "no PEM private key"},
	} {
		var found bool
		for _, line := range strings.Split(tc.log, "\n") {
			found = found || strings.Contains(line, "level=ERR ") && strings.Contains(line, tc.file) && strings.Contains(line, tc.reason)
		}
		if !found {
			t.Errorf("%s: no error-level log line naming %s and %q in:\n%s", tc.name, tc.file, tc.reason, tc.log)
		}
	}
}
