package dlock_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
)

// Keeping a lease alive: a holder that works longer than its TTL extends
// the lease periodically (here every TTL/3) and stops working if an
// extension fails, because then another client may get the lock once the
// lease runs out.
func ExampleLock_Extend() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()
	c, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Shutdown(ctx)

	const ttl = 2 * time.Second
	l, err := c.OpenLock(ctx, "reports/daily", dlock.LockOptions{Type: dlock.Atomic, TTL: ttl})
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Lock(ctx); err != nil {
		log.Fatal(err)
	}

	work, cancelWork := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the keep-alive
		defer wg.Done()
		t := time.NewTicker(ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-work.Done():
				return
			case <-t.C:
				if err := l.Extend(work, ttl); err != nil && work.Err() == nil {
					log.Printf("lease lost: %v", err)
					cancelWork() // stop touching the protected resource
					return
				}
			}
		}
	}()

	select { // the work, longer than one TTL
	case <-time.After(ttl + ttl/4):
		fmt.Println("work done, lock still held:", l.Held())
	case <-work.Done():
		fmt.Println("work abandoned")
	}
	cancelWork()
	wg.Wait()
	if err := l.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	// Output: work done, lock still held: true
}

// storage is a resource that keeps the highest fencing token it has seen
// and refuses writes carrying a lower one.
type storage struct {
	mu      sync.Mutex
	highest uint64
}

func (s *storage) write(token uint64, what string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token < s.highest {
		return fmt.Errorf("write %q refused: token %d is stale", what, token)
	}
	s.highest = token
	return nil
}

// Fencing: a holder whose lease ran out (a long pause, a partition) may
// still believe it holds the lock. The resource protects itself by
// refusing writes whose fencing token is lower than one it already saw.
func ExampleLock_Token() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()
	a, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Shutdown(ctx)
	b, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Second}
	la, _ := a.OpenLock(ctx, "ledger", opts)
	lb, _ := b.OpenLock(ctx, "ledger", opts)
	if err := la.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	stale := la.Token()
	// a stalls past its lease; b takes the lock (waiting on the server
	// until the lease runs out) and writes.
	if err := lb.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	var st storage
	fmt.Println(st.write(lb.Token(), "b's update"))
	// a wakes up and writes with its old token.
	fmt.Println(st.write(stale, "a's update") != nil)
	// Output:
	// <nil>
	// true
}

// Lock waits on the server until the lock is granted or the context ends;
// a context that ends withdraws the request, so nothing is left queued.
func ExampleLock_Lock_cancel() {
	addr, stop := startServer()
	defer stop()
	ctx := context.Background()
	a, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer a.Shutdown(ctx)
	b, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer b.Shutdown(ctx)

	la, _ := a.OpenLock(ctx, "busy", dlock.LockOptions{Type: dlock.RW})
	lb, _ := b.OpenLock(ctx, "busy", dlock.LockOptions{Type: dlock.RW})
	if err := la.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	err = lb.Lock(wait)
	fmt.Println("gave up:", errors.Is(err, context.DeadlineExceeded))
	fmt.Println("holds it:", lb.Held())
	// Output:
	// gave up: true
	// holds it: false
}

// Mutual TLS: the server and every client present certificates of the
// same CA; the connection is TLS 1.3. (The example makes a throwaway CA;
// in production the files come from your PKI.)
func ExampleTLSOptions() {
	dir, err := os.MkdirTemp("", "dlock-tls-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca, serverCert, serverKey, clientCert, clientKey := writeExamplePKI(dir)

	srv, err := dlockserver.New(dlockserver.Config{
		TLS: &dlock.TLSOptions{CAFile: ca, CertFile: serverCert, KeyFile: serverKey},
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()

	ctx := context.Background()
	c, err := dlock.Dial(ctx, ln.Addr().String(), &dlock.Config{
		TLS: &dlock.TLSOptions{CAFile: ca, CertFile: clientCert, KeyFile: clientKey},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Shutdown(ctx)
	fmt.Println("heartbeat over TLS:", c.Heartbeat(ctx))

	// A client without a certificate is refused.
	_, err = dlock.Dial(ctx, ln.Addr().String(), &dlock.Config{DialTimeout: time.Second, TLS: &dlock.TLSOptions{CAFile: ca}})
	fmt.Println("without a certificate:", err != nil)
	// Output:
	// heartbeat over TLS: <nil>
	// without a certificate: true
}

// AutoRecover: when the primary dies and a new one starts in recovery mode,
// the client re-registers, reports the locks it holds, and tells OnRecover
// which it kept.
func ExampleConfig_autoRecover() {
	first, err := dlockserver.New(dlockserver.Config{})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	addr := ln.Addr().String()
	go first.Serve(ln)

	ctx := context.Background()
	recovered := make(chan dlock.RecoveryReport, 1)
	c, err := dlock.Dial(ctx, addr, &dlock.Config{
		AutoRecover: true,
		OnRecover:   func(r dlock.RecoveryReport) { recovered <- r },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	l, _ := c.OpenLock(ctx, "leader", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err := l.Lock(ctx); err != nil {
		log.Fatal(err)
	}

	first.Close() // the primary dies; a new one starts on the same address
	second, err := dlockserver.New(dlockserver.Config{RecoveryClients: 1})
	if err != nil {
		log.Fatal(err)
	}
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	go second.Serve(ln2)
	defer second.Close()

	r := <-recovered
	fmt.Println("new primary:", r.NewPrimary, "kept:", len(r.Kept), "lost:", len(r.Lost), "err:", r.Err)
	fmt.Println("still held:", l.Held(), "server ready:", second.Ready())
	// Output:
	// new primary: true kept: 1 lost: 0 err: <nil>
	// still held: true server ready: true
}

// writeExamplePKI writes a CA and a server and a client certificate with
// their keys (PEM, PKCS#8) into dir and returns the file names.
func writeExamplePKI(dir string) (ca, serverCert, serverKey, clientCert, clientKey string) {
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			log.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		log.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage:    x509.KeyUsageDigitalSignature,
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			log.Fatal(err)
		}
		k, _ := x509.MarshalPKCS8PrivateKey(key)
		return write(cn+".pem", "CERTIFICATE", der), write(cn+".key", "PRIVATE KEY", k)
	}
	ca = write("ca.pem", "CERTIFICATE", caDER)
	serverCert, serverKey = issue(2, "server")
	clientCert, clientKey = issue(3, "client")
	return
}
