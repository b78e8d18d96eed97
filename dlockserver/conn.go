package dlockserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// conn is one client connection. On Linux a plain TCP or Unix-socket
// connection is served by an event loop (loop_linux.go), which reads,
// handles and writes for many connections; otherwise (TLS, other systems,
// Config.GoroutineConns) by two goroutines of its own, described here: a
// reader goroutine that decodes and executes requests, and a writer
// goroutine that sends replies pushed by other connections (grants). The
// reader writes its own replies itself once its input is drained, so
// pipelined requests share one write. Either way handlers queue output the
// same way: appended to out under outMu (reply, sendLock, push).
//
// Writes have one owner at a time: whoever sets flushing (under outMu) is
// the only goroutine that writes to the socket until it clears it; anyone
// else appends to out and leaves the bytes to the owner. The owner is the
// reader for its own replies, the writer goroutine for pushed ones, or — on
// a plain socket — a goroutine pushing a grant, which makes one
// non-blocking write and hands whatever the socket did not take to the
// writer goroutine, so it never blocks on another client's connection.
// A design where only the writer goroutine writes costs a goroutine
// hand-off per reply: measured on the 2-core VM, 1-client acquire+release
// p50 went from 1.06× to 2.1× the echo pair, and BenchmarkServerTryLockUnlock
// from 32 µs to 49 µs, so the token stays.
type conn struct {
	s   *Server
	nc  net.Conn // a *tls.Conn over raw with TLS, else raw
	raw net.Conn // closed to abort the connection without blocking
	// rawConn, on a plain TCP or Unix socket, allows non-blocking writes of
	// pushed replies (nil with TLS).
	rawConn syscall.RawConn
	seq     uint64
	br      *bufio.Reader // made once the TLS handshake is done

	// The identity of the client certificate (mtls.Identity), set by the
	// handshake before the first request.
	peerID  [32]byte
	hasPeer bool

	// Guarded by s.mu.
	client  *client
	evicted bool

	// waiting indexes the connection's queued blocking requests by tag.
	// Guarded by wmu (see the lock order in state.go).
	wmu     sync.Mutex
	waiting map[uint64]*waiter

	// Read deadlines, owned by the reader goroutine: registerBy is when
	// the connection must have registered (zero once it has, or with no
	// RegisterTimeout); readDeadline is the deadline set on the socket;
	// frameArmed says it is a frame's deadline (FrameTimeout), not
	// registerBy.
	registerBy   time.Time
	readDeadline time.Time
	frameArmed   bool

	// lp is the event loop serving the connection (loop_linux.go), nil
	// when goroutines serve it; lst is the loop's state of it.
	lp  *loop
	lst loopConn
	// shut says raw was closed (a loop's connection; set under outMu).
	shut atomic.Bool

	outMu      sync.Mutex
	out, spare []byte
	flushing   bool
	deadlineAt time.Time
	kick       chan struct{}
	quit       chan struct{}
	// On a loop's connection (guarded by outMu): stalled says the socket
	// did not take all output and the loop waits until it can write;
	// fdClosed that the loop has closed the socket.
	stalled, fdClosed bool

	// Reused message structs, owned by the reader goroutine.
	op   wire.LockOp
	res  wire.LockResult
	bop  wire.BatchLockOp
	bres wire.BatchLockResult
	obj  wire.Object
	oop  wire.ObjOp
	orep wire.ObjReply
	id   wire.ID
	ids  wire.IDs
	get  wire.GetLock
	olo  wire.OpenLockOp
	init wire.Init
	// ob collects what the requests of this connection send to others
	// (state.go), reused from one request to the next.
	ob outbox
	// decoded is the type of the request whose body the shard gate decoded
	// into its reused struct above already, 0 for none (shard.go).
	decoded wire.Type
	// at is the clock reading of the frames read together (atOK when
	// taken): see instant.
	at   instant
	atOK bool
	// gated is the slot map the request being handled was checked against,
	// nil between requests and outside a sharded cluster (shard.go).
	gated atomic.Pointer[shardState]
	// rare holds the large message structs of requests a client sends
	// seldom, made on first use: 1 000 idle connections do not carry them.
	rare *rareMsgs
}

// rareMsgs are reused message structs of seldom requests.
type rareMsgs struct {
	bget  wire.BatchGetLock
	upd   wire.UpdateLocks
	stats wire.StatsReply
}

// rareMsg returns the connection's rare message structs. Called by the
// reader goroutine.
func (c *conn) rareMsg() *rareMsgs {
	if c.rare == nil {
		c.rare = new(rareMsgs)
	}
	return c.rare
}

