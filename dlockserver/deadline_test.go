package dlockserver_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// syncLog collects a server's log lines.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines that contain every one of subs.
func (l *syncLog) lines(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		all := line != ""
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// TestConnectionDeadlines: a connection that never registers (idle, or
// chatty without registering), or that starts a frame and does not finish
// it (byte by byte, or truncated and held open; registered or not), is
// closed once its deadline passes, never before, and each close is logged
// once. Meanwhile a registered client keeps being served, and registered
// connections idle between frames for longer than both deadlines are left
// alone.
func TestConnectionDeadlines(t *testing.T) {
	const (
		registerTimeout = 600 * time.Millisecond
		frameTimeout    = 300 * time.Millisecond
		trickle         = 40 * time.Millisecond // between two bytes of a slow frame
	)
	var log syncLog
	srv := dlocktest.NewServer(t, &dlockserver.Config{
		RegisterTimeout: registerTimeout,
		FrameTimeout:    frameTimeout,
		Logger:          slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	ctx := context.Background()

	// A well-behaved client works throughout.
	good := srv.Dial(t)
	gl, err := good.OpenLock(ctx, "served", dlock.LockOptions{Type: dlock.Atomic})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	served := make(chan error, 1)
	go func() {
		n := 0
		for i := 0; i < 10000; i++ { // bounded: the test ends long before
			select {
			case <-stop:
				if n == 0 {
					served <- errNoOps
					return
				}
				served <- nil
				return
			default:
			}
			if ok, err := gl.TryLock(ctx); err != nil || !ok {
				served <- err
				return
			}
			if err := gl.Unlock(ctx); err != nil {
				served <- err
				return
			}
			n++
			time.Sleep(5 * time.Millisecond)
		}
		served <- nil
	}()

	initFrame := func() []byte {
		m := wire.Init{MinVersion: 2}
		return m.Append(nil, wire.TInit, 1, 0)
	}
	lockFrame := func(id int32) []byte {
		m := wire.LockOp{LockID: gl.ID(), Cmd: uint8(dlock.CmdExclusiveTrylock), Arg: dlock.AtomicState{Owner: id, Timeout: 5}.State()}
		return m.Append(nil, 7, id)
	}
	// slowly writes f one byte per trickle, until the server closes.
	slowly := func(r *rawConn, f []byte) {
		for _, b := range f {
			if _, err := r.nc.Write([]byte{b}); err != nil {
				return
			}
			time.Sleep(trickle)
		}
	}

	for _, tc := range []struct {
		name    string
		setup   func(r *rawConn) int32     // optional; returns the client id
		act     func(r *rawConn, id int32) // runs in its own goroutine
		wait    time.Duration              // the deadline that must close it
		message string
	}{
		{"idle", nil, func(*rawConn, int32) {}, registerTimeout, "no client registered in time"},
		{"chatty without registering", nil, func(r *rawConn, _ int32) {
			for i := 0; i < 40; i++ { // whole frames, none of them registers
				if _, err := r.nc.Write(lockFrame(0)); err != nil {
					return
				}
				time.Sleep(trickle)
			}
		}, registerTimeout, "no client registered in time"},
		{"Init byte by byte", nil, func(r *rawConn, _ int32) { slowly(r, initFrame()) }, frameTimeout, "frame was not completed in time"},
		{"truncated Init held open", nil, func(r *rawConn, _ int32) {
			f := initFrame()
			r.nc.Write(f[:len(f)-1])
		}, frameTimeout, "frame was not completed in time"},
		{"registered, frame byte by byte", (*rawConn).register, func(r *rawConn, id int32) { slowly(r, lockFrame(id)) }, frameTimeout, "frame was not completed in time"},
		{"registered, truncated frame held open", (*rawConn).register, func(r *rawConn, id int32) {
			f := lockFrame(id)
			r.nc.Write(f[:len(f)-5])
		}, frameTimeout, "frame was not completed in time"},
		{"registered, header only", (*rawConn).register, func(r *rawConn, id int32) {
			r.nc.Write(lockFrame(id)[:wire.HeaderLen])
		}, frameTimeout, "frame was not completed in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now() // before the server can have accepted
			r := dialRaw(t, srv.Addr)
			remote := "remote=" + r.nc.LocalAddr().String()
			var id int32
			if tc.setup != nil {
				id = tc.setup(r)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc.act(r, id)
			}()
			defer wg.Wait()
			r.closed() // fails the test if not closed within 10 s
			if took := time.Since(start); took < tc.wait {
				t.Errorf("closed after %v, before its deadline %v", took, tc.wait)
			}
			// The close is logged once, with its reason.
			for end := time.Now().Add(5 * time.Second); len(log.lines(remote, "closing connection")) == 0 && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
			}
			lines := log.lines(remote, "closing connection")
			if len(lines) != 1 || !strings.Contains(lines[0], tc.message) {
				t.Errorf("log lines for %s: %q, want one saying %q", remote, lines, tc.message)
			}
		})
	}

	t.Run("registered and idle", func(t *testing.T) {
		t.Parallel()
		r := dialRaw(t, srv.Addr)
		id := r.register()
		time.Sleep(registerTimeout + frameTimeout + 200*time.Millisecond)
		r.write(lockFrame(id))
		h, _, err := r.read()
		if err != nil || h.ID() != 7 {
			t.Fatalf("a registered client idle past both deadlines: %v (reply %d)", err, h.ID())
		}
		// A frame in two pieces, well within the frame deadline, is fine.
		f := lockFrame(id)
		r.write(f[:10])
		time.Sleep(frameTimeout / 3)
		r.write(f[10:])
		if h, _, err := r.read(); err != nil || h.ID() != 7 {
			t.Fatalf("a frame in two pieces: %v", err)
		}
		if lines := log.lines("remote="+r.nc.LocalAddr().String(), "closing connection"); len(lines) != 0 {
			t.Errorf("logged: %q", lines)
		}
	})

	t.Cleanup(func() {
		close(stop)
		if err := <-served; err != nil {
			t.Errorf("the registered client was not served: %v", err)
		}
	})
}

var errNoOps = errors.New("no operation completed")

// TestConnectionDeadlinesTLS: the deadlines hold on TLS connections too,
// counted from the end of the handshake.
func TestConnectionDeadlinesTLS(t *testing.T) {
	const registerTimeout, frameTimeout = 500 * time.Millisecond, 300 * time.Millisecond
	var log syncLog
	srv := dlocktest.NewTLSServer(t, &dlockserver.Config{
		RegisterTimeout: registerTimeout,
		FrameTimeout:    frameTimeout,
		Logger:          slog.New(slog.NewTextHandler(&log, nil)),
	})
	for _, tc := range []struct {
		name    string
		act     func(r *rawConn)
		wait    time.Duration
		message string
	}{
		{"idle after the handshake", func(*rawConn) {}, registerTimeout, "no client registered in time"},
		{"registered, truncated frame", func(r *rawConn) {
			f := wire.AppendFrame(nil, wire.THeartbeat, 3, r.register(), nil)
			r.write(f[:wire.HeaderLen-1])
		}, frameTimeout, "frame was not completed in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not parallel: dialRawTLS writes the same certificate files
			// each time.
			start := time.Now() // the deadlines start after the handshake
			r := dialRawTLS(t, srv)
			tc.act(r)
			r.closed()
			if took := time.Since(start); took < tc.wait {
				t.Errorf("closed after %v, before its deadline %v", took, tc.wait)
			}
			for end := time.Now().Add(5 * time.Second); len(log.lines("closing connection", tc.message)) == 0 && time.Now().Before(end); {
				time.Sleep(5 * time.Millisecond)
			}
			if len(log.lines("closing connection", tc.message)) != 1 {
				t.Errorf("log: %q, want one line saying %q", log.lines("closing connection"), tc.message)
			}
		})
	}
}
