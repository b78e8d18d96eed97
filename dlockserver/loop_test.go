package dlockserver_test

import (
	"context"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// connModes runs f against a server of each connection mode: the event
// loops (the default on Linux) and a goroutine pair per connection.
func connModes(t *testing.T, cfg dlockserver.Config, f func(t *testing.T, srv *dlocktest.Server, loops bool)) {
	for _, goroutines := range []bool{false, true} {
		name := "loop"
		if goroutines {
			name = "goroutines"
		}
		t.Run(name, func(t *testing.T) {
			c := cfg
			c.GoroutineConns = goroutines
			srv := dlocktest.NewServer(t, &c)
			f(t, srv, !goroutines && runtime.GOOS == "linux")
		})
	}
}

// TestSlowReaderClosed: a client that sends requests and never reads its
// replies is disconnected once its replies have not been taken for
// WriteTimeout (a failed send is counted), and other clients are served
// throughout. Also a WriteTimeout under a second, which the goroutine path
// once applied to every write of every client.
func TestSlowReaderClosed(t *testing.T) {
	const writeTimeout = 700 * time.Millisecond
	var log syncLog
	defer func() {
		if t.Failed() {
			t.Log(strings.Join(log.lines(), "\n"))
		}
	}()
	connModes(t, dlockserver.Config{WriteTimeout: writeTimeout, Logger: slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))}, func(t *testing.T, srv *dlocktest.Server, loops bool) {
		ctx := context.Background()
		good := srv.Dial(t)
		gl, err := good.OpenLock(ctx, "served", dlock.LockOptions{Type: dlock.Atomic})
		if err != nil {
			t.Fatal(err)
		}

		r := dialRaw(t, srv.Addr)
		r.nc.(*net.TCPConn).SetReadBuffer(4 << 10)
		id := r.register()
		if n, _ := dlockserver.EventLoops(srv.Server); loops != (n > 0) {
			t.Fatalf("%d event loops; want them: %v", n, loops)
		}
		// Each 16-byte stats request gets a 376-byte reply: 2 MB of
		// requests ask for 47 MB the client never reads.
		var burst []byte
		for i := range 1 << 17 {
			burst = wire.AppendFrame(burst, wire.TStats, uint32(i+2), id, nil)
		}
		wrote := make(chan error, 1)
		go func() {
			_, err := r.nc.Write(burst) // blocks once the server stops reading
			wrote <- err
		}()

		// The good client is served while the server waits on the other.
		start := time.Now()
		for i := 0; time.Since(start) < writeTimeout; i++ {
			if ok, err := gl.TryLock(ctx); err != nil || !ok {
				t.Fatalf("try %d: %v %v", i, ok, err)
			}
			if err := gl.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}

		// The writer's write ends with an error once the server closed
		// the connection (or completes, if the server read it all before
		// it stalled; then the close is seen by reading).
		select {
		case <-wrote:
		case <-time.After(writeTimeout + 15*time.Second):
			t.Fatal("the server still reads from a client that does not read")
		}
		r.nc.SetReadDeadline(time.Now().Add(15 * time.Second))
		r.closed()
		deadline := time.Now().Add(5 * time.Second)
		for srv.Stats()[dlock.StatSendFail] == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no failed send counted")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if ok, err := gl.TryLock(ctx); err != nil || !ok {
			t.Fatalf("after: %v %v", ok, err)
		}
	})
}

// TestLoopsStopOnClose: Close ends every connection and every event loop,
// with clients connected and a request waiting.
func TestLoopsStopOnClose(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := context.Background()
	a, b := srv.Dial(t), srv.Dial(t)
	la, err := a.OpenLock(ctx, "x", dlock.LockOptions{Type: dlock.Fair})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.OpenLock(ctx, "x", dlock.LockOptions{Type: dlock.Fair})
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- lb.Lock(ctx) }()
	time.Sleep(50 * time.Millisecond)
	n, _ := dlockserver.EventLoops(srv.Server)
	if runtime.GOOS == "linux" && n == 0 {
		t.Fatal("no event loop serves the connections")
	}
	srv.Close()
	if err := <-waited; err == nil {
		t.Fatal("a wait survived the server's close")
	}
	if n, stopped := dlockserver.EventLoops(srv.Server); stopped != n {
		t.Fatalf("%d of %d event loops still run after Close", n-stopped, n)
	}
}

// TestLargestFrameInPieces: a frame of the largest body, arriving in
// pieces with a request right behind it, is answered and the connection
// stays usable; one byte more closes the connection.
func TestLargestFrameInPieces(t *testing.T) {
	connModes(t, dlockserver.Config{}, func(t *testing.T, srv *dlocktest.Server, _ bool) {
		r := dialRaw(t, srv.Addr)
		id := r.register()
		f := wire.AppendFrame(nil, 0x6E, 9, id, make([]byte, wire.MaxBody))
		f = wire.AppendFrame(f, 0x6E, 10, id, nil)
		for _, piece := range [][]byte{f[:7], f[7 : 20<<10], f[20<<10:]} {
			r.write(piece)
			time.Sleep(20 * time.Millisecond)
		}
		for _, want := range []uint32{9, 10} {
			h, _, err := r.read()
			if err != nil || h.Type() != wire.TUnknownReply || h.ID() != want || dlock.Status(h.Status()) != dlock.ErrInval {
				t.Fatalf("reply %d: %v id %d type %#x status %d", want, err, h.ID(), h.Type(), h.Status())
			}
		}
		r.write(wire.AppendFrame(nil, 0x6E, 11, id, make([]byte, wire.MaxBody+1)))
		r.closed()
	})
}

// TestClockReadAfterEachRead: the server reads its clock once for the frames
// that one read of a socket brings, and again for the next read. A
// connection whose request found a lock held must see the holder's lease
// run out on its next request, however long the connection was idle in
// between (a reading kept past its read would make the lease look alive).
func TestClockReadAfterEachRead(t *testing.T) {
	connModes(t, dlockserver.Config{}, func(t *testing.T, srv *dlocktest.Server, _ bool) {
		ctx := context.Background()
		opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Second}
		var locks [2]*dlock.Lock
		for i := range locks {
			c := srv.Dial(t)
			l, err := c.OpenLock(ctx, "lease", opts)
			if err != nil {
				t.Fatal(err)
			}
			locks[i] = l
		}
		if ok, err := locks[0].TryLock(ctx); !ok || err != nil {
			t.Fatalf("first TryLock: %v %v", ok, err)
		}
		if ok, err := locks[1].TryLock(ctx); ok || err != nil {
			t.Fatalf("TryLock of a held lock: %v %v", ok, err)
		}
		// A 1 s lease granted within second s lasts through second s+1.
		time.Sleep(2500 * time.Millisecond)
		if ok, err := locks[1].TryLock(ctx); !ok || err != nil {
			t.Fatalf("TryLock after the holder's lease ran out: %v %v", ok, err)
		}
	})
}