// A connection's read buffer starts at readBufSize, which holds 93 lock
// requests of 44 bytes, and grows to pipelineBufSize once the connection
// has filled half of it: a client that pipelines gets fewer reads, a
// thousand mostly idle connections do not hold 16 KB each.
const (
	readBufSize     = 4 << 10
	pipelineBufSize = 16 << 10
)

func newConn(s *Server, nc net.Conn, seq uint64) *conn {
	return &conn{
		s:   s,
		nc:  nc,
		raw: nc,
		seq: seq,
		// The output buffers grow to what the connection needs (a 40-byte
		// reply each, more when pipelined) and are then reused.
		out:   make([]byte, 0, 256),
		spare: make([]byte, 0, 256),
		kick:  make(chan struct{}, 1),
		quit:  make(chan struct{}),
	}
}

// tag identifies a request of this connection among all waiters.
func (c *conn) tag(reqID uint32) uint64 { return c.seq<<32 | uint64(reqID) }

// waiter returns the queued request with tag, or nil.
func (c *conn) waiter(tag uint64) *waiter {
	c.wmu.Lock()
	w := c.waiting[tag]
	c.wmu.Unlock()
	return w
}

func (c *conn) serve() {
	defer c.s.wg.Done()
	defer func() {
		c.flush()
		c.nc.Close()
		close(c.quit)
		c.s.connClosed(c)
	}()
	if !c.handshake() {
		return
	}
	c.br = bufio.NewReaderSize(c.nc, readBufSize)
	if d := c.s.cfg.RegisterTimeout; d > 0 {
		c.registerBy = c.s.clk.after(d)
	}
	var h wire.Header
	buf := make([]byte, 0, 1024)
	for first := true; ; first = false {
		if c.br.Size() < pipelineBufSize && c.br.Buffered() > readBufSize/2 {
			c.growReader()
		}
		var body []byte
		err := c.awaitFrame()
		if err == nil {
			body, err = wire.ReadFrame(c.br, &h, buf)
			buf = body[:0]
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				c.timedOut()
			} else if first && errors.Is(err, wire.ErrBadMagic) && h[0] == 0x16 && h[1] == 0x03 {
				c.s.mu.Lock()
				c.s.stats.Inc(dlock.StatBadRequest)
				c.s.mu.Unlock()
				c.s.cfg.Logger.Warn("closing connection: a TLS client on a plaintext server", "remote", c.nc.RemoteAddr())
			} else if errors.Is(err, wire.ErrBadMagic) || errors.Is(err, wire.ErrTooLarge) {
				c.s.mu.Lock()
				c.s.stats.Inc(dlock.StatBadRequest)
				c.s.mu.Unlock()
				c.s.cfg.Logger.Warn("closing connection: bad frame", "remote", c.nc.RemoteAddr(), "err", err)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.s.cfg.Logger.Debug("connection read failed", "remote", c.nc.RemoteAddr(), "err", err)
			}
			return
		}
		if !c.handle(&h, body) {
			return
		}
		c.registeredBy(h.Type())
		if c.br.Buffered() == 0 {
			c.flush()
		}
		if !c.frameBuffered() {
			c.atOK = false // the next frame needs a new read: a new reading
		}
	}
}

// registeredBy ends the registration deadline once a request of type t
// registered the connection's client.
func (c *conn) registeredBy(t wire.Type) {
	if c.registerBy.IsZero() || (t != wire.TInit && t != wire.TReinit) {
		return
	}
	c.s.mu.Lock()
	if c.client != nil {
		c.registerBy = time.Time{}
	}
	c.s.mu.Unlock()
}

// growReader replaces the read buffer by a pipelineBufSize one, carrying
// the bytes buffered so far over.
func (c *conn) growReader() {
	rest, _ := c.br.Peek(c.br.Buffered())
	c.br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(rest)), c.nc), pipelineBufSize)
}

// awaitFrame waits until the next frame has started, within the
// registration deadline only: a registered client may stay idle between
// frames as long as it likes. When the frame is not whole in the buffer
// yet, it arms the frame deadline for the rest. The socket's deadline is
// changed only when it must be, so a frame that arrives whole (the usual
// case) costs no deadline update.
func (c *conn) awaitFrame() error {
	if c.br.Buffered() == 0 {
		c.setReadDeadline(c.registerBy, false)
		if _, err := c.br.Peek(1); err != nil {
			return err
		}
	}
	if d := c.s.cfg.FrameTimeout; d > 0 && !c.frameBuffered() {
		if at := c.s.clk.after(d); c.registerBy.IsZero() || at.Before(c.registerBy) {
			c.setReadDeadline(at, true)
		} else {
			c.setReadDeadline(c.registerBy, false)
		}
	}
	return nil
}

