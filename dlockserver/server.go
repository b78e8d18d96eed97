package dlockserver

import (
	"container/heap"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/umo"
	"github.com/dlock-io/dlock/internal/wire"
)

// Server is a dlock primary server. Make one with New, then Serve listeners
// or ListenAndServe. All state lives in memory.
type Server struct {
	cfg Config
	clk clock

	// mu guards the server-wide state; requests on existing locks take
	// only their stripe's mutex (the lock order is in state.go).
	mu       modeMutex
	state    uint8 // wire.StateReady or wire.StateWaitClientReinit
	recovery int   // clients still to finish recovery
	locks    *lockcore.Table
	objs     *umo.Table // its contents guarded by objMu too (state.go)
	objMu    sync.Mutex
	clients  map[int32]*client
	stats    dlock.Stats // counters kept outside the stripes
	stripes  [numStripes]stripe

	evMu    sync.Mutex // guards events, timer and timerAt
	events  eventHeap
	timer   *time.Timer
	timerAt time.Time

	conns     map[*conn]struct{}
	shaking   map[*conn]struct{} // connections in the TLS handshake
	connSeq   uint64
	listeners map[net.Listener]struct{}
	closed    bool
	rng       *rand.Rand
	tls       *tls.Config // nil without TLS
	obs       observer    // metrics and introspection (observe.go)
	ha        *haState    // nil outside a highly available cluster
	shard     shardRef    // slot map of a sharded cluster (shard.go)

	loops []*loop // event loops, made at the first connection they serve

	wg sync.WaitGroup // connection and loop goroutines
}

// client is a registered client.
type client struct {
	id       int32
	conn     *conn // nil while abnormal (connection lost)
	lostGen  uint64
	reinit   bool // reinit in progress (until ReinitDone)
	uploaded bool // uploaded locks during recovery
	finished bool // counted as recovered (ReinitDone during recovery)
	// identity is the hash of the client certificate that registered the
	// id (mtls.Identity); a Reinit must present the same. Unset without
	// client certificates.
	identity    [32]byte
	hasIdentity bool
	// addr is the peer address of its latest connection, for the log.
	addr string
}

// New returns a server for cfg. It listens nowhere until Serve or
// ListenAndServe.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rand.Uint32())
	}
	s := &Server{
		cfg:       cfg,
		clk:       newClock(cfg.WallClock()),
		state:     wire.StateReady,
		locks:     lockcore.NewTable(lockcore.Limits{MaxLocks: cfg.MaxLocks}),
		objs:      umo.NewTable(umo.Limits{MaxObjects: cfg.MaxObjects}),
		clients:   make(map[int32]*client),
		conns:     make(map[*conn]struct{}),
		shaking:   make(map[*conn]struct{}),
		listeners: make(map[net.Listener]struct{}),
		rng:       rand.New(rand.NewChaCha8(seed)),
	}
	// Fencing tokens start at the current time in microseconds, so that a
	// server started after another one died continues above every token the
	// old one issued (unless it issued more than a million per second on
	// average); recovery reports raise them further.
	s.locks.RaiseTokens(uint64(cfg.WallClock().UnixMicro()))
	if cfg.TLS != nil {
		if s.tls, err = serverTLS(cfg.TLS, cfg.TLSNoClientAuth, cfg.Logger); err != nil {
			return nil, fmt.Errorf("%w: TLS: %v", ErrInvalidConfig, err)
		}
	}
	s.mu.stripes = &s.stripes
	s.initStripes()
	s.timer = s.clk.afterFunc(time.Hour, s.fire)
	s.timer.Stop()
	s.initHA()
	if cfg.RecoveryClients > 0 && s.ha == nil {
		s.state = wire.StateWaitClientReinit
		s.recovery = cfg.RecoveryClients
		if cfg.RecoveryTimeout > 0 {
			s.mu.Lock()
			s.push(event{at: s.clk.now().Add(cfg.RecoveryTimeout), kind: evRecovery})
			s.mu.Unlock()
		}
	}
	return s, nil
}

// ListenAndServe listens on Config.Addr (and Config.UnixSocket, if set) and
// serves until Shutdown or Close. It returns ErrServerClosed after a
// shutdown.
func (s *Server) ListenAndServe() error {
	addr, err := s.cfg.ListenAddr()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if s.cfg.UnixSocket == "" {
		return s.Serve(ln)
	}
	_ = os.Remove(s.cfg.UnixSocket) // a stale socket file from an earlier run
	uln, err := net.Listen("unix", s.cfg.UnixSocket)
	if err != nil {
		ln.Close()
		return err
	}
	errc := make(chan error, 2)
	go func() { errc <- s.Serve(uln) }()
	err = s.Serve(ln)
	if err2 := <-errc; err == nil || errors.Is(err, ErrServerClosed) {
		if err2 != nil && !errors.Is(err2, ErrServerClosed) {
			err = err2
		}
	}
	return err
}

