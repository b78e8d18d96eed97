package dlockserver_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// dialRawTLS is dialRaw over mutual TLS with a fresh certificate of srv's CA.
func dialRawTLS(t testing.TB, srv *dlocktest.Server) *rawConn {
	t.Helper()
	c := srv.PKI.Issue("raw", dlocktest.CertOptions{})
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(srv.PKI.CA)
	d := &net.Dialer{Timeout: 5 * time.Second}
	nc, err := tls.DialWithDialer(d, "tcp", srv.Addr, &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc}
}

// keepServing runs trylock+unlock on a registered TLS client until stop is
// closed, and counts failures.
func keepServing(t *testing.T, srv *dlocktest.Server, stop <-chan struct{}) (done <-chan struct{}, ops, fails *atomic.Int64) {
	t.Helper()
	c := srv.Dial(t)
	ctx := context.Background()
	l, err := c.OpenLock(ctx, "survivor", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	ops, fails = new(atomic.Int64), new(atomic.Int64)
	d := make(chan struct{})
	go func() {
		defer close(d)
		for {
			select {
			case <-stop:
				return
			default:
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			ok, err := l.TryLock(cctx)
			if ok && err == nil {
				err = l.Unlock(cctx)
			}
			cancel()
			if !ok || err != nil {
				fails.Add(1)
			}
			ops.Add(1)
		}
	}()
	return d, ops, fails
}

// TestTLSStalledHandshake: a peer that connects and says nothing, or starts
// a ClientHello and stalls, is cut off after HandshakeTimeout.
func TestTLSStalledHandshake(t *testing.T) {
	srv := dlocktest.NewTLSServer(t, &dlockserver.Config{HandshakeTimeout: 300 * time.Millisecond})
	for name, first := range map[string][]byte{
		"silent":              nil,
		"partial ClientHello": {0x16, 0x03, 0x01, 0x40, 0x00, 0x01}, // record of 16 KiB, 1 byte sent
	} {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, srv.Addr)
			if first != nil {
				r.write(first)
			}
			start := time.Now()
			r.closed()
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("closed after %v, want about 300ms", d)
			}
		})
	}
	c := srv.Dial(t)
	if c.ID() == 0 {
		t.Fatal("no client id")
	}
}

// TestTLSHalfOpenFlood: thousands of connections that never handshake do
// not stop registered clients from being served nor new clients from
// connecting, and the server's goroutines and memory stay bounded by
// MaxPendingHandshakes.
func TestTLSHalfOpenFlood(t *testing.T) {
	const pending, flood = 64, 2000
	srv := dlocktest.NewTLSServer(t, &dlockserver.Config{MaxPendingHandshakes: pending})
	stop := make(chan struct{})
	done, ops, fails := keepServing(t, srv, stop)
	defer func() { close(stop); <-done }()

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	baseG := runtime.NumGoroutine()

	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, nc := range conns {
			nc.Close()
		}
	}()
	for range flood {
		nc, err := net.DialTimeout("tcp", srv.Addr, 5*time.Second)
		if err != nil {
			t.Fatalf("after %d connections: %v", len(conns), err)
		}
		conns = append(conns, nc)
	}
	// Wait until the server has accepted them all: all but the newest
	// `pending` are closed (they read EOF).
	open := conns
	for deadline := time.Now().Add(20 * time.Second); len(open) > pending; {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open, want ≤ %d", len(open), pending)
		}
		var still []net.Conn
		for _, nc := range open {
			nc.SetReadDeadline(time.Now().Add(time.Millisecond))
			_, err := nc.Read(make([]byte, 1))
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				still = append(still, nc)
			}
		}
		open = still
	}
	if g := runtime.NumGoroutine() - baseG; g > 2*pending+16 {
		t.Errorf("%d more goroutines than before the flood; want ≤ %d", g, 2*pending+16)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 32<<20 {
		t.Errorf("heap grew by %d MiB during the flood", grew>>20)
	}
	t.Logf("after %d half-open connections: %d open, heap %+d KiB, %+d goroutines", flood, len(open),
		(int64(after.HeapInuse)-int64(before.HeapInuse))>>10, runtime.NumGoroutine()-baseG)
	// A new client still gets in.
	c := srv.Dial(t)
	if c.ID() == 0 {
		t.Fatal("no client id")
	}
	if ops.Load() == 0 || fails.Load() != 0 {
		t.Errorf("registered client during the flood: %d operations, %d failed", ops.Load(), fails.Load())
	}
}

// TestTLSOversizedFrame: after a valid handshake, frames claiming huge
// bodies close that connection only, without allocating.
func TestTLSOversizedFrame(t *testing.T) {
	srv := dlocktest.NewTLSServer(t, nil)
	stop := make(chan struct{})
	done, ops, fails := keepServing(t, srv, stop)
	defer func() { close(stop); <-done }()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range 20 {
		r := dialRawTLS(t, srv)
		id := int32(0)
		if i%2 == 1 {
			id = r.register()
		}
		f := wire.AppendFrame(nil, wire.THeartbeat, 9, id, nil)
		binary.LittleEndian.PutUint32(f[8:], uint32(wire.MaxBody+1+i<<20))
		r.write(f)
		r.closed()
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > 16<<20 {
		t.Errorf("heap grew by %d MiB", grew>>20)
	}
	time.Sleep(50 * time.Millisecond)
	if ops.Load() == 0 || fails.Load() != 0 {
		t.Errorf("registered client: %d operations, %d failed", ops.Load(), fails.Load())
	}
}
