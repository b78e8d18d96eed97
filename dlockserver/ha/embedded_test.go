package ha_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlockserver/ha"
)

// member is a cluster member embedded in the test process, the way a
// program embedding dlockserver runs one.
type member struct {
	addr string
	srv  *dlockserver.Server
	stop func()
}

// embed starts a server on loopback; with eps it is a member of cluster
// (durable objects or not), otherwise a standalone server.
func embed(tb testing.TB, eps, cluster string, durable bool) *member {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	m := &member{addr: ln.Addr().String()}
	cfg := dlockserver.Config{SessionTimeout: 5 * time.Second}
	var node *ha.Node
	if eps != "" {
		node, err = ha.New(ha.Config{Endpoints: strings.Split(eps, ","), Cluster: cluster, Advertise: m.addr,
			TTL: ttl, DurableObjects: durable})
		if err != nil {
			tb.Fatal(err)
		}
		cfg.Cluster = node
	}
	m.srv, err = dlockserver.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.srv.Serve(ln) }()
	go func() {
		defer wg.Done()
		if node != nil {
			node.Run(ctx, m.srv)
		}
	}()
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
			m.srv.Shutdown(sctx)
			scancel()
			cancel()
			wg.Wait()
			if node != nil {
				node.Close()
			}
		})
	}
	tb.Cleanup(m.stop)
	return m
}

// waitServing waits until one of ms is the serving primary and returns it.
func waitServing(tb testing.TB, ms ...*member) *member {
	tb.Helper()
	for i := 0; i < 400; i++ {
		for _, m := range ms {
			if m.srv.Serving() {
				return m
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	tb.Fatal("no member became the primary")
	return nil
}

// TestEmbeddedDurableObjects: two members embedded in one program
// (ha.Config.DurableObjects); the primary shuts down, the other takes over
// with the objects' values, and the client's handle keeps working.
func TestEmbeddedDurableObjects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	ctx := testCtx(t, 2*time.Minute)
	eps := endpoints(startEtcd(t, 1))
	a := embed(t, eps, "embedded", true)
	waitServing(t, a)
	b := embed(t, eps, "embedded", true)
	reports := make(chan dlock.RecoveryReport, 8)
	cl, err := dlock.Dial(ctx, b.addr, &dlock.Config{AutoRecover: true, Addrs: []string{a.addr, b.addr},
		SessionTimeout: 5 * time.Second, OnRecover: func(r dlock.RecoveryReport) { reports <- r }})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	o, err := cl.CreateAtomic64(ctx, "embedded", 40, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.FetchAndAdd(ctx, 2); err != nil {
		t.Fatal(err)
	}
	a.stop()
	select {
	case r := <-reports:
		if r.Err != nil || !r.NewPrimary || len(r.LostObjects) != 0 {
			t.Fatalf("recovery: %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no recovery")
	}
	if waitServing(t, b) != b {
		t.Fatal("the other member is not the primary")
	}
	if v, err := o.Load(ctx); err != nil || v != 42 {
		t.Fatalf("after the failover: %d, %v; want 42", v, err)
	}
}

// BenchmarkObjects compares fetch-and-add on a standalone server, on an
// HA primary, and on an HA primary with durable objects (each commit a
// round trip to etcd; concurrent requests share commits), one caller and
// 16 concurrent callers; lock/unlock on the durable primary shows that
// locks do not wait for object commits. Every member is embedded; etcd is a
// real process.
//
//	go test -run '^$' -bench Objects -benchtime 2s ./dlockserver/ha
func BenchmarkObjects(b *testing.B) {
	eps := endpoints(startEtcd(b, 1))
	ctx := context.Background()
	for _, mode := range []struct {
		name        string
		ha, durable bool
	}{{"standalone", false, false}, {"ha", true, false}, {"ha-durable", true, true}} {
		var m *member
		if mode.ha {
			m = embed(b, eps, "bench-"+mode.name, mode.durable)
			waitServing(b, m)
		} else {
			m = embed(b, "", "", false)
		}
		cl, err := dlock.Dial(ctx, m.addr, nil)
		if err != nil {
			b.Fatal(err)
		}
		o, err := cl.CreateAtomic64(ctx, "bench", 0, dlock.Atomic64Options{})
		if err != nil {
			b.Fatal(err)
		}
		var total atomic.Uint64
		b.Run(mode.name+"/faa", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := o.FetchAndAdd(ctx, 1); err != nil {
					b.Fatal(err)
				}
			}
			total.Add(uint64(b.N))
		})
		b.Run(mode.name+"/faa-16", func(b *testing.B) {
			b.SetParallelism(8) // 16 callers on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := o.FetchAndAdd(ctx, 1); err != nil {
						b.Error(err)
						return
					}
					total.Add(1)
				}
			})
		})
		if v, err := o.Load(ctx); err != nil || v != total.Load() {
			b.Fatalf("%s: value %d (%v) after %d additions", mode.name, v, err, total.Load())
		}
		l, err := cl.OpenLock(ctx, "bench", dlock.LockOptions{Type: dlock.Atomic})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(mode.name+"/lock-unlock", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := l.Lock(ctx); err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
		if mode.durable {
			b.Run(mode.name+"/lock-unlock-during-faa", func(b *testing.B) {
				stop := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { // object traffic all along
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						o.FetchAndAdd(ctx, 1)
					}
				}()
				for i := 0; i < b.N; i++ {
					if err := l.Lock(ctx); err != nil {
						b.Fatal(err)
					}
					if err := l.Unlock(ctx); err != nil {
						b.Fatal(err)
					}
				}
				close(stop)
				wg.Wait()
			})
		}
		cl.Close()
		m.stop()
	}
}