// frameBuffered reports whether the buffer holds a whole frame, or at least
// a header that ReadFrame refuses without reading on.
func (c *conn) frameBuffered() bool {
	n := c.br.Buffered()
	if n < wire.HeaderLen {
		return false
	}
	p, _ := c.br.Peek(wire.HeaderLen)
	var h wire.Header
	copy(h[:], p)
	return h.Check() != nil || n >= wire.HeaderLen+int(h.Len())
}

func (c *conn) setReadDeadline(t time.Time, frame bool) {
	c.frameArmed = frame
	if !t.Equal(c.readDeadline) {
		c.readDeadline = t
		c.nc.SetReadDeadline(t)
	}
}

// timedOut logs why a read deadline closes the connection.
func (c *conn) timedOut() {
	if c.frameArmed {
		c.s.cfg.Logger.Warn("closing connection: a frame was not completed in time", "remote", c.raw.RemoteAddr(), "frame_timeout", c.s.cfg.FrameTimeout)
	} else {
		c.s.cfg.Logger.Warn("closing connection: no client registered in time", "remote", c.raw.RemoteAddr(), "register_timeout", c.s.cfg.RegisterTimeout)
	}
}

// writeLoop sends replies queued by other goroutines.
func (c *conn) writeLoop() {
	defer c.s.wg.Done()
	for {
		select {
		case <-c.kick:
			c.flush()
		case <-c.quit:
			return
		}
	}
}

// flush writes queued replies. Concurrent callers combine: whoever finds a
// flush in progress leaves its bytes for the flusher.
func (c *conn) flush() {
	c.outMu.Lock()
	if c.flushing {
		c.outMu.Unlock()
		return
	}
	c.flushing = true
	for len(c.out) > 0 {
		buf := c.out
		c.out = c.spare[:0]
		now := c.s.clk.now()
		// The socket's deadline moves only when half of WriteTimeout is
		// used, so that most writes cost no deadline update; a write gets
		// between half of WriteTimeout and all of it.
		if c.deadlineAt.Sub(now) < c.s.cfg.WriteTimeout/2 {
			c.deadlineAt = now.Add(c.s.cfg.WriteTimeout)
			c.nc.SetWriteDeadline(c.deadlineAt)
		}
		c.outMu.Unlock()
		_, err := c.nc.Write(buf)
		c.outMu.Lock()
		c.spare = buf[:0]
		if err != nil {
			c.out = c.out[:0]
			c.flushing = false
			c.outMu.Unlock()
			c.s.mu.Lock()
			c.s.stats.Inc(dlock.StatSendFail)
			c.s.mu.Unlock()
			c.raw.Close()
			return
		}
	}
	c.flushing = false
	c.outMu.Unlock()
}

// push wakes the writer goroutine to send what was queued (on a loop's
// connection, writes it or leaves it to the loop).
func (c *conn) push() {
	if c.lp != nil {
		c.loopPush()
		return
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// sendLock sends a lock-operation reply from another goroutine (a grant,
// a withdrawn request): on a plain socket it tries one non-blocking write at
// once, so a hand-over does not wait for the writer goroutine to wake; what
// the socket does not take now (and everything on TLS) goes through the
// writer, so the sender never blocks on another client's connection.
func (c *conn) sendLock(reqID uint32, r *lockcore.Reply) {
	res := wire.LockResult{State: r.State, Token: r.Token}
	c.outMu.Lock()
	c.out = res.Append(c.out, reqID, int32(r.Status))
	if c.lp != nil {
		c.outMu.Unlock()
		c.loopPush()
		return
	}
	if c.rawConn != nil && !c.flushing {
		c.writeNow()
	}
	pending := len(c.out) > 0
	c.outMu.Unlock()
	if pending {
		c.push()
	}
}

// writeNow makes one non-blocking write of the queued replies and keeps
// what the socket did not take. Called with outMu held and no flush in
// progress.
func (c *conn) writeNow() {
	var n int
	var werr error
	err := c.rawConn.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), c.out)
		return true // one attempt: never wait for the socket here
	})
	if err != nil || werr != nil || n <= 0 {
		return // EAGAIN or a failure: the writer goroutine takes over
	}
	c.out = c.out[:copy(c.out, c.out[n:])]
}

// reply queues a header-only reply to a request of type t.
func (c *conn) reply(t wire.Type, id uint32, st dlock.Status) {
	c.outMu.Lock()
	c.out = wire.AppendFrame(c.out, t.Reply(), id, int32(st), nil)
	c.outMu.Unlock()
}