// Serve accepts connections on ln until Shutdown or Close and serves each
// in its own goroutines. It always returns a non-nil error and closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			// Too many open files and the like: back off and retry.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff < time.Second {
				backoff *= 2
			}
			s.cfg.Logger.Warn("accept failed", "err", err, "retry_in", backoff)
			s.clk.sleep(backoff)
			continue
		}
		backoff = 0
		s.startConn(nc) // a refusal is logged and nc closed
	}
}

// Shutdown stops accepting, disconnects every client and waits for the
// connection goroutines to end or ctx to be done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ha != nil {
		s.ha.timer.Stop()
		s.stopObjects()
	}
	for ln := range s.listeners {
		ln.Close()
	}
	for c := range s.conns {
		c.raw.Close()
	}
	s.stopLoops()
	s.evMu.Lock()
	s.timer.Stop()
	s.evMu.Unlock()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close is Shutdown without a deadline.
func (s *Server) Close() error {
	return s.Shutdown(context.Background())
}

// Stats returns a copy of the server's debug counters.
func (s *Server) Stats() dlock.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked()
}

// statsLocked adds up the counters of the server and of its stripes.
// Called with mu held.
func (s *Server) statsLocked() dlock.Stats {
	sum := s.stats
	for i := range s.stripes {
		for j, n := range s.stripes[i].stats {
			sum[j] += n
		}
	}
	return sum
}

// ResetStats zeroes the server's debug counters.
func (s *Server) ResetStats() {
	s.mu.Lock()
	s.resetStatsLocked()
	s.mu.Unlock()
}

// resetStatsLocked zeroes the counters. Called with mu held.
func (s *Server) resetStatsLocked() {
	s.stats = dlock.Stats{}
	for i := range s.stripes {
		s.stripes[i].stats = dlock.Stats{}
	}
}

// Ready reports whether the server serves requests (it is not waiting for
// clients to recover).
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state == wire.StateReady
}

// Clients returns the number of registered clients (including abnormal ones).
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// Locks returns the number of lock objects.
func (s *Server) Locks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.locks.Len()
}

// now reads the clock's second for the lock and object tables. Called
// with mu held.
func (s *Server) now() uint32 { return s.instant().sec }

// newClientID returns a random unused id in 1..0x7FFFFFFF. Called with mu held.
func (s *Server) newClientID() int32 {
	for {
		id := s.rng.Int32N(dlock.MaxClientID) + 1
		if _, used := s.clients[id]; !used {
			return id
		}
	}
}

// ServeConn serves one connection the caller made or accepted itself — one
// end of a net.Pipe, a connection through a test proxy — exactly as Serve
// serves an accepted one (TLS if configured, MaxConns, Shutdown closes it),
// and returns once it has ended. It returns ErrServerClosed if the server
// is shut down, and ErrTooManyConns if MaxConns refused it; nc is closed
// in every case.
func (s *Server) ServeConn(nc net.Conn) error {
	c, err := s.startConn(nc)
	if err != nil {
		return err
	}
	<-c.quit
	return nil
}

// ErrTooManyConns is returned by ServeConn when MaxConns refuses a
// connection.
var ErrTooManyConns = errors.New("dlockserver: too many connections")

// startConn registers and starts serving nc, enforcing MaxConns.
func (s *Server) startConn(nc net.Conn) (*conn, error) {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 6 * time.Second, Count: 9})
	}
	fd := s.loopFD(nc) // a plain socket for an event loop, else -1
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		closeFD(fd)
		nc.Close()
		return nil, ErrServerClosed
	}
	if len(s.conns) >= s.cfg.MaxConns {
		// Make room by closing the oldest connection that never registered.
		var oldest *conn
		for c := range s.conns {
			if c.client == nil && !c.evicted && (oldest == nil || c.seq < oldest.seq) {
				oldest = c
			}
		}
		if oldest == nil {
			s.mu.Unlock()
			s.cfg.Logger.Warn("connection refused: too many connections", "remote", nc.RemoteAddr())
			closeFD(fd)
			nc.Close()
			return nil, ErrTooManyConns
		}
		oldest.evicted = true
		delete(s.conns, oldest)
		delete(s.shaking, oldest)
		oldest.raw.Close()
	}
	s.connSeq++
	raw := nc
	if s.tls != nil {
		nc = tls.Server(nc, s.tls)
	}
	c := newConn(s, nc, s.connSeq)
	c.raw = raw
	if fd >= 0 && !s.adoptLoop(c, fd, nc) {
		closeFD(fd)
		fd = -1
	}
	if fd >= 0 {
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		raw.Close() // the loop has the socket through fd
		if s.debugOn() {
			s.cfg.Logger.Debug("connection accepted", "remote", c.remote(), "tls", false, "loop", true)
		}
		return c, nil
	}
	if s.tls != nil {
		s.startHandshake(c)
	} else if sc, ok := raw.(syscall.Conn); ok {
		c.rawConn, _ = sc.SyscallConn()
	}
	s.conns[c] = struct{}{}
	s.wg.Add(2)
	s.mu.Unlock()
	if s.debugOn() {
		s.cfg.Logger.Debug("connection accepted", "remote", c.remote(), "tls", s.tls != nil)
	}
	go c.serve()
	go c.writeLoop()
	return c, nil
}

