package dlock

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	// SessionTimeout bounds automatic recovery: a client that has reached
	// no serving server for that long after losing its connection reports
	// every hold lost (OnRecover with ErrSessionExpired) and stops, since
	// the server, or a new primary, stops waiting for it after its own
	// session timeout. Set it to at most the servers' -session-timeout.
	// Zero means 15 s, the servers' default; negative retries forever.
	SessionTimeout time.Duration

	// TLS, if set, makes the connection TLS 1.3 with mutual authentication
	// (ssl_cfg); see TLSOptions. Its files are read at every dial.
	TLS *TLSOptions

	// DialContext, if set, makes every connection the client opens — the
	// first one in Dial, and each one of Reinit and automatic recovery —
	// instead of the default dialer (TCP with keep-alives, or a Unix socket
	// for an address starting with "/" or "unix:"). network is "tcp" or
	// "unix" and address the server's address without a "unix:" prefix. It
	// has the shape of net/http's Transport.DialContext: tests use it to
	// put a proxy or a fault between client and server, or to reach an
	// in-memory server (dlocktest.NewPipeServer). With TLS set, the
	// handshake runs over the connection it returns.
	DialContext func(ctx context.Context, network, address string) (net.Conn, error)

	// tpMode is the transport mode announced to the server (C ABI
	// compatibility: SEPERATE_CONN 0, UNI_CONN 1); it must equal the
	// server's. Over TCP it is only compared: the C layer sets it
	// (cabi.go), Go users have no use for it.
	tpMode uint8
}

// cancelGrace bounds how long a call whose ctx ended waits for the server to
// answer its cancellation, so that a grant that raced the cancel is released
// before the call returns.
const cancelGrace = 5 * time.Second

// ErrClosed is returned (wrapped) by calls on a Client closed by Close or
// Shutdown.
var ErrClosed = errors.New("client closed")

// ErrConnLost is returned (wrapped, with the cause) by calls made while the
// client's connection is lost, and by calls whose connection was lost before
// their reply came. The outcome of such a lock request is not known when the
// call returns: the client resolves it when it is connected again (Reinit,
// or automatic recovery) — a hold the server granted but the caller never
// learned of is released, and a hold the server dropped is reset in the
// client — and counts it in [Client.Outcomes]. An atomic64 operation whose
// reply was lost may or may not have been applied.
var ErrConnLost = errors.New("connection lost")

// Outcomes counts requests whose outcome the client could not see (their
// connection was lost before the reply came) and how they were resolved.
type Outcomes struct {
	// Unknown counts locks on which a request's outcome became unknown.
	Unknown uint64
	// Resolved counts those resolved once the client was connected again.
	Resolved uint64
	// Released counts holds the server had granted without the client
	// learning of it, released when resolving.
	Released uint64
	// Lost counts holds the client believed it had but the server no longer
	// did (an unlock whose reply was lost, a lease that ran out), reset when
	// resolving.
	Lost uint64
}

// Client is a registered dlock client: one multiplexed connection to a
// server and the client-side cache of the locks it opened.
//
// A Client and its handles are safe for concurrent use. Lock ownership
// belongs to the Client (as in DLock), not to a goroutine: any goroutine may
// unlock a lock another goroutine of the same Client locked, and a second
// lock of a lock the Client already holds is a reentrant hold.
type Client struct {
	cfg Config
	id  int32
	m   *mux // the connection (mux.go)
	// router is the Router this Client serves one shard for (nil for a
	// Client of its own): a lock whose slot moved is handed over through
	// it (router_move.go). Set before the Client is used.
	router *Router

	reinitMu sync.Mutex // serialises Reinit

	// mu guards everything below, and each Lock's cache entry and recovery
	// flags. The lock order of all the client's mutexes is in mux.go.
	mu       sync.Mutex
	locks    map[int32]*Lock
	objects  map[*Atomic64]struct{}
	stats    Stats
	closing  bool
	swapping bool               // Reinit is replacing the connection
	unknown  map[int32]struct{} // locks with a request of unknown outcome
	outcomes Outcomes
	// resolvedLost are holds found lost when resolving unknown outcomes,
	// for the next Revalidate.
	resolvedLost []*Lock
	epoch        uint64    // highest primary epoch registered with (redirect.go)
	reinitAt     time.Time // when the last Reinit succeeded
	// lostObjects are the objects the last Reinit to a new primary dropped.
	lostObjects     []*Atomic64
	newPrimary      bool // the last Reinit found a new primary in recovery
	recoveryRunning bool

	ctx       context.Context // ends at Close: stops automatic recovery
	cancel    context.CancelFunc
	recoverWG sync.WaitGroup
}

