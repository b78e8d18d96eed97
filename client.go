package dlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// Config configures a Client. The zero value works.
type Config struct {
	// DialTimeout bounds connecting and registering when the ctx given to
	// Dial has no earlier deadline. Default 10 s.
	DialTimeout time.Duration
	// TPMode is the transport mode announced to the server (C ABI
	// compatibility: SEPERATE_CONN 0, UNI_CONN 1); it must equal the
	// server's.
	TPMode uint8
	// Logger receives connection-level events. Nil means silent.
	Logger *slog.Logger

	// AutoRecover makes the client re-establish itself when its connection
	// is lost: it redials (Addrs in turn, with jittered backoff), re-registers
	// under its id (Reinit), uploads its locks if the server is a new primary
	// in recovery (UpdateAllLocks), finishes (ReinitDone), re-validates every
	// hold and reports the outcome to OnRecover. Calls made meanwhile fail
	// with a transport error or ErrNotReady.
	AutoRecover bool
	// Addrs are the servers automatic recovery tries, in order; default the
	// address given to Dial.
	Addrs []string
	// OnRecover, if set, is called after each automatic recovery (from the
	// recovery goroutine; it must not block for long).
	OnRecover func(RecoveryReport)
}

// cancelGrace bounds how long a call whose ctx ended waits for the server to
// answer its cancellation, so that a grant that raced the cancel is released
// before the call returns.
const cancelGrace = 5 * time.Second

// ErrClosed is returned (wrapped) by calls on a Client whose connection was
// closed by Close or Shutdown, or lost.
var ErrClosed = errors.New("dlock: client closed")

// Client is a registered dlock client: one multiplexed connection to a
// server and the client-side cache of the locks it opened.
//
// A Client and its handles are safe for concurrent use. Lock ownership
// belongs to the Client (as in DLock), not to a goroutine: any goroutine may
// unlock a lock another goroutine of the same Client locked, and a second
// lock of a lock the Client already holds is a reentrant hold.
type Client struct {
	cfg  Config
	addr string
	id   int32
	nc   net.Conn

	wmu      sync.Mutex
	wbuf     []byte
	wspare   []byte
	flushing bool

	mu         sync.Mutex // everything below up to smu
	pending    map[uint32]*call
	nextID     uint32
	free       []*call
	err        error
	locks      map[int32]*Lock
	objects    map[*Atomic64]struct{}
	readerDone chan struct{}
	closing    bool
	swapping   bool // Reinit is replacing the connection
	newPrimary bool // the last Reinit found a new primary in recovery

	recoveryRunning bool
	ctx             context.Context // ends at Close: stops automatic recovery
	cancel          context.CancelFunc
	recoverWG       sync.WaitGroup
	reinitMu        sync.Mutex // serialises Reinit

	smu   sync.Mutex // lock cache entries and stats
	stats Stats
}

// call is one request in flight.
type call struct {
	id     uint32
	done   chan struct{}
	status Status
	typ    wire.Type
	body   []byte
	err    error
	// orphan, when set, is a grant nobody waits for any more: the reader
	// releases it as soon as it arrives.
	orphan *orphanRelease
}

type orphanRelease struct {
	lockID int32
	typ    LockType
	mode   Mode
	self   int32
}

// Dial connects to the dlock server at addr ("host:port", or a Unix socket
// path starting with "/" or "unix:") and registers a new client
// (client_init). The client id is [Client.ID].
func Dial(ctx context.Context, addr string, cfg *Config) (*Client, error) {
	c := &Client{addr: addr}
	if cfg != nil {
		c.cfg = *cfg
	}
	if len(c.cfg.Addrs) == 0 {
		c.cfg.Addrs = []string{addr}
	}
	if c.cfg.DialTimeout <= 0 {
		c.cfg.DialTimeout = 10 * time.Second
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	nc, err := c.dial(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("dlock: dial %s: %w", addr, err)
	}
	id, _, st, err := c.register(ctx, nc, wire.TInit, 0)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("dlock: dial %s: %w", addr, err)
	}
	if st != Success {
		nc.Close()
		return nil, st.Err()
	}
	c.id = id
	c.start(nc)
	return c, nil
}

