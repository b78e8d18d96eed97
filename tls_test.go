package dlock_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitLog waits until the server logged want.
func (l *logBuffer) waitLog(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(l.String(), want) {
			return
		}
	}
	t.Errorf("server log lacks %q:\n%s", want, l.String())
}

func dialTLS(ctx context.Context, addr string, o *dlock.TLSOptions) (*dlock.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return dlock.Dial(ctx, addr, &dlock.Config{TLS: o})
}

func lockUnlock(t *testing.T, c *dlock.Client, name string) {
	t.Helper()
	ctx := context.Background()
	l, err := c.OpenLock(ctx, name, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatalf("TryLock = %v, %v", ok, err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTLS: mutual TLS works, and each way of failing to authenticate is
// refused with an error that says why.
func TestTLS(t *testing.T) {
	var log logBuffer
	srv := dlocktest.NewTLSServer(t, &dlockserver.Config{Logger: log.logger()})
	pki := srv.PKI
	ctx := context.Background()

	t.Run("mutual", func(t *testing.T) {
		c := srv.Dial(t)
		lockUnlock(t, c, "mutual")
	})
	t.Run("TLS 1.3", func(t *testing.T) {
		cert, err := tls.LoadX509KeyPair(pki.Issue("raw", dlocktest.CertOptions{}).CertFile, pki.Dir+"/raw.key")
		if err != nil {
			t.Fatal(err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(pki.CA)
		nc, err := tls.Dial("tcp", srv.Addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		cs := nc.ConnectionState()
		if cs.Version != tls.VersionTLS13 {
			t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(cs.Version))
		}
		// Go↔Go: Go's own TLS 1.3 preference, which no setting changes.
		if cs.CipherSuite != tls.TLS_AES_128_GCM_SHA256 && cs.CipherSuite != tls.TLS_CHACHA20_POLY1305_SHA256 {
			t.Errorf("Go peers negotiated %s; the documentation says AES-128-GCM or ChaCha20", tls.CipherSuiteName(cs.CipherSuite))
		}
		// A TLS 1.2 client is refused.
		_, err = tls.Dial("tcp", srv.Addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost", MaxVersion: tls.VersionTLS12})
		if err == nil || !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("TLS 1.2 client: err = %v, want a protocol version alert", err)
		}
	})

	other := dlocktest.NewPKI(t, "unrelated CA")
	for _, tc := range []struct {
		name    string
		opts    func() *dlock.TLSOptions
		want    string // in the client's error
		wantLog string // in the server's log, if the server refused
	}{
		{"wrong CA", func() *dlock.TLSOptions {
			o := other.TLS(other.Issue("intruder", dlocktest.CertOptions{}))
			o.CAFile = pki.CAFile // trusts the server, but is not trusted
			return o
		}, "unknown certificate authority", "certificate signed by unknown authority"},
		{"expired", func() *dlock.TLSOptions {
			return pki.TLS(pki.Issue("expired", dlocktest.CertOptions{NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)}))
		}, "expired certificate", "expired"},
		{"no certificate", func() *dlock.TLSOptions {
			// A ready tls.Config with roots and no certificate.
			roots := x509.NewCertPool()
			roots.AddCert(pki.CA)
			return &dlock.TLSOptions{Config: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
		}, "certificate required", "didn't provide a certificate"},
		{"wrong password", func() *dlock.TLSOptions {
			o := pki.TLS(pki.Issue("pw", dlocktest.CertOptions{Password: []byte("right")}))
			o.KeyPassword = func() ([]byte, error) { return []byte("wrong"), nil }
			return o
		}, "wrong private key password", ""},
		{"server from another CA", func() *dlock.TLSOptions {
			o := pki.TLS(pki.Issue("trusting", dlocktest.CertOptions{}))
			o.CAFile = other.CAFile
			return o
		}, "certificate signed by unknown authority", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			c, err := dialTLS(ctx, srv.Addr, tc.opts())
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dial error %q lacks %q", err, tc.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refusal took %v", d)
			}
			if tc.wantLog != "" {
				log.waitLog(t, tc.wantLog)
			}
		})
	}
	t.Run("wrong password is ErrKeyPassword", func(t *testing.T) {
		o := pki.TLS(pki.Issue("pw2", dlocktest.CertOptions{Password: []byte("right")}))
		var wiped []byte
		o.KeyPassword = func() ([]byte, error) { wiped = []byte("wrong"); return wiped, nil }
		_, err := dialTLS(ctx, srv.Addr, o)
		if !errors.Is(err, dlock.ErrKeyPassword) {
			t.Errorf("err = %v, want ErrKeyPassword", err)
		}
		if !bytes.Equal(wiped, make([]byte, 5)) {
			t.Errorf("password after use = %q, want zeroes", wiped)
		}
	})
	if n := srv.Clients(); n != 1 {
		t.Errorf("%d registered clients, want 1 (only the mutual one)", n)
	}
}

// TestTLSRevocation: a CRL is enforced whenever it is set, is re-read when
// the file changes, and still applies with a VerifyPeer callback.
func TestTLSRevocation(t *testing.T) {
	pki := dlocktest.NewPKI(t, "")
	good := pki.Issue("good", dlocktest.CertOptions{})
	bad := pki.Issue("bad", dlocktest.CertOptions{Password: []byte("pw")})
	crl := pki.WriteCRL("crl.pem") // revokes nothing yet
	var log logBuffer
	so := pki.TLS(pki.Issue("server", dlocktest.CertOptions{}))
	so.CRLFile = crl
	srv := dlocktest.NewServer(t, &dlockserver.Config{TLS: so, Logger: log.logger()})
	ctx := context.Background()

	c, err := dialTLS(ctx, srv.Addr, pki.TLS(bad))
	if err != nil {
		t.Fatalf("before revocation: %v", err)
	}
	c.Close()

	pki.WriteCRL("crl.pem", bad)
	future := time.Now().Add(time.Minute) // a new mtime even on a coarse clock
	os.Chtimes(crl, future, future)
	if _, err := dialTLS(ctx, srv.Addr, pki.TLS(bad)); err == nil || !strings.Contains(err.Error(), "bad certificate") {
		t.Errorf("revoked: err = %v, want a bad certificate alert", err)
	}
	log.waitLog(t, "is revoked by the CRL")
	c, err = dialTLS(ctx, srv.Addr, pki.TLS(good))
	if err != nil {
		t.Fatalf("not revoked: %v", err)
	}
	c.Close()

	// The client checks the server against its CRL too.
	co := pki.TLS(good)
	co.CRLFile = pki.WriteCRL("server-crl.pem", pki.Issue("other", dlocktest.CertOptions{}))
	c, err = dialTLS(ctx, srv.Addr, co)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	// A VerifyPeer callback replaces chain verification, not the CRL.
	var calls int
	var mu sync.Mutex
	other := dlocktest.NewPKI(t, "unrelated CA")
	so2 := pki.TLS(pki.Issue("server2", dlocktest.CertOptions{}))
	so2.CRLFile = crl
	so2.VerifyPeer = func(peer []*x509.Certificate, crlFile string) error {
		mu.Lock()
		calls++
		mu.Unlock()
		if crlFile != crl {
			t.Errorf("callback got CRL %q, want %q", crlFile, crl)
		}
		if peer[0].Subject.CommonName == "refused" {
			return errors.New("not you")
		}
		return nil
	}
	srv2 := dlocktest.NewServer(t, &dlockserver.Config{TLS: so2, Logger: log.logger()})
	foreign := other.TLS(other.Issue("foreign", dlocktest.CertOptions{}))
	foreign.CAFile = pki.CAFile
	if c, err := dialTLS(ctx, srv2.Addr, foreign); err != nil {
		t.Errorf("callback accepts a certificate of an unknown CA: %v", err)
	} else {
		c.Close()
	}
	if _, err := dialTLS(ctx, srv2.Addr, pki.TLS(pki.Issue("refused", dlocktest.CertOptions{}))); err == nil {
		t.Error("callback refusal ignored")
	}
	log.waitLog(t, "refused by the verification callback: not you")
	if _, err := dialTLS(ctx, srv2.Addr, pki.TLS(bad)); err == nil {
		t.Error("revoked certificate accepted when a callback is set")
	}
	mu.Lock()
	defer mu.Unlock()
	if calls < 3 {
		t.Errorf("callback called %d times, want ≥ 3", calls)
	}
}

// TestTLSLazyServerKey: as in DLock, a server whose key does not decrypt
// starts, and refuses connections, saying why in its log.
func TestTLSLazyServerKey(t *testing.T) {
	pki := dlocktest.NewPKI(t, "")
	so := pki.TLS(pki.Issue("server", dlocktest.CertOptions{Password: []byte("right")}))
	so.KeyPassword = func() ([]byte, error) { return []byte("wrong"), nil }
	if err := so.Check(); !errors.Is(err, dlock.ErrKeyPassword) {
		t.Errorf("Check: %v, want ErrKeyPassword", err)
	}
	var log logBuffer
	srv := dlocktest.NewServer(t, &dlockserver.Config{TLS: so, Logger: log.logger()})
	if _, err := dialTLS(context.Background(), srv.Addr, pki.TLS(pki.Issue("client", dlocktest.CertOptions{}))); err == nil {
		t.Fatal("served with an undecryptable key")
	}
	log.waitLog(t, "wrong private key password")
}

// TestTLSNoDowngrade: a TLS server refuses plaintext clients, a plaintext
// server refuses TLS clients, both at once and with a log line that says so.
func TestTLSNoDowngrade(t *testing.T) {
	var log logBuffer
	tlsSrv := dlocktest.NewTLSServer(t, &dlockserver.Config{Logger: log.logger()})
	plain := dlocktest.NewServer(t, &dlockserver.Config{Logger: log.logger()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	start := time.Now()
	if c, err := dlock.Dial(ctx, tlsSrv.Addr, nil); err == nil {
		c.Close()
		t.Error("plaintext client registered with a TLS server")
	} else if !strings.Contains(err.Error(), "does it require TLS?") {
		t.Errorf("plaintext client's error %q does not point at TLS", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("plaintext client refused after %v", d)
	}
	log.waitLog(t, "refusing a plaintext client: this server requires TLS")

	start = time.Now()
	_, err := dlock.Dial(ctx, plain.Addr, &dlock.Config{TLS: tlsSrv.ClientTLS})
	if err == nil || !strings.Contains(err.Error(), "plaintext dlock server") {
		t.Errorf("TLS client to a plaintext server: err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("TLS client refused after %v", d)
	}
	log.waitLog(t, "a TLS client on a plaintext server")
}

// TestTLSCipherPolicy: RequireAES256 cannot be met by two Go peers (Go
// always prefers AES-128-GCM or ChaCha20 in TLS 1.3), and says so. The
// OpenSSL side, which can offer only TLS_AES_256_GCM_SHA384, is tested in
// cmd/dlockd.
func TestTLSCipherPolicy(t *testing.T) {
	pki := dlocktest.NewPKI(t, "")
	var log logBuffer
	so := pki.TLS(pki.Issue("server", dlocktest.CertOptions{}))
	so.RequireAES256 = true
	srv := dlocktest.NewServer(t, &dlockserver.Config{TLS: so, Logger: log.logger()})
	ctx := context.Background()
	if _, err := dialTLS(ctx, srv.Addr, pki.TLS(pki.Issue("client", dlocktest.CertOptions{}))); err == nil {
		t.Fatal("a Go client passed the server's RequireAES256")
	}
	log.waitLog(t, "only TLS_AES_256_GCM_SHA384 is allowed")

	plainPolicy := dlocktest.NewServer(t, &dlockserver.Config{TLS: pki.TLS(pki.Issue("server2", dlocktest.CertOptions{}))})
	co := pki.TLS(pki.Issue("client2", dlocktest.CertOptions{}))
	co.RequireAES256 = true
	_, err := dialTLS(ctx, plainPolicy.Addr, co)
	if err == nil || !strings.Contains(err.Error(), "only TLS_AES_256_GCM_SHA384 is allowed") {
		t.Errorf("Go client with RequireAES256 to a Go server: err = %v", err)
	}
}

// rawTLS is a hand-driven TLS protocol peer.
type rawTLS struct {
	t  *testing.T
	nc *tls.Conn
}

func dialRawTLS(t *testing.T, addr string, pki *dlocktest.PKI, c dlocktest.Cert) *rawTLS {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(pki.CA)
	nc, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawTLS{t: t, nc: nc}
}

// reinit sends TReinit for id and returns the reply's status, or the error
// that ended the stream.
func (r *rawTLS) reinit(id int32) (int32, error) {
	m := wire.Init{MinVersion: dlock.MinProtoVersion}
	if _, err := r.nc.Write(m.Append(nil, wire.TReinit, 1, id)); err != nil {
		return 0, err
	}
	var h wire.Header
	if _, err := wire.ReadFrame(r.nc, &h, nil); err != nil {
		return 0, err
	}
	return h.Status(), nil
}

// TestTLSIdentity: over TLS a client id is bound to the certificate that
// registered it: another certificate cannot take it over with Reinit, even
// after the owner's connection dropped; the owner can.
func TestTLSIdentity(t *testing.T) {
	srv := dlocktest.NewTLSServer(t, nil)
	pki := srv.PKI
	ctx := context.Background()
	victim := srv.Dial(t)
	l, err := victim.OpenLock(ctx, "held", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	id := victim.ID()

	thief := pki.Issue("thief", dlocktest.CertOptions{})
	// While the victim is connected: refused, and the victim keeps its
	// connection.
	r := dialRawTLS(t, srv.Addr, pki, thief)
	if st, err := r.reinit(id); err != nil || st != int32(dlock.ErrGeneric) {
		t.Errorf("reinit of a live id by another certificate: status %d, %v; want -1", st, err)
	}
	if err := l.Extend(ctx, time.Minute); err != nil {
		t.Errorf("victim after the attempt: %v", err)
	}
	// After the victim's connection dropped (it keeps its session).
	victim.Close()
	for srv.Stats()[dlock.StatClientDisconnect] == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	r = dialRawTLS(t, srv.Addr, pki, thief)
	if st, err := r.reinit(id); err != nil || st != int32(dlock.ErrGeneric) {
		t.Errorf("reinit of a dropped id by another certificate: status %d, %v; want -1", st, err)
	}
	if n := srv.Stats()[dlock.StatClientIDVerifyFail]; n != 2 {
		t.Errorf("CLIENT_ID_VERIFY_FAIL = %d, want 2", n)
	}
	// The same certificate (the dlocktest client's) may come back.
	owner := pki.Issue("client", dlocktest.CertOptions{}) // same subject and CA: same principal
	r = dialRawTLS(t, srv.Addr, pki, owner)
	if st, err := r.reinit(id); err != nil || st != 0 {
		t.Errorf("reinit by the owner's principal: status %d, %v; want 0", st, err)
	}
}

// TestTLSConcurrentDials: many clients handshaking at once all get in.
func TestTLSConcurrentDials(t *testing.T) {
	srv := dlocktest.NewTLSServer(t, nil)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			c, err := dialTLS(context.Background(), srv.Addr, srv.ClientTLS)
			if err != nil {
				errs <- err
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func BenchmarkTLSTryLockUnlock(b *testing.B) {
	benchTryLockUnlock(b, dlocktest.NewTLSServer(b, nil).Dial(b), context.Background())
}

// BenchmarkTLSParallelTryLockUnlock is BenchmarkParallelTryLockUnlock over
// TLS: 32 goroutines per CPU pipelining on one connection.
func BenchmarkTLSParallelTryLockUnlock(b *testing.B) {
	benchParallelTryLockUnlock(b, dlocktest.NewTLSServer(b, nil).Dial(b), context.Background())
}

// BenchmarkTLSDial measures a full mutual-TLS connection and registration.
func BenchmarkTLSDial(b *testing.B) {
	srv := dlocktest.NewTLSServer(b, nil)
	for b.Loop() {
		c, err := dlock.Dial(context.Background(), srv.Addr, &dlock.Config{TLS: srv.ClientTLS})
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