// Dial connects to the dlock server at addr ("host:port", or a Unix socket
// path starting with "/" or "unix:") and registers a new client
// (client_init). The client id is [Client.ID].
func Dial(ctx context.Context, addr string, cfg *Config) (*Client, error) {
	c := &Client{}
	if cfg != nil {
		c.cfg = *cfg
	}
	if len(c.cfg.Addrs) == 0 {
		c.cfg.Addrs = []string{addr}
	}
	if c.cfg.SessionTimeout == 0 {
		c.cfg.SessionTimeout = 15 * time.Second
	}
	if c.cfg.DialTimeout <= 0 {
		c.cfg.DialTimeout = 10 * time.Second
	}
	if c.cfg.Logger == nil {
		c.cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// In a cluster, addr may be a standby (its redirect is followed) or
	// down (the other Addrs are tried).
	var firstErr error
	for _, a := range c.seeds(addr) {
		nc, _, rep, err := c.connect(ctx, a, wire.TInit, 0)
		if err == nil {
			c.id = rep.id
			c.start(nc)
			return c, nil
		}
		var st Status
		if errors.As(err, &st) && st != ErrNotReady {
			return nil, fmt.Errorf("dlock: dial %s: %w", a, err) // a refusal, not a failover
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("dlock: dial %s: %w", a, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
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
	dial := c.cfg.DialContext
	if dial == nil {
		d := net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 6 * time.Second, Count: 9}}
		dial = d.DialContext
	}
	nc, err := dial(ctx, network, address)
	if err != nil || c.cfg.TLS == nil {
		return nc, err
	}
	return handshakeTLS(ctx, nc, address, c.cfg.TLS)
}

// rawExchange sends one request frame on nc, which no other goroutine
// uses yet, and reads the next frame, bounded by DialTimeout and ctx.
func (c *Client) rawExchange(ctx context.Context, nc net.Conn, frame []byte) (wire.Header, []byte, error) {
	var h wire.Header
	deadline := time.Now().Add(c.cfg.DialTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	nc.SetDeadline(deadline)
	defer nc.SetDeadline(time.Time{})
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(pastDeadline) })
	defer stop()
	if _, err := nc.Write(frame); err != nil {
		return h, nil, err
	}
	body, err := wire.ReadFrame(nc, &h, nil)
	return h, body, err
}

// register sends TInit/TReinit on a fresh connection and reads the reply
// synchronously. A standby's redirect comes back as statusRedirect with the
// primary's address in rep.Redirect.
func (c *Client) register(ctx context.Context, nc net.Conn, t wire.Type, id int32) (regReply, Status, error) {
	m := wire.Init{MinVersion: MinProtoVersion, TPMode: c.cfg.tpMode}
	h, body, err := c.rawExchange(ctx, nc, m.Append(nil, t, 1, id))
	if err != nil {
		if errors.Is(err, io.EOF) && c.cfg.TLS == nil {
			err = fmt.Errorf("server closed the connection before answering (does it require TLS? set Config.TLS): %w", err)
		}
		return regReply{}, 0, err
	}
	if h.Type() != t.Reply() || h.ID() != 1 || h.Version() != wire.Version {
		return regReply{}, ErrBadResponse, nil
	}
	if h.Status() == wire.StatusRedirect {
		var r wire.Redirect
		if r.Decode(body) != nil {
			return regReply{}, ErrBadResponse, nil
		}
		return regReply{redirect: r.Addr}, statusRedirect, nil
	}
	if st := Status(h.Status()); st != Success {
		return regReply{}, passThrough(st), nil
	}
	var rep wire.InitReply
	if rep.Decode(body) != nil || rep.ClientID <= 0 || (id != 0 && rep.ClientID != id) {
		return regReply{}, ErrBadResponse, nil
	}
	return regReply{id: rep.ClientID, state: rep.ServerState, flags: rep.Flags, epoch: rep.Epoch}, Success, nil
}

// passThrough maps a reply status the way DLock's clients do (SEMANTICS.md §7):
// known codes pass, anything else is a bad response.
func passThrough(st Status) Status {
	switch {
	case st == Success || st == ErrGeneric || st == ErrMoved:
		return st
	case st >= ErrAgain && st <= ErrAsync,
		st >= ErrClientNotInit && st <= ErrServerNoResource,
		st >= ErrObjectAlreadyExisted && st <= ErrObjectCASFailed:
		return st
	}
	return ErrBadResponse
}

// control runs a request whose reply is header-only; the error says which
// operation (op) failed and how.
func (c *Client) control(ctx context.Context, op string, t wire.Type, body []byte) error {
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte {
		return wire.AppendFrame(dst, t, id, c.id, body)
	})
	if err != nil {
		return fmt.Errorf("dlock: %s: %w", op, err)
	}
	st := passThrough(cl.status)
	c.m.putCall(cl)
	if st != Success {
		return fmt.Errorf("dlock: %s: %w", op, st)
	}
	return nil
}