func (c *Client) dial(ctx context.Context, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	network, address := "tcp", addr
	if strings.HasPrefix(address, "unix:") {
		network, address = "unix", strings.TrimPrefix(address, "unix:")
	} else if strings.HasPrefix(address, "/") {
		network = "unix"
	}
	d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 6 * time.Second, Count: 9}}
	return d.DialContext(ctx, network, address)
}

// register sends TInit/TReinit on a fresh connection and reads the reply
// synchronously.
func (c *Client) register(ctx context.Context, nc net.Conn, t wire.Type, id int32) (int32, uint8, Status, error) {
	deadline := time.Now().Add(c.cfg.DialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	nc.SetDeadline(deadline)
	defer nc.SetDeadline(time.Time{})
	m := wire.Init{MinVersion: MinProtoVersion, TPMode: c.cfg.TPMode}
	if _, err := nc.Write(m.Append(nil, t, 1, id)); err != nil {
		return 0, 0, 0, err
	}
	var h wire.Header
	body, err := wire.ReadFrame(nc, &h, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	if h.Type() != t.Reply() || h.ID() != 1 || h.Version() != wire.Version {
		return 0, 0, ErrBadResponse, nil
	}
	if st := Status(h.Status()); st != Success {
		return 0, 0, passThrough(st), nil
	}
	var rep wire.InitReply
	if rep.Decode(body) != nil || rep.ClientID <= 0 || (id != 0 && rep.ClientID != id) {
		return 0, 0, ErrBadResponse, nil
	}
	return rep.ClientID, rep.ServerState, Success, nil
}

// passThrough maps a reply status the way the seed's clients do (§13.2):
// known codes pass, anything else is a bad response.
func passThrough(st Status) Status {
	switch {
	case st == Success || st == ErrGeneric:
		return st
	case st >= ErrAgain && st <= ErrAsync,
		st >= ErrClientNotInit && st <= ErrServerNoResource,
		st >= ErrObjectAlreadyExisted && st <= ErrObjectCASFailed:
		return st
	}
	return ErrBadResponse
}

func (c *Client) start(nc net.Conn) {
	c.pending = make(map[uint32]*call)
	c.locks = make(map[int32]*Lock)
	c.objects = make(map[*Atomic64]struct{})
	c.wbuf = make([]byte, 0, 4096)
	c.wspare = make([]byte, 0, 4096)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.attach(nc)
}

// attach makes nc the client's connection and starts its reader.
func (c *Client) attach(nc net.Conn) {
	done := make(chan struct{})
	c.wmu.Lock()
	c.nc = nc
	c.wmu.Unlock()
	c.mu.Lock()
	c.err = nil
	c.readerDone = done
	c.mu.Unlock()
	go c.readLoop(nc, done)
}

// detach closes the current connection and waits for its reader to fail
// the calls pending on it.
func (c *Client) detach() {
	c.wmu.Lock()
	nc := c.nc
	c.wmu.Unlock()
	c.mu.Lock()
	done := c.readerDone
	c.mu.Unlock()
	nc.Close()
	<-done
}

// ID returns the client id the server assigned.
func (c *Client) ID() int32 { return c.id }

// readLoop matches replies to pending calls until the connection fails.
func (c *Client) readLoop(nc net.Conn, done chan struct{}) {
	defer close(done)
	br := bufio.NewReaderSize(nc, 16<<10)
	var h wire.Header
	buf := make([]byte, 0, 1024)
	for {
		body, err := wire.ReadFrame(br, &h, buf)
		buf = body[:0]
		if err != nil {
			c.fail(nc, err)
			return
		}
		if h.Version() != wire.Version || !h.Type().IsReply() {
			c.fail(nc, fmt.Errorf("unexpected frame type %#x version %d", h.Type(), h.Version()))
			return
		}
		c.mu.Lock()
		cl := c.pending[h.ID()]
		delete(c.pending, h.ID())
		c.mu.Unlock()
		if cl == nil {
			continue // the reply to a call nobody waits for
		}
		if cl.orphan != nil {
			c.releaseOrphan(cl, &h, body)
			continue
		}
		cl.status = Status(h.Status())
		cl.typ = h.Type()
		cl.body = append(cl.body[:0], body...)
		cl.done <- struct{}{}
	}
}

// releaseOrphan unlocks a grant that arrived for a caller that gave up.
func (c *Client) releaseOrphan(cl *call, h *wire.Header, body []byte) {
	if Status(h.Status()) != Success || h.Type() != wire.TLockOp.Reply() {
		return
	}
	var res wire.LockResult
	if res.Decode(body) != nil {
		return
	}
	o := cl.orphan
	op := wire.LockOp{LockID: o.lockID, Cmd: uint8(CmdExclusiveUnlock)}
	if o.mode == Shared {
		op.Cmd = uint8(CmdSharedUnlock)
	}
	switch o.typ {
	case Atomic:
		op.Arg = AtomicState{Owner: o.self}.State()
	case RW:
		if o.mode == Exclusive {
			op.Arg = RWState{Owner: o.self}.State()
		}
	case Fair:
		op.Arg = res.State
	}
	c.send(func(dst []byte) []byte { return op.Append(dst, 0, c.id) })
}

// fail records that connection nc broke and fails every call pending on it.
func (c *Client) fail(nc net.Conn, err error) {
	nc.Close()
	c.mu.Lock()
	if c.err == nil {
		if errors.Is(err, net.ErrClosed) {
			err = ErrClosed
		}
		c.err = fmt.Errorf("connection lost: %w", err)
	}
	pending := c.pending
	c.pending = make(map[uint32]*call)
	e := c.err
	closing := c.closing
	c.mu.Unlock()
	if !closing && c.cfg.AutoRecover {
		c.startRecovery()
	}
	for _, cl := range pending {
		if cl.orphan != nil {
			continue
		}
		cl.err = e
		cl.done <- struct{}{}
	}
}

// newCall registers a call record with a fresh request id.
func (c *Client) newCall() (*call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	var cl *call
	if n := len(c.free); n > 0 {
		cl = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		cl = &call{done: make(chan struct{}, 1)}
	}
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	cl.id = c.nextID
	cl.err = nil
	cl.orphan = nil
	c.pending[cl.id] = cl
	return cl, nil
}

// putCall returns a finished call record to the free list.
func (c *Client) putCall(cl *call) {
	c.mu.Lock()
	if len(c.free) < 256 {
		c.free = append(c.free, cl)
	}
	c.mu.Unlock()
}

// send appends a frame to the write buffer and writes it unless another
// goroutine is writing already, in which case that one sends it too.
func (c *Client) send(encode func(dst []byte) []byte) {
	c.wmu.Lock()
	c.wbuf = encode(c.wbuf)
	if c.flushing {
		c.wmu.Unlock()
		return
	}
	c.flushing = true
	for len(c.wbuf) > 0 {
		buf := c.wbuf
		c.wbuf = c.wspare[:0]
		nc := c.nc
		c.wmu.Unlock()
		_, err := nc.Write(buf)
		c.wmu.Lock()
		c.wspare = buf[:0]
		if err != nil {
			c.wbuf = c.wbuf[:0]
			c.flushing = false
			c.wmu.Unlock()
			c.fail(nc, err)
			return
		}
	}
	c.flushing = false
	c.wmu.Unlock()
}

// wait waits for cl's reply or ctx. On ctx's end the call is abandoned: its
// reply, if it comes, is dropped (the call record is then not reused).
func (c *Client) wait(ctx context.Context, cl *call) error {
	select {
	case <-cl.done:
		return cl.err
	case <-ctx.Done():
		c.mu.Lock()
		_, stillPending := c.pending[cl.id]
		delete(c.pending, cl.id)
		c.mu.Unlock()
		if stillPending {
			return ctx.Err()
		}
		<-cl.done // the reply raced ctx and is being delivered: use it
		return cl.err
	}
}

// roundTrip sends one request and waits for its reply. The returned call
// must be given back with putCall once its body was read.
func (c *Client) roundTrip(ctx context.Context, encode func(dst []byte, id uint32) []byte) (*call, error) {
	cl, err := c.newCall()
	if err != nil {
		return nil, err
	}
	c.send(func(dst []byte) []byte { return encode(dst, cl.id) })
	if err := c.wait(ctx, cl); err != nil {
		return nil, err
	}
	return cl, nil
}

// control runs a request whose reply is header-only and returns its status.
func (c *Client) control(ctx context.Context, t wire.Type, body []byte) (Status, error) {
	cl, err := c.roundTrip(ctx, func(dst []byte, id uint32) []byte {
		return wire.AppendFrame(dst, t, id, c.id, body)
	})
	if err != nil {
		return 0, err
	}
	st := passThrough(cl.status)
	c.putCall(cl)
	return st, nil
}

// Heartbeat checks that the server answers (client_heartbeat); the timeout
// is ctx's deadline. It has no effect on leases.
func (c *Client) Heartbeat(ctx context.Context) error {
	st, err := c.control(ctx, wire.THeartbeat, nil)
	if err != nil {
		return fmt.Errorf("dlock: heartbeat: %w", err)
	}
	return st.Err()
}

// Shutdown deregisters the client (client_deinit): the server releases every
// lock and object reference it has and wakes whoever waits behind its holds.
// The connection is closed whatever the outcome.
func (c *Client) Shutdown(ctx context.Context) error {
	st, err := c.control(ctx, wire.TDeinit, nil)
	c.Close()
	if err != nil {
		return fmt.Errorf("dlock: shutdown: %w", err)
	}
	return st.Err()
}

// Close drops the connection without deregistering. The server keeps the
// client's locks for its session timeout, so a client that reconnects with
// Reinit keeps them.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	c.err = ErrClosed
	c.mu.Unlock()
	c.cancel()
	c.recoverWG.Wait()
	c.detach()
	return nil
}

// Stats returns a copy of the client's debug counters.
func (c *Client) Stats() Stats {
	c.smu.Lock()
	defer c.smu.Unlock()
	return c.stats
}

// ResetStats zeroes the client's debug counters (clear_client_debug_stats).
func (c *Client) ResetStats() {
	c.smu.Lock()
	c.stats = Stats{}
	c.smu.Unlock()
}

// ServerStats fetches the server's debug counters.
func (c *Client) ServerStats(ctx context.Context) (Stats, error) {
	cl, err := c.roundTrip(ctx, func(dst []byte, id uint32) []byte {
		return wire.AppendFrame(dst, wire.TStats, id, c.id, nil)
	})
	if err != nil {
		return Stats{}, fmt.Errorf("dlock: server stats: %w", err)
	}
	defer c.putCall(cl)
	if st := passThrough(cl.status); st != Success {
		return Stats{}, st.Err()
	}
	var rep wire.StatsReply
	if rep.Decode(cl.body) != nil {
		return Stats{}, ErrBadResponse
	}
	return Stats(rep.Counters), nil
}

// ResetServerStats zeroes the server's debug counters.
func (c *Client) ResetServerStats(ctx context.Context) error {
	st, err := c.control(ctx, wire.TResetStats, nil)
	if err != nil {
		return fmt.Errorf("dlock: reset server stats: %w", err)
	}
	return st.Err()
}

// djb2 is the descriptor hash the seed uses as the preferred id (§5.2).
func djb2(b []byte) int32 {
	h := uint32(5381)
	for _, c := range b {
		h = h*33 + uint32(c)
	}
	return int32(h)
}