// connClosed is called once by a connection's reader when it ends.
func (s *Server) connClosed(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	s.dropConnWaiters(c)
	cl := c.client
	if cl == nil || cl.conn != c {
		if s.debugOn() {
			s.cfg.Logger.Debug("connection closed", "remote", c.remote())
		}
		return
	}
	s.stats.Inc(dlock.StatClientDisconnect)
	cl.conn = nil
	cl.lostGen++
	s.cfg.Logger.Info("client connection lost", "client", cl.id, "remote", c.remote())
	if s.cfg.SessionTimeout > 0 && !s.closed {
		s.push(event{at: s.clk.now().Add(s.cfg.SessionTimeout), kind: evSession, client: cl.id, gen: cl.lostGen})
	}
}

// Events of the deadline heap. Entries are validated when they fire, so a
// stale entry (a waiter already granted, a client that came back) is simply
// dropped.
const (
	evLock     = iota // a lock's NextEvent second arrived
	evWait            // a blocking request's deadline passed
	evSession         // an abnormal client's session timeout passed
	evRecovery        // the recovery deadline passed
)

type event struct {
	at     time.Time
	kind   uint8
	lock   int32 // evLock, evWait
	sec    uint32
	tag    uint64
	client int32
	gen    uint64
}

type eventHeap []event

func (h eventHeap) Len() int           { return len(h) }
func (h eventHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h eventHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)        { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// push adds an event and re-arms the timer if it is the earliest. Called
// with mu held or a stripe (opLock).
func (s *Server) push(e event) {
	s.evMu.Lock()
	heap.Push(&s.events, e)
	s.arm()
	s.evMu.Unlock()
}

// arm sets the timer to the earliest event. Called with mu held and evMu.
func (s *Server) arm() {
	if s.closed || len(s.events) == 0 {
		return
	}
	at := s.events[0].at
	if !s.timerAt.IsZero() && !at.Before(s.timerAt) {
		return
	}
	s.timerAt = at
	s.timer.Reset(s.clk.until(at))
}

// fire runs the events that are due.
func (s *Server) fire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evMu.Lock()
	s.timerAt = time.Time{}
	s.evMu.Unlock()
	if s.closed || !s.haServing() {
		return
	}
	t := s.clk.now()
	for {
		s.evMu.Lock()
		if len(s.events) == 0 || s.events[0].at.After(t) {
			s.arm()
			s.evMu.Unlock()
			return
		}
		e := heap.Pop(&s.events).(event)
		s.evMu.Unlock()
		s.run(e)
	}
}

// run executes one due event. Called with mu held.
func (s *Server) run(e event) {
	at := s.instant()
	switch e.kind {
	case evLock:
		st := s.stripeOf(e.lock)
		if cur, ok := st.scheduled[e.lock]; !ok || cur != e.sec {
			return
		}
		delete(st.scheduled, e.lock)
		l := s.locks.Lock(e.lock)
		if l == nil {
			return
		}
		if at.sec < e.sec {
			// The timer fired a hair early for the seconds clock; retry.
			st.scheduled[e.lock] = e.sec
			s.evMu.Lock()
			heap.Push(&s.events, event{at: s.clk.now().Add(time.Millisecond), kind: evLock, lock: e.lock, sec: e.sec})
			s.evMu.Unlock()
			return
		}
		st.deliver(at, l.Advance(at.sec, st.wake[:0]))
		st.schedule(e.lock, l)
	case evWait:
		st := s.stripeOf(e.lock)
		if w := st.waits[e.tag]; w != nil {
			st.withdraw(at, w, giveUp)
		}
	case evRecovery:
		s.haRecoveryDeadline()
		s.recoveryDeadline()
	case evSession:
		cl := s.clients[e.client]
		if cl == nil || cl.conn != nil || cl.lostGen != e.gen {
			return
		}
		s.cfg.Logger.Info("client session expired", "client", cl.id, "remote", cl.addr)
		s.removeClient(cl)
		s.haDeregister(cl.id, false)
	}
}

// LockInfo describes one lock for operators and tests.
type LockInfo struct {
	ID      int32
	Type    dlock.LockType
	State   dlock.LockState
	Refs    int // clients that have the lock open
	Waiters int // queued blocking requests
}

// LockInfo returns what the server knows of lock id, and false if there is
// no such lock. It is a query: it takes nothing.
func (s *Server) LockInfo(id int32) (LockInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.locks.Lock(id)
	if l == nil {
		return LockInfo{}, false
	}
	return LockInfo{ID: id, Type: l.Type(), State: l.State(), Refs: l.Refs(), Waiters: l.Waiters()}, true
}
