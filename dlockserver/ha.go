package dlockserver

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/umo"
	"github.com/dlock-io/dlock/internal/wire"
)

// High availability: the server side.
//
// In a highly available cluster several servers run; a coordinator (package
// dlockserver/ha, on etcd) elects one primary. Every other server is a
// standby: it answers every request with a redirect naming the primary's
// address. The coordinator drives the server through Promote, ExtendFence
// and Standby; the server calls the coordinator back to record clients and
// reserve fencing tokens (the Coordinator interface).
//
// A primary serves only while its fence, a deadline the coordinator keeps
// moving forward while its etcd lease is renewed, lies in the future. Every
// request, every timer-driven grant and every pushed grant checks it against
// the monotonic clock, so a primary that was paused or cut off from etcd
// serves nothing once the deadline passed, even before its fence timer runs.
// It is then suspended: it answers DLOCK_NOT_READY and keeps its state for
// Promotion.Suspend, because an etcd leader election stalls keepalives
// without expiring leases; a keepalive that gets through in that window
// resumes it (its lease, hence its leader key, is alive: nobody else can
// have been elected). Past the window it steps down: it closes every
// connection and forgets the lock state (the next primary rebuilds it from
// the clients).

// Coordinator is what a server in a highly available cluster calls back
// (Config.Cluster). Its methods may block on the network; the server calls
// them without holding its lock.
type Coordinator interface {
	// Register records a newly registered client before the server answers
	// it; an error makes the registration fail.
	Register(ctx context.Context, id int32) error
	// Deregister forgets a client that left or was removed.
	Deregister(ctx context.Context, id int32) error
	// ReserveTokens makes the cluster's saved token mark at least need and
	// returns the new mark: the server never issues a token above it.
	ReserveTokens(ctx context.Context, need uint64) (uint64, error)
}

// Promotion is what a server needs to become the primary.
type Promotion struct {
	// Epoch is the election revision; clients refuse a server whose epoch is
	// below one they have seen.
	Epoch uint64
	// Fence is the instant the server stops serving unless ExtendFence moves
	// it.
	Fence time.Time
	// Clients are the ids registered with the previous primaries: the server
	// grants nothing new until each has re-registered and finished uploading,
	// or Grace has passed. An id not listed cannot re-register.
	Clients []int32
	// Grace bounds that wait; it is raised to Config.SessionTimeout.
	Grace time.Duration
	// Suspend is how long past its fence the primary keeps its state while
	// serving nothing, so that ExtendFence can resume it (an etcd leader
	// election); then it steps down.
	Suspend time.Duration
	// DurableObjects makes the server keep its atomic64 objects in the
	// coordinator, which must be an ObjectStore: every change is committed
	// there before the client hears of it. Objects are the records the
	// previous primaries left.
	DurableObjects bool
	Objects        []ObjectRecord
	// TokenFloor is the saved token mark: every token the server issues is
	// above it. TokenCeiling is the mark reserved for this server (≥ floor).
	TokenFloor, TokenCeiling uint64
}

// Roles of a server in a cluster.
const (
	roleStandby = iota
	rolePrimary
)

// haState is the cluster side of a Server; nil without Config.Cluster.
type haState struct {
	coord Coordinator
	clk   *clock    // the server's clock
	base  time.Time // monotonic origin of fence
	fence atomic.Int64
	// stepDown is fence + Promotion.Suspend (same origin); guarded by mu.
	stepDown int64
	suspend  time.Duration
	// poisoned is set when a grant was withheld while suspended: the state
	// no longer matches what clients know, so it must never resume.
	poisoned bool
	ceil     atomic.Uint64 // reserved token mark
	// tokens is the current lock table's counter, readable without mu.
	tokens atomic.Pointer[lockcore.Tokens]

	// Guarded by Server.mu.
	role      int
	primary   string // the primary's address, for redirects
	epoch     uint64
	pending   map[int32]bool // registered clients still to finish recovery
	known     map[int32]bool // registered clients that may re-register
	reserving bool
	timer     *time.Timer
	objs      *objCommit // durable objects of this term; nil without
}

// tokenWindow is how far above the tokens issued a primary asks the saved
// mark to be; a new reservation starts when half of it is used.
const tokenWindow = 1 << 32

