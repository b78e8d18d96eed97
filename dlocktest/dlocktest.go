// Package dlocktest starts real dlock servers on loopback for tests, the way
// net/http/httptest does for HTTP: dlock's own tests use it, and so can the
// tests of programs that use dlock. NewPipeServer starts one in memory
// instead (connections are net.Pipe ends), for tests that run in a
// testing/synctest bubble and let leases and timeouts pass without waiting.
package dlocktest

import (
	"context"
	"fmt"
	"net"
	"sync"
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
	pipe bool           // in memory: no listener, DialContext makes pipes
	wg   sync.WaitGroup // ServeConn goroutines of an in-memory server
	mu   sync.Mutex
	shut bool // Close began: DialContext refuses
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

// NewPipeServer starts a server with cfg (nil for the defaults) that
// listens nowhere: each connection is one end of a net.Pipe, made by the
// server's DialContext and served by ServeConn. Nothing touches the network,
// so it works inside a testing/synctest bubble, where the test controls
// time: leases, session timeouts and deadlines pass instantly. Addr is
// "pipe"; dial with ClientConfig (or Dial), which sets
// dlock.Config.DialContext. It is shut down when the test ends.
func NewPipeServer(tb testing.TB, cfg *dlockserver.Config) *Server {
	tb.Helper()
	var c dlockserver.Config
	if cfg != nil {
		c = *cfg
	}
	srv, err := dlockserver.New(c)
	if err != nil {
		tb.Fatalf("dlocktest: new server: %v", err)
	}
	s := &Server{Server: srv, Addr: "pipe", tb: tb, pipe: true}
	tb.Cleanup(s.Close)
	return s
}

// DialContext connects to an in-memory server (NewPipeServer): it returns
// the client's end of a new net.Pipe whose other end the server serves. For
// a server on a port it dials Addr over TCP. Its shape is that of
// dlock.Config.DialContext; network and address are ignored.
func (s *Server) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if !s.pipe {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", s.Addr)
	}
	s.mu.Lock()
	if s.shut {
		s.mu.Unlock()
		return nil, fmt.Errorf("dlocktest: dial: %w", dlockserver.ErrServerClosed)
	}
	s.wg.Add(1)
	s.mu.Unlock()
	cli, srv := net.Pipe()
	go func() {
		defer s.wg.Done()
		s.Server.ServeConn(srv) // ends with the connection or the server
	}()
	return cli, nil
}

// ClientConfig returns the Config Dial uses: the client certificate of a
// TLS server, and DialContext of an in-memory one. Change it at will.
func (s *Server) ClientConfig() *dlock.Config {
	cfg := &dlock.Config{TLS: s.ClientTLS}
	if s.pipe {
		cfg.DialContext = s.DialContext
	}
	return cfg
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
	s.mu.Lock()
	s.shut = true
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Server.Shutdown(ctx); err != nil {
		s.tb.Errorf("dlocktest: shutdown: %v", err)
	}
	if s.done != nil {
		<-s.done
		s.done = nil
	}
	s.wg.Wait()
}

// Dial registers a new client with the server; it is closed when the test
// ends.
func (s *Server) Dial(tb testing.TB) *dlock.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dlock.Dial(ctx, s.Addr, s.ClientConfig())
	if err != nil {
		tb.Fatalf("dlocktest: dial %s: %v", s.Addr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