// instant is the server's clock reading for the request being handled:
// one reading for all the frames that one read of the socket brought
// (the caller clears atOK before each read). The frames were all sent
// before the reading, so a lease counted from it is no longer than the
// client's own count from its send; and a batch is handled within
// microseconds, so the reading is as fresh as one per frame for expiry
// and wait deadlines. A pipelined connection thus reads the clock once
// per read instead of once per frame (7% of the server's CPU time with
// 256 requests in flight).
func (c *conn) instant() instant {
	if !c.atOK {
		c.at, c.atOK = c.s.instant(), true
	}
	return c.at
}

// handle executes one request; false closes the connection.
func (c *conn) handle(h *wire.Header, body []byte) bool {
	t := h.Type()
	if t.IsReply() {
		return c.bad(h, "reply type from a client")
	}
	// Not deferred: dispatch has too many returns for an open-coded
	// defer, and the heap-style one cost ~4% of the server's CPU time
	// with requests pipelined. A panic ends the process anyway (nothing
	// recovers one), so nothing waits on a gate left entered.
	sm := c.enterShard()
	ok := c.dispatch(sm, h, t, body)
	c.leaveShard(sm) // (shard.go)
	return ok
}

// dispatch is handle past the shard gate's entry.
func (c *conn) dispatch(sm *shardState, h *wire.Header, t wire.Type, body []byte) bool {
	s := c.s
	if sm != nil && !c.shardGate(sm, h, body) {
		return true
	}
	if s.ha != nil && !c.haGate(h, body) {
		return true
	}
	if h.Version() != wire.Version && !(t == wire.TInit || t == wire.TReinit) {
		c.reply(t, h.ID(), dlock.ErrProtoNegotiationFail)
		return false
	}
	if t == wire.TInit || t == wire.TReinit {
		return c.register(h, body)
	}
	id, ok := s.clientOf(c)
	if !ok {
		c.reply(t, h.ID(), dlock.ErrGeneric) // not registered
		return true
	}
	if h.Client() != id {
		// A frame naming another client: spoofing. Drop the connection.
		s.mu.Lock()
		s.stats.Inc(dlock.StatClientIDVerifyFail)
		s.mu.Unlock()
		s.cfg.Logger.Warn("closing connection: frame names another client", "client", id, "claimed", h.Client())
		return false
	}

	switch t {
	case wire.TLockOp:
		return c.lockOp(h, body)
	case wire.TBatchLockOp:
		return c.batchLockOp(h, body)
	case wire.TCancel:
		return c.cancel(h, body)
	case wire.TAbandon:
		return c.abandon(h, body)
	case wire.TResolve:
		return c.resolve(h, body)
	case wire.TOpenLockOp:
		return c.openLockOp(h, body)
	case wire.TObjFAA, wire.TObjCAS, wire.TObjLoad:
		return c.objOp(h, body)
	case wire.TGetLock, wire.TReleaseLock, wire.TBatchGetLock, wire.TBatchRelease:
		return c.lockLifecycle(h, body)
	case wire.TObjCreate, wire.TObjGet, wire.TObjRelease, wire.TObjDestroy:
		return c.objLifecycle(h, body)
	case wire.THeartbeat, wire.TDeinit, wire.TReinitDone, wire.TStats, wire.TResetStats, wire.TUpdateLocks, wire.TLockQuery:
		return c.control(h, body)
	case wire.TAdminLocks, wire.TAdminTop, wire.TAdminRelease:
		return c.admin(h, body)
	}
	c.outMu.Lock()
	c.out = wire.AppendFrame(c.out, wire.TUnknownReply, h.ID(), int32(dlock.ErrInval), nil)
	c.outMu.Unlock()
	return true
}

// bad logs a protocol violation and closes the connection.
func (c *conn) bad(h *wire.Header, why string) bool {
	c.s.mu.Lock()
	c.s.stats.Inc(dlock.StatBadRequest)
	c.s.mu.Unlock()
	c.s.cfg.Logger.Warn("closing connection: "+why, "remote", c.nc.RemoteAddr(), "type", h.Type())
	return false
}

// malformed answers a request whose body does not decode. The frame
// boundary is intact, so the connection stays usable.
func (c *conn) malformed(h *wire.Header) bool {
	c.s.mu.Lock()
	c.s.stats.Inc(dlock.StatBadRequest)
	c.s.mu.Unlock()
	c.reply(h.Type(), h.ID(), dlock.ErrInval)
	return true
}