func (s *Server) initHA() {
	if s.cfg.Cluster == nil {
		return
	}
	h := &haState{coord: s.cfg.Cluster, clk: &s.clk, base: s.clk.now()}
	s.ha = h
	h.tokens.Store(s.locks.Tokens())
	h.timer = s.clk.afterFunc(time.Hour, s.fenceTimer)
	h.timer.Stop()
}

// fenced reports whether the primary's fence has passed (or the server is
// not the primary). Safe without mu.
func (h *haState) fenced() bool {
	return int64(h.clk.since(h.base)) >= h.fence.Load()
}

// pastStepDown reports whether a suspended primary must step down. Called
// with mu held.
func (h *haState) pastStepDown() bool {
	return h.poisoned || int64(h.clk.since(h.base)) >= h.stepDown
}

// Standby makes the server a standby that redirects every client to
// primary ("" while no primary is known). A primary that becomes a standby
// closes its connections and forgets its lock state.
func (s *Server) Standby(primary string) {
	if s.ha == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ha.role == rolePrimary {
		s.demote("stepping down")
	}
	s.ha.primary = primary
}

// Promote makes the server the primary of epoch p.Epoch: it starts in
// recovery mode, waiting for the registered clients.
func (s *Server) Promote(p Promotion) {
	if s.ha == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.ha
	if h.role == rolePrimary {
		s.demote("promoted again")
	}
	s.resetState()
	h.role = rolePrimary
	h.epoch = p.Epoch
	h.primary = ""
	h.pending = make(map[int32]bool, len(p.Clients))
	h.known = make(map[int32]bool, len(p.Clients))
	for _, id := range p.Clients {
		h.pending[id] = true
		h.known[id] = true
	}
	s.locks.RaiseTokens(p.TokenFloor)
	h.ceil.Store(max(p.TokenCeiling, p.TokenFloor))
	h.reserving = false
	h.poisoned = false
	h.suspend = max(p.Suspend, 0)
	s.setFence(p.Fence)
	s.startObjects(p)
	// With a negative session timeout (clients kept until evicted) the
	// wait has no bound either, as upstream DLock's recovery.
	grace := max(p.Grace, s.cfg.SessionTimeout)
	if len(h.pending) == 0 {
		s.becomeReady()
	} else {
		s.state = wire.StateWaitClientReinit
		s.recovery = len(h.pending)
		if grace > 0 && s.cfg.SessionTimeout > 0 {
			s.push(event{at: s.clk.now().Add(grace), kind: evRecovery})
		}
	}
	s.cfg.Logger.Info("primary: serving", "epoch", p.Epoch, "expected_clients", len(h.pending),
		"grace", grace, "token_floor", p.TokenFloor, "token_ceiling", h.ceil.Load())
}

// ExtendFence moves the primary's fence to at (never backwards: an older
// keepalive answered late must not shorten it, and a later one only moves
// it forward).
func (s *Server) ExtendFence(at time.Time) {
	if s.ha == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.ha
	if h.role != rolePrimary || h.pastStepDown() {
		return // stepping down is final for this epoch
	}
	if int64(at.Sub(h.base)) > h.fence.Load() {
		if h.fenced() {
			s.cfg.Logger.Info("primary: lease confirmed again, resuming", "epoch", h.epoch)
			s.arm()
		}
		s.setFence(at)
	}
}

// setFence sets the fence, the step-down deadline and its timer. Called
// with mu held.
func (s *Server) setFence(at time.Time) {
	h := s.ha
	h.fence.Store(int64(at.Sub(h.base)))
	h.stepDown = int64(at.Add(h.suspend).Sub(h.base))
	h.timer.Reset(s.clk.until(at.Add(h.suspend)))
}

// Epoch returns the epoch of the server as primary (serving, or suspended
// past its fence), 0 when it is not the primary.
func (s *Server) Epoch() uint64 {
	if s.ha == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ha.role != rolePrimary {
		return 0
	}
	return s.ha.epoch
}

// Serving reports whether the server is the primary within its fence.
func (s *Server) Serving() bool {
	if s.ha == nil {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ha.role == rolePrimary && !s.ha.fenced()
}

// LastToken returns the most recent fencing token issued.
func (s *Server) LastToken() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.locks.Tokens().Last()
}

// fenceTimer runs when the step-down deadline may have passed.
func (s *Server) fenceTimer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ha.role == rolePrimary && s.ha.fenced() && s.ha.pastStepDown() {
		s.demote("lease deadline passed")
	}
}

