// Package dlocktest starts real dlock servers on loopback for tests, the way
// net/http/httptest does for HTTP: dlock's own tests use it, and so can the
// tests of programs that use dlock.
package dlocktest

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
)

// Server is a dlock server listening on a loopback port.
type Server struct {
	*dlockserver.Server
	// Addr is the "127.0.0.1:port" address clients dial.
	Addr string
	// PKI is the CA of a server made by NewTLSServer, and ClientTLS the
	// options Dial uses: a client certificate of that CA whose key is
	// encrypted with the password "dlocktest".
	PKI       *PKI
	ClientTLS *dlock.TLSOptions

	tb   testing.TB
	done chan error
}

// NewServer starts a server with cfg (nil for the defaults) on 127.0.0.1 and
// an ephemeral port. It is shut down when the test ends.
func NewServer(tb testing.TB, cfg *dlockserver.Config) *Server {
	tb.Helper()
	var c dlockserver.Config
	if cfg != nil {
		c = *cfg
	}
	srv, err := dlockserver.New(c)
	if err != nil {
		tb.Fatalf("dlocktest: new server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("dlocktest: listen: %v", err)
	}
	s := &Server{Server: srv, Addr: ln.Addr().String(), tb: tb, done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(ln) }()
	tb.Cleanup(s.Close)
	return s
}

// NewTLSServer is NewServer with mutual TLS: it makes a PKI, a server
// certificate and a client certificate (with an encrypted key), sets
// cfg.TLS unless it is already set, and makes Dial use the client
// certificate.
func NewTLSServer(tb testing.TB, cfg *dlockserver.Config) *Server {
	tb.Helper()
	var c dlockserver.Config
	if cfg != nil {
		c = *cfg
	}
	pki := NewPKI(tb, "")
	if c.TLS == nil {
		c.TLS = pki.TLS(pki.Issue("server", CertOptions{}))
	}
	s := NewServer(tb, &c)
	s.PKI = pki
	s.ClientTLS = pki.TLS(pki.Issue("client", CertOptions{Password: []byte("dlocktest")}))
	return s
}

// Close shuts the server down and waits for it. Calling it twice is harmless.
func (s *Server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Server.Shutdown(ctx); err != nil {
		s.tb.Errorf("dlocktest: shutdown: %v", err)
	}
	if s.done != nil {
		<-s.done
		s.done = nil
	}
}

// Dial registers a new client with the server; it is closed when the test
// ends.
func (s *Server) Dial(tb testing.TB) *dlock.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dlock.Dial(ctx, s.Addr, &dlock.Config{TLS: s.ClientTLS})
	if err != nil {
		tb.Fatalf("dlocktest: dial %s: %v", s.Addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
