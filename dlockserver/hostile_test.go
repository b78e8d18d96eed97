package dlockserver_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// rawConn is a hand-driven protocol peer.
type rawConn struct {
	t  testing.TB
	nc net.Conn
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// read returns the next reply frame, or the error that ended the stream.
func (r *rawConn) read() (wire.Header, []byte, error) {
	var h wire.Header
	body, err := wire.ReadFrame(r.nc, &h, nil)
	return h, body, err
}

// closed asserts that the server closes the connection.
func (r *rawConn) closed() {
	r.t.Helper()
	for {
		_, _, err := r.read()
		if err == nil {
			continue // replies sent before the close
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return
		}
		r.t.Fatalf("want the server to close the connection, got %v", err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// register sends TInit and returns the client id.
func (r *rawConn) register() int32 {
	r.t.Helper()
	m := wire.Init{MinVersion: 2}
	r.write(m.Append(nil, wire.TInit, 1, 0))
	h, body, err := r.read()
	if err != nil || h.Status() != 0 {
		r.t.Fatalf("init: %v status %d", err, h.Status())
	}
	var rep wire.InitReply
	if err := rep.Decode(body); err != nil {
		r.t.Fatal(err)
	}
	return rep.ClientID
}

// TestHostileInput: every kind of bad input closes or errors the offending
// connection only; a well-behaved client keeps being served throughout, and
// the server never panics.
func TestHostileInput(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := context.Background()
	good := srv.Dial(t)
	gl, err := good.OpenLock(ctx, "survivor", dlock.LockOptions{Type: dlock.Atomic})
	if err != nil {
		t.Fatal(err)
	}
	stillServed := func() {
		t.Helper()
		if ok, err := gl.TryLock(ctx); err != nil || !ok {
			t.Fatalf("good client: TryLock = %v, %v", ok, err)
		}
		if err := gl.Unlock(ctx); err != nil {
			t.Fatalf("good client: Unlock: %v", err)
		}
	}

	valid := func(id int32) []byte {
		m := wire.LockOp{LockID: gl.ID(), Cmd: uint8(dlock.CmdExclusiveTrylock), Arg: dlock.AtomicState{Owner: id, Timeout: 5}.State()}
		return m.Append(nil, 7, id)
	}

	t.Run("garbage", func(t *testing.T) {
		r := dialRaw(t, srv.Addr)
		r.write(bytes.Repeat([]byte("GET / HTTP/1.1\r\n"), 10))
		r.closed()
	})
	t.Run("oversized length", func(t *testing.T) {
		r := dialRaw(t, srv.Addr)
		f := valid(0)
		binary.LittleEndian.PutUint32(f[8:], 1<<30)
		r.write(f[:wire.HeaderLen])
		r.closed()
	})
	t.Run("truncated frame then close", func(t *testing.T) {
		r := dialRaw(t, srv.Addr)
		id := r.register()
		f := valid(id)
		r.write(f[:len(f)-5])
		r.nc.(*net.TCPConn).CloseWrite()
		r.closed()
	})
	t.Run("unknown type", func(t *testing.T) {
		r := dialRaw(t, srv.Addr)
		id := r.register()
		r.write(wire.AppendFrame(nil, 0x6E, 9, id, []byte{1, 2, 3}))
		h, _, err := r.read()
		if err != nil || h.Type() != wire.TUnknownReply || dlock.Status(h.Status()) != dlock.ErrInval || h.ID() != 9 {
			t.Fatalf("unknown type: reply %v type %#x status %d", err, h.Type(), h.Status())
		}
		// The connection is still usable.
		r.write(valid(id))
		if h, _, err := r.read(); err != nil || h.ID() != 7 {
			t.Fatalf("after an unknown type: %v", err)
		}
	})
	t.Run("malformed body", func(t *testing.T) {
		r := dialRaw(t, srv.Addr)
		id := r.register()
		r.write(wire.AppendFrame(nil, wire.TLockOp, 3, id, []byte{1, 2}))
		h, _, err := r.read()
		if err != nil || dlock.Status(h.Status()) != dlock.ErrInval {
			t.Fatalf("malformed lock op: %v status %d", err, h.Status())
		}
		// A batch of 32 is malformed too.
		body := append([]byte{32, 0, 0, 0}, make([]byte, 32*24)...)
		r.write(wire.AppendFrame(nil, wire.TBatchLockOp, 4, id, body))
		if h, _, err := r.read(); err != nil || dlock.Status(h.Status()) != dlock.ErrInval {
			t.Fatalf("batch of 32: %v status %d", err, h.Status())
		}
	})
	t.Run("another client's id", func(t *testing.T) {
		r := dialRaw(t, srv.Addr)
		r.register()
		r.write(valid(good.ID()))
		r.closed()
		// The impersonated client is unharmed.
		stillServed()
	})
	t.Run("requests before registering", func(t *testing.T) {
		r := dialRaw(t, srv.Addr)
		r.write(valid(0))
		if h, _, err := r.read(); err != nil || dlock.Status(h.Status()) != dlock.ErrGeneric {
			t.Fatalf("unregistered lock op: %v status %d", err, h.Status())
		}
	})
	t.Run("unknown lock id", func(t *testing.T) {
		r := dialRaw(t, srv.Addr)
		id := r.register()
		m := wire.LockOp{LockID: 424242, Cmd: uint8(dlock.CmdExclusiveTrylock), Arg: dlock.AtomicState{Owner: id, Timeout: 5}.State()}
		r.write(m.Append(nil, 5, id))
		if h, _, err := r.read(); err != nil || dlock.Status(h.Status()) != dlock.ErrInval {
			t.Fatalf("unknown lock: %v status %d", err, h.Status())
		}
	})
	t.Run("version mismatch", func(t *testing.T) {
		r := dialRaw(t, srv.Addr)
		m := wire.Init{MinVersion: 3}
		r.write(m.Append(nil, wire.TInit, 1, 0))
		if h, _, err := r.read(); err != nil || dlock.Status(h.Status()) != dlock.ErrProtoNegotiationFail {
			t.Fatalf("client min version 3: %v status %d", err, h.Status())
		}
		r.closed()
		r = dialRaw(t, srv.Addr)
		f := valid(0)
		f[2] = 1 // header version 1
		r.write(f)
		if h, _, err := r.read(); err != nil || dlock.Status(h.Status()) != dlock.ErrProtoNegotiationFail {
			t.Fatalf("header version 1: %v status %d", err, h.Status())
		}
		r.closed()
	})
	t.Run("vanishing peer mid-frame", func(t *testing.T) {
		for i := 0; i < 50; i++ {
			r := dialRaw(t, srv.Addr)
			f := valid(r.register())
			r.write(f[:i%len(f)])
			r.nc.Close()
		}
	})
	stillServed()
	if got := srv.Stats()[dlock.StatBadRequest]; got == 0 {
		t.Error("BAD_REQUEST counter not incremented")
	}
	if got := srv.Stats()[dlock.StatClientIDVerifyFail]; got != 1 {
		t.Errorf("CLIENT_ID_VERIFY_FAIL = %d, want 1", got)
	}
}

// TestConnLimit: past MaxConns the oldest connection that never registered
// is closed to make room; registered clients are kept.
func TestConnLimit(t *testing.T) {
	srv := dlocktest.NewServer(t, &dlockserver.Config{MaxConns: 4})
	ctx := context.Background()
	c1 := srv.Dial(t)
	silent := dialRaw(t, srv.Addr)
	dialRaw(t, srv.Addr)
	dialRaw(t, srv.Addr)
	late := srv.Dial(t) // the fifth connection: the oldest silent one goes
	silent.closed()
	if err := c1.Heartbeat(ctx); err != nil {
		t.Errorf("registered client after the limit: %v", err)
	}
	if err := late.Heartbeat(ctx); err != nil {
		t.Errorf("new client: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []dlockserver.Config{
		{RecoveryClients: 1001},
		{MaxClients: -1},
		{TPMode: 2},
	} {
		if _, err := dlockserver.New(cfg); !errors.Is(err, dlockserver.ErrInvalidConfig) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	for addr, want := range map[string]error{
		"127.0.0.1:80":    dlockserver.ErrInvalidPort,
		"127.0.0.1:70000": dlockserver.ErrInvalidPort,
		"127.0.0.1:1024":  nil,
		"":                nil,
	} {
		_, err := dlockserver.Config{Addr: addr}.ListenAddr()
		if !errors.Is(err, want) {
			t.Errorf("ListenAddr(%q) = %v, want %v", addr, err, want)
		}
	}
	if got, _ := (dlockserver.Config{}).ListenAddr(); got != "127.0.0.1:21616" {
		t.Errorf("default address %q, want 127.0.0.1:21616", got)
	}
}
