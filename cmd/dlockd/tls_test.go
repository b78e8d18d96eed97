package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// needOpenSSL returns the path of the openssl command. CI installs it
// (.ci/run), so there a missing openssl fails the test.
func needOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("openssl is missing in CI: %v", err)
		}
		t.Skip("openssl not installed")
	}
	return path
}

// syncBuffer is a strings.Builder safe for a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDlockd runs dlockd with args and returns its address and stderr.
func startDlockd(t *testing.T, bin string, args ...string) (string, *syncBuffer) {
	t.Helper()
	addr := freePort(t)
	cmd := exec.Command(bin, append([]string{"-addr", addr, "-log-level", "debug"}, args...)...)
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
	if !bufio.NewScanner(stdout).Scan() {
		cmd.Wait()
		t.Fatalf("dlockd did not start:\n%s", stderr)
	}
	return addr, stderr
}

// sClient runs openssl s_client against addr with args, sends an Init
// frame, and returns the status of the reply (or the read error) and what
// s_client printed on stderr.
func sClient(t *testing.T, openssl, addr string, args ...string) (int32, error, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, append([]string{"s_client", "-connect", addr, "-brief", "-tls1_3"}, args...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	m := wire.Init{MinVersion: dlock.MinProtoVersion}
	stdin.Write(m.Append(nil, wire.TInit, 1, 0))
	var h wire.Header
	_, rerr := wire.ReadFrame(stdout, &h, nil)
	stdin.Close()
	io.Copy(io.Discard, stdout)
	cmd.Wait()
	return h.Status(), rerr, stderr.String()
}

// TestDaemonTLSOpenSSL: dlockd with an openssl-encrypted key (password from
// a file) and -tls-require-aes256 serves an OpenSSL client that offers only
// TLS_AES_256_GCM_SHA384, as DLock's clients do, and refuses one that
// negotiates another suite, one without a certificate, and a Go client
// (Go cannot be made to negotiate TLS_AES_256_GCM_SHA384).
func TestDaemonTLSOpenSSL(t *testing.T) {
	openssl := needOpenSSL(t)
	bin := buildDlockd(t)
	pki := dlocktest.NewPKI(t, "")
	server := pki.Issue("server", dlocktest.CertOptions{})
	client := pki.Issue("client", dlocktest.CertOptions{})
	pwFile := filepath.Join(pki.Dir, "server.pass")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	encKey := filepath.Join(pki.Dir, "server.enc.key")
	if out, err := exec.Command(openssl, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", server.KeyFile, "-out", encKey, "-passout", "file:"+pwFile).CombinedOutput(); err != nil {
		t.Fatalf("openssl pkcs8: %v\n%s", err, out)
	}
	crl := pki.WriteCRL("crl.pem")
	addr, log := startDlockd(t, bin, "-tls-ca", pki.CAFile, "-tls-cert", server.CertFile, "-tls-key", encKey,
		"-tls-key-password-file", pwFile, "-tls-crl", crl, "-tls-require-aes256")

	st, err, out := sClient(t, openssl, addr, "-ciphersuites", "TLS_AES_256_GCM_SHA384",
		"-CAfile", pki.CAFile, "-cert", client.CertFile, "-key", client.KeyFile)
	if err != nil || st != 0 {
		t.Fatalf("s_client with TLS_AES_256_GCM_SHA384: status %d, %v\n%s\ndlockd:\n%s", st, err, out, log)
	}
	for _, want := range []string{"Protocol version: TLSv1.3", "Ciphersuite: TLS_AES_256_GCM_SHA384", "Verification: OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("s_client output lacks %q:\n%s", want, out)
		}
	}

	_, err, out = sClient(t, openssl, addr, "-ciphersuites", "TLS_AES_128_GCM_SHA256",
		"-CAfile", pki.CAFile, "-cert", client.CertFile, "-key", client.KeyFile)
	if err == nil {
		t.Errorf("s_client with TLS_AES_128_GCM_SHA256 was served:\n%s", out)
	}
	_, err, out = sClient(t, openssl, addr, "-ciphersuites", "TLS_AES_256_GCM_SHA384", "-CAfile", pki.CAFile)
	if err == nil {
		t.Errorf("s_client without a certificate was served:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c, err := dlock.Dial(ctx, addr, &dlock.Config{TLS: pki.TLS(client)}); err == nil {
		c.Close()
		t.Error("a Go client passed -tls-require-aes256")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s := log.String()
		if strings.Contains(s, "negotiated cipher suite TLS_AES_128_GCM_SHA256") && strings.Contains(s, "didn't provide a certificate") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dlockd log lacks the refusals:\n%s", s)
		}
	}
}