// Heartbeat checks that the server answers (client_heartbeat); the timeout
// is ctx's deadline. It has no effect on leases.
func (c *Client) Heartbeat(ctx context.Context) error {
	return c.control(ctx, "heartbeat", wire.THeartbeat, nil)
}

// Shutdown deregisters the client (client_deinit): the server releases every
// lock and object reference it has and wakes whoever waits behind its holds.
// The connection is closed whatever the outcome.
func (c *Client) Shutdown(ctx context.Context) error {
	err := c.control(ctx, "shutdown", wire.TDeinit, nil)
	c.Close()
	return err
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
	c.mu.Unlock()
	c.m.close()
	c.cancel()
	c.recoverWG.Wait()
	c.m.stop()
	return nil
}

// start begins serving calls over the registered connection nc.
func (c *Client) start(nc net.Conn) {
	c.locks = make(map[int32]*Lock)
	c.objects = make(map[*Atomic64]struct{})
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.m = newMux(nc, muxHooks{lost: c.lost, failed: c.connFailed, late: c.lateReply})
}

// ID returns the client id the server assigned.
func (c *Client) ID() int32 { return c.id }

// lateReply notes a reply that came after its caller gave up.
func (c *Client) lateReply(h *wire.Header, _ []byte) {
	c.cfg.Logger.Debug("dlock: reply to an abandoned request dropped", "type", h.Type(), "id", h.ID(), "status", h.Status())
}

// Outcomes reports the requests whose outcome was unknown and how they were
// resolved; see [ErrConnLost].
func (c *Client) Outcomes() Outcomes {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.outcomes
}

// Stats returns a copy of the client's debug counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// ResetStats zeroes the client's debug counters (clear_client_debug_stats).
func (c *Client) ResetStats() {
	c.mu.Lock()
	c.stats = Stats{}
	c.mu.Unlock()
}

// ServerStats fetches the server's debug counters.
func (c *Client) ServerStats(ctx context.Context) (Stats, error) {
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte {
		return wire.AppendFrame(dst, wire.TStats, id, c.id, nil)
	})
	if err != nil {
		return Stats{}, fmt.Errorf("dlock: server stats: %w", err)
	}
	defer c.m.putCall(cl)
	if st := passThrough(cl.status); st != Success {
		return Stats{}, fmt.Errorf("dlock: server stats: %w", st)
	}
	var rep wire.StatsReply
	if rep.Decode(cl.body) != nil {
		return Stats{}, fmt.Errorf("dlock: server stats: malformed reply: %w", ErrBadResponse)
	}
	return Stats(rep.Counters), nil
}

// ResetServerStats zeroes the server's debug counters.
func (c *Client) ResetServerStats(ctx context.Context) error {
	return c.control(ctx, "reset server stats", wire.TResetStats, nil)
}

// djb2 is the descriptor hash DLock's clients use as the preferred id
// (SEMANTICS.md §3).
func djb2(b []byte) int32 {
	h := uint32(5381)
	for _, c := range b {
		h = h*33 + uint32(c)
	}
	return int32(h)
}