// demote stops serving: closes every connection and forgets the state.
// Called with mu held.
func (s *Server) demote(why string) {
	h := s.ha
	h.role = roleStandby
	h.fence.Store(0)
	h.timer.Stop()
	s.cfg.Logger.Warn("primary: stopped serving", "why", why, "epoch", h.epoch)
	s.resetState()
}

// resetState closes every connection and forgets clients, locks, objects,
// waiters and events. Called with mu held.
func (s *Server) resetState() {
	s.stopObjects()
	for c := range s.conns {
		c.client = nil
		c.raw.Close()
	}
	s.locks = lockcore.NewTable(lockcore.Limits{MaxLocks: s.cfg.MaxLocks})
	s.ha.tokens.Store(s.locks.Tokens())
	s.objs = umo.NewTable(umo.Limits{MaxObjects: s.cfg.MaxObjects})
	s.clients = make(map[int32]*client)
	s.forgetWaiters()
	s.recovery = 0
	s.state = wire.StateWaitClientReinit
}

// haGate answers a request the server must not serve: from a standby a
// redirect, from a primary whose fence passed a redirect too (after
// stepping down), and while the token reservation lags a DLOCK_NOT_READY.
// It reports whether the request may proceed. Called without mu.
func (c *conn) haGate(h *wire.Header, body []byte) bool {
	s := c.s
	ha := s.ha
	if !ha.fenced() {
		if ceil, last := ha.ceil.Load(), ha.tokens.Load().Last(); ceil > last && ceil-last > tokenWindow/2 {
			return true
		}
		return c.tokenGate(h, body)
	}
	s.mu.Lock()
	if ha.role == rolePrimary && !ha.fenced() {
		s.mu.Unlock() // resumed meanwhile
		return true
	}
	t := h.Type()
	if ha.role == rolePrimary && !ha.pastStepDown() {
		// Suspended: nothing is served, the state is kept for a resume.
		if t == wire.TCancel || t == wire.TAbandon {
			// A give-up we cannot apply now: the state would no longer
			// match the client's, so never resume it.
			ha.poisoned = true
			s.mu.Unlock()
			return false
		}
		s.mu.Unlock()
		c.notReady(h, body)
		return false
	}
	if ha.role == rolePrimary {
		s.demote("lease deadline passed")
	}
	r := wire.Redirect{Addr: ha.primary}
	s.mu.Unlock()
	if t == wire.TCancel || t == wire.TAbandon {
		return false // requests without a reply: dropped
	}
	c.outMu.Lock()
	c.out = r.Append(c.out, h.Type(), h.ID())
	c.outMu.Unlock()
	return false
}

// notReady answers a request DLOCK_NOT_READY in the shape its type
// expects: lock commands with a (zero) result each, everything else with an
// empty body. Called without mu.
func (c *conn) notReady(h *wire.Header, body []byte) {
	st := int32(dlock.ErrNotReady)
	c.outMu.Lock()
	defer c.outMu.Unlock()
	switch h.Type() {
	case wire.TLockOp:
		var r wire.LockResult
		c.out = r.Append(c.out, h.ID(), st)
	case wire.TBatchLockOp:
		if c.bop.Decode(body) != nil {
			c.out = wire.AppendFrame(c.out, h.Type().Reply(), h.ID(), int32(dlock.ErrInval), nil)
			return
		}
		c.bres.N = c.bop.N
		for i := 0; i < c.bop.N; i++ {
			c.bres.Items[i] = wire.LockResult{Status: st}
		}
		c.out = c.bres.Append(c.out, h.ID(), 0)
	default:
		c.out = wire.AppendFrame(c.out, h.Type().Reply(), h.ID(), st, nil)
	}
}

// tokenGate starts a reservation when half the window is used and refuses
// requests that could grant while the headroom is small. Called without mu.
func (c *conn) tokenGate(h *wire.Header, body []byte) bool {
	s := c.s
	s.mu.Lock()
	ok := s.tokenRoom()
	s.mu.Unlock()
	if ok || h.Type() == wire.TCancel || h.Type() == wire.TAbandon {
		return true // (requests without a reply grant at most the waiters)
	}
	c.notReady(h, body)
	return false
}