// TestDaemonTLS: a Go client with an encrypted key talks to dlockd with
// mutual TLS (the password from an environment variable); a plaintext
// client is refused.
func TestDaemonTLS(t *testing.T) {
	bin := buildDlockd(t)
	pki := dlocktest.NewPKI(t, "")
	server := pki.Issue("server", dlocktest.CertOptions{Password: []byte("from-env")})
	t.Setenv("DLOCKD_TEST_KEY_PASSWORD", "from-env")
	addr, log := startDlockd(t, bin, "-tls-ca", pki.CAFile, "-tls-cert", server.CertFile, "-tls-key", server.KeyFile,
		"-tls-key-password-env", "DLOCKD_TEST_KEY_PASSWORD")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dlock.Dial(ctx, addr, &dlock.Config{TLS: pki.TLS(pki.Issue("client", dlocktest.CertOptions{Password: []byte("pw")}))})
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	l, err := c.OpenLock(ctx, "tls", dlock.LockOptions{Type: dlock.Atomic})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	c.Close()
	if _, err := dlock.Dial(ctx, addr, nil); err == nil {
		t.Error("plaintext client served by a TLS dlockd")
	}
}

// TestDaemonTLSFlagErrors: TLS problems stop dlockd at startup with a
// message naming them.
func TestDaemonTLSFlagErrors(t *testing.T) {
	pki := dlocktest.NewPKI(t, "")
	srv := pki.Issue("server", dlocktest.CertOptions{Password: []byte("right")})
	wrong := filepath.Join(pki.Dir, "wrong.pass")
	os.WriteFile(wrong, []byte("wrong\n"), 0o600)
	right := filepath.Join(pki.Dir, "right.pass")
	os.WriteFile(right, []byte("right\r\n"), 0o600)
	other := dlocktest.NewPKI(t, "other")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-tls-cert", srv.CertFile}, "needs -tls-cert and -tls-key"},
		{[]string{"-tls-cert", srv.CertFile, "-tls-key", srv.KeyFile}, "-tls-client-auth needs -tls-ca"},
		{[]string{"-tls-ca", pki.CAFile, "-tls-cert", srv.CertFile, "-tls-key", srv.KeyFile}, "no password was configured"},
		{[]string{"-tls-ca", pki.CAFile, "-tls-cert", srv.CertFile, "-tls-key", srv.KeyFile, "-tls-key-password-file", wrong}, "wrong private key password"},
		{[]string{"-tls-ca", pki.CAFile, "-tls-cert", srv.CertFile, "-tls-key", srv.KeyFile, "-tls-key-password-env", "DLOCKD_UNSET_VARIABLE"}, "DLOCKD_UNSET_VARIABLE is not set"},
		{[]string{"-tls-ca", pki.CAFile, "-tls-cert", srv.CertFile, "-tls-key", srv.KeyFile, "-tls-key-password-file", right, "-tls-crl", other.WriteCRL("crl.pem")}, "not signed by a CA"},
		{[]string{"-tls-key-password-file", wrong}, "without -tls-cert"},
	} {
		var out, errw bytes.Buffer
		err := run(append([]string{"-addr", "127.0.0.1:0"}, tc.args...), &out, &errw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("dlockd %v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}
