package dlock_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// TestTLSOpenSSLDefaultKey: a client whose key was made by openssl req
// -newkey rsa:2048 -passout (OpenSSL 3's default encryption, PBES2 with
// DES-EDE3-CBC) connects with mutual TLS and locks; a wrong password is
// ErrKeyPassword.
func TestTLSOpenSSLDefaultKey(t *testing.T) {
	srv := dlocktest.NewTLSServer(t, nil)
	client := srv.PKI.IssueOpenSSL("openssl-client", "des3 default")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dlock.Dial(ctx, srv.Addr, &dlock.Config{TLS: srv.PKI.TLS(client)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lockUnlock(t, c, "openssl key")

	o := srv.PKI.TLS(client)
	o.KeyPassword = func() ([]byte, error) { return []byte("des3 defaulT"), nil }
	_, err = dlock.Dial(ctx, srv.Addr, &dlock.Config{TLS: o})
	if !errors.Is(err, dlock.ErrKeyPassword) || !errors.Is(err, dlock.ErrTLSConfig) || !strings.Contains(err.Error(), client.KeyFile) {
		t.Errorf("wrong password: err = %v, want ErrKeyPassword naming %s", err, client.KeyFile)
	}
}

// TestTLSSetupErrors: when the TLS files do not load, Dial and
// TLSOptions.Check fail with an error that wraps ErrTLSConfig and names the
// file and the reason.
func TestTLSSetupErrors(t *testing.T) {
	srv := dlocktest.NewTLSServer(t, nil)
	pki := srv.PKI
	good := pki.Issue("setup", dlocktest.CertOptions{Password: []byte("pw")})
	other := pki.Issue("other", dlocktest.CertOptions{})
	missing := filepath.Join(pki.Dir, "missing.pem")
	garbage := filepath.Join(pki.Dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM at all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rc2 := filepath.Join(pki.Dir, "rc2.key")
	if err := os.WriteFile(rc2, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMCIwHAYJKoZIhvcNAQULMA8ECAECAwQFBgcIAgMAgAAEAgAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		edit   func(o *dlock.TLSOptions)
		file   string // the error must name it
		reason string
		is     error
	}{
		{"missing CA", func(o *dlock.TLSOptions) { o.CAFile = missing }, missing, "no such file", fs.ErrNotExist},
		{"CA not PEM", func(o *dlock.TLSOptions) { o.CAFile = garbage }, garbage, "no PEM certificate", nil},
		{"missing certificate", func(o *dlock.TLSOptions) { o.CertFile = missing }, missing, "no such file", fs.ErrNotExist},
		{"missing key", func(o *dlock.TLSOptions) { o.KeyFile = missing }, missing, "no such file", fs.ErrNotExist},
		{"key not PEM", func(o *dlock.TLSOptions) { o.KeyFile = garbage }, garbage, "no PEM private key", nil},
		{"wrong password", func(o *dlock.TLSOptions) {
			o.KeyPassword = func() ([]byte, error) { return []byte("wrong"), nil }
		}, good.KeyFile, "wrong private key password", dlock.ErrKeyPassword},
		{"no password", func(o *dlock.TLSOptions) { o.KeyPassword = nil }, good.KeyFile, "no password", nil},
		{"unsupported cipher", func(o *dlock.TLSOptions) { o.KeyFile = rc2 }, rc2, "pbeWithSHA1AndRC2-CBC", nil},
		{"key of another certificate", func(o *dlock.TLSOptions) { o.KeyFile = other.KeyFile }, other.KeyFile, "does not match the certificate", nil},
		{"missing CRL", func(o *dlock.TLSOptions) { o.CRLFile = missing }, missing, "no such file", fs.ErrNotExist},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := pki.TLS(good)
			tc.edit(o)
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error", what)
				}
				msg := err.Error()
				if !errors.Is(err, dlock.ErrTLSConfig) || !strings.Contains(msg, tc.file) || !strings.Contains(msg, tc.reason) || tc.is != nil && !errors.Is(err, tc.is) {
					t.Errorf("%s: err = %v; want ErrTLSConfig naming %s and %q", what, err, tc.file, tc.reason)
				}
				if strings.Count(msg, tc.file) != 1 {
					t.Errorf("%s: %q names the file %d times", what, msg, strings.Count(msg, tc.file))
				}
			}
			_, err := dlock.Dial(ctx, srv.Addr, &dlock.Config{TLS: o})
			check("Dial", err)
			check("Check", o.Check())
		})
	}
}