// tokenRoom reports whether any single action may grant (every waiter plus
// a batch), and starts a reservation when half the window is used. Called
// with mu held.
func (s *Server) tokenRoom() bool {
	h := s.ha
	last, ceil := s.locks.Tokens().Last(), h.ceil.Load()
	if (ceil <= last || ceil-last <= tokenWindow/2) && !h.reserving && h.role == rolePrimary {
		h.reserving = true
		epoch := h.epoch
		s.wg.Add(1)
		go s.reserve(epoch, last+tokenWindow)
	}
	return last+uint64(s.queued())+2*wire.MaxBatch < ceil
}

// reserve asks the coordinator to move the saved mark to need.
func (s *Server) reserve(epoch, need uint64) {
	defer s.wg.Done()
	for i := 0; i < 10; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		mark, err := s.ha.coord.ReserveTokens(ctx, need)
		cancel()
		s.mu.Lock()
		if s.ha.role != rolePrimary || s.ha.epoch != epoch || s.closed {
			s.ha.reserving = false
			s.mu.Unlock()
			return
		}
		if err == nil {
			if mark > s.ha.ceil.Load() {
				s.ha.ceil.Store(mark)
			}
			s.ha.reserving = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		s.cfg.Logger.Warn("token reservation failed", "err", err)
		s.clk.sleep(100 * time.Millisecond)
	}
	s.mu.Lock()
	s.ha.reserving = false
	s.mu.Unlock()
}

// haServing reports, with mu held, whether timer events may run now. A
// suspended primary postpones them (a resume runs them); one past its
// step-down deadline steps down.
func (s *Server) haServing() bool {
	if s.ha == nil {
		return true
	}
	if s.ha.role != rolePrimary {
		return false
	}
	if s.ha.fenced() {
		if s.ha.pastStepDown() {
			s.demote("lease deadline passed")
		}
		return false
	}
	return true
}

// haRegister records a new client with the coordinator before the reply.
// Called with mu held; releases it meanwhile.
func (s *Server) haRegister(id int32) error {
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err := s.ha.coord.Register(ctx, id)
	cancel()
	s.mu.Lock()
	return err
}

// haDeregister forgets a removed client in the coordinator. When wait is
// false it does so in the background (a session expiry, an eviction).
// Called with mu held; releases it meanwhile when wait is set.
func (s *Server) haDeregister(id int32, wait bool) {
	if s.ha == nil {
		return
	}
	delete(s.ha.known, id)
	do := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.ha.coord.Deregister(ctx, id); err != nil {
			s.cfg.Logger.Warn("could not remove a client from the cluster registry", "client", id, "err", err)
		}
	}
	if wait {
		s.mu.Unlock()
		do()
		s.mu.Lock()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		do()
	}()
}

// haRecoveryDeadline forgets, at the end of the grace period, the
// registered clients that never came back, so that the next failover does
// not wait for them again. Called with mu held.
func (s *Server) haRecoveryDeadline() {
	if s.ha == nil || s.ha.role != rolePrimary || s.state == wire.StateReady {
		return
	}
	for id := range s.ha.pending {
		if cl := s.clients[id]; cl == nil {
			s.haDeregister(id, false)
			// Its references to durable objects go, as with a removal.
			s.haObjectsTouched(id)
			s.objs.RemoveClient(s.now(), id)
		}
		delete(s.ha.pending, id)
	}
}

// haReinitDone counts a client that finished recovery. Called with mu held.
func (s *Server) haReinitDone(id int32) {
	if !s.ha.pending[id] {
		return
	}
	delete(s.ha.pending, id)
	s.recovery = len(s.ha.pending)
	if s.recovery == 0 {
		s.becomeReady()
	}
}

// haEpoch is the epoch carried in registration replies. Called with mu held.
func (s *Server) haEpoch() uint64 {
	if s.ha == nil {
		return 0
	}
	return s.ha.epoch
}

// haMayGrant reports whether a pushed grant may go out: the server is the
// primary within its fence, and no token above the reserved mark is in it.
// Called with mu held.
func (s *Server) haMayGrant() bool {
	if s.ha.role != rolePrimary || s.ha.fenced() {
		s.ha.poisoned = true // a grant withheld: never resume this state
		return false
	}
	if s.locks.Tokens().Last() > s.ha.ceil.Load() {
		s.cfg.Logger.Error("a token above the reserved mark was drawn: not sending it")
		return false
	}
	return true
}
