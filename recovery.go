package dlock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// RecoveryReport tells what a recovery kept.
type RecoveryReport struct {
	// Addr is the server the client recovered with.
	Addr string
	// Shard is the shard the client serves, for a Client of a Router in a
	// sharded cluster ("" otherwise): each shard's Client recovers on its
	// own.
	Shard string
	// NewPrimary is true when that server was a new primary rebuilding its
	// state from the clients (the old one died), false when the client only
	// reconnected to the same server.
	NewPrimary bool
	// Kept are the locks the client held before and the server confirms.
	Kept []*Lock
	// Lost are the locks the client held before but no longer holds: a
	// lease ran out during the outage, another client's report won the
	// merge, or the server had removed the client. Their handles are reset:
	// the client must lock them again.
	Lost []*Lock
	// LostObjects are the atomic64 objects the client had open before a
	// new primary took over: objects are not recovered (a failover in a
	// highly available cluster included); their handles no longer work.
	// A cluster run with durable objects keeps them: none is lost.
	LostObjects []*Atomic64
	// Err is set when recovery gave up: the server removed this client
	// (ErrClientRemovedByServer). The client is unusable; dial a new one.
	// With Retrying, Err is instead a refusal by the server that recovery
	// keeps retrying (reported once per run of refusals).
	Err error
	// Retrying marks an interim report: recovery has not finished and goes
	// on; Kept and Lost are empty.
	Retrying bool
}

// Reinit re-registers this client under its id over a new connection to
// addr (client_reinit): after a connection failure with the server still
// running, or against a new primary started in recovery mode. Locks and
// their cached state are kept. Against a new primary, objects are gone: the
// client's Atomic64 handles stop working (unless the cluster keeps durable
// objects). Counters restart at zero.
//
// Then call UpdateAllLocks (new primary) and ReinitDone, or let
// Config.AutoRecover do it all.
func (c *Client) Reinit(ctx context.Context, addr string) error {
	c.reinitMu.Lock()
	defer c.reinitMu.Unlock()
	nc, _, rep, err := c.connect(ctx, addr, wire.TReinit, c.id)
	if err != nil {
		if errors.Is(err, ErrClientRemovedByServer) {
			// The server forgot this client: every call says so from now.
			c.m.replaceErr(fmt.Errorf("%w (the server removed this client after its session timed out)", ErrClientRemovedByServer))
		}
		return fmt.Errorf("dlock: reinit %s: %w", addr, err)
	}
	state := rep.state
	durable := rep.flags&wire.InitFlagDurableObjects != 0
	c.mu.Lock()
	c.swapping = true
	c.mu.Unlock()
	// Fail what is pending on the old connection, so that every request
	// whose outcome is unknown is marked, and resolve those before anything
	// else is sent on the new one.
	c.m.detach()
	newPrimary := state == wire.StateWaitClientReinit
	if err := c.resolveUnknown(ctx, nc, newPrimary); err != nil {
		nc.Close()
		c.mu.Lock()
		c.swapping = false
		c.mu.Unlock()
		return fmt.Errorf("dlock: reinit %s: %w", addr, err)
	}
	c.m.attach(nc)
	c.mu.Lock()
	c.swapping = false
	c.newPrimary = newPrimary
	c.reinitAt = time.Now()
	objs := c.objects
	// A cluster with durable objects gives the new primary the old one's
	// objects, the client's references included: the handles keep working.
	loseObjects := newPrimary && !durable
	if loseObjects {
		c.objects = make(map[*Atomic64]struct{})
	}
	c.mu.Unlock()
	if newPrimary {
		c.lostObjects = c.lostObjects[:0]
	}
	if loseObjects {
		for o := range objs {
			o.mu.Lock()
			o.opened = false
			o.mu.Unlock()
			c.lostObjects = append(c.lostObjects, o)
		}
	}
	locks := c.lockList()
	c.mu.Lock()
	c.stats = Stats{}
	for _, l := range locks {
		// Locks parked by an unfinished UpdateAllLocks come back (as in
		// DLock's client_reinit), and a server that died mid-recovery confirmed nothing.
		l.pending = false
		l.confirmed = false
	}
	c.mu.Unlock()
	return nil
}

// resolveUnknown settles, on the new connection nc before anyone else uses
// it, every lock on which a request's outcome was lost with the old
// connection. A hold the client believes it has is queried, and reset if
// the server no longer has it (an unlock took effect, or the lease ran out);
// on a lock it believes it does not hold, the server drops any hold it has
// (a grant that never arrived) and a stored FAIR ticket is given up. A new
// primary in recovery knows only what the clients upload, so nothing is
// left to resolve there.
func (c *Client) resolveUnknown(ctx context.Context, nc net.Conn, newPrimary bool) error {
	c.mu.Lock()
	ids := make([]int32, 0, len(c.unknown))
	for id := range c.unknown {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		c.mu.Lock()
		l := c.locks[id]
		c.mu.Unlock()
		var released, lost bool
		if l != nil && !newPrimary {
			var err error
			if released, lost, err = c.resolveLock(ctx, nc, l); err != nil {
				return err
			}
		}
		c.mu.Lock()
		delete(c.unknown, id)
		c.outcomes.Resolved++
		if released {
			c.outcomes.Released++
		}
		if lost {
			c.outcomes.Lost++
			c.resolvedLost = append(c.resolvedLost, l)
		}
		c.mu.Unlock()
	}
	return nil
}

// resolveLock resolves one lock (see resolveUnknown) with a synchronous
// exchange on nc.
func (c *Client) resolveLock(ctx context.Context, nc net.Conn, l *Lock) (released, lost bool, err error) {
	l.mu.Lock() // waits for an operation still settling its failed request
	defer l.mu.Unlock()
	c.mu.Lock()
	held, state, ticket, id := l.e.held(), l.e.state, l.e.value, l.e.id
	c.mu.Unlock()
	ticketed := state == stateExclusiveTicketed || state == stateSharedTicketed
	var frame []byte
	if held {
		m := wire.ID{ID: id}
		frame = m.Append(nil, wire.TLockQuery, 2, c.id)
	} else {
		m := wire.LockOp{LockID: id}
		if ticketed {
			m.Cmd, m.Arg = uint8(CmdExclusiveTicketTrylock), ticket
			if state == stateSharedTicketed {
				m.Cmd = uint8(CmdSharedTicketTrylock)
			}
		}
		frame = m.AppendType(nil, wire.TResolve, 2, c.id)
	}
	st, err := c.exchange(ctx, nc, frame)
	if err != nil {
		return false, false, fmt.Errorf("resolve %s: %w", quote(l.name), err)
	}
	switch {
	case held && (st == Success || st == ErrMoved):
		// The hold is real (moved: its slot moved to another shard; the
		// hold stays until a Router hands it over, or it ends).
	case held && (st == ErrFail || st == ErrLockNotGet):
		c.mu.Lock()
		l.e.reset()
		c.mu.Unlock()
		lost = true
	case !held && (st == Success || st == ErrFail || st == ErrLockNotGet):
		released = st == Success
		if ticketed {
			c.mu.Lock()
			l.e.reset()
			c.mu.Unlock()
		}
	default:
		return false, false, fmt.Errorf("resolve %s: %w", quote(l.name), st)
	}
	return released, lost, nil
}

// exchange sends one request frame on nc, which nobody else uses yet, and
// returns the status of its header-only reply.
func (c *Client) exchange(ctx context.Context, nc net.Conn, frame []byte) (Status, error) {
	h, _, err := c.rawExchange(ctx, nc, frame)
	if err != nil {
		return 0, err
	}
	var req wire.Header
	copy(req[:], frame)
	if h.Type() != req.Type().Reply() || h.ID() != req.ID() {
		return 0, fmt.Errorf("unexpected reply type %#x id %d: %w", h.Type(), h.ID(), ErrBadResponse)
	}
	return passThrough(Status(h.Status())), nil
}

// holdKind says what a cache entry reports during recovery.
func holdKind(e *lockEntry) uint8 {
	switch e.state {
	case stateExclusiveLocked:
		return wire.HoldExclusive
	case stateSharedLocked:
		return wire.HoldShared
	case stateExclusiveTicketed:
		return wire.TicketExclusive
	case stateSharedTicketed:
		return wire.TicketShared
	}
	return wire.HoldNone
}

// UpdateAllLocks uploads the client's locks and their cached state to a new
// primary in recovery (update_all_locks), in batches of up to 31. Until the
// server confirms a lock, its handle answers ErrLockNotGet. It returns
// ErrAgain while some locks are unconfirmed (call it again), nil when all
// are, and ErrGeneric from a server that is not recovering.
func (c *Client) UpdateAllLocks(ctx context.Context) error {
	c.mu.Lock()
	all := make([]*Lock, 0, len(c.locks))
	for _, l := range c.locks {
		all = append(all, l)
	}
	c.mu.Unlock()
	if len(all) == 0 {
		return nil
	}
	c.mu.Lock()
	var todo []*Lock
	for _, l := range all {
		if !l.confirmed {
			l.pending = true
			todo = append(todo, l)
		}
	}
	c.mu.Unlock()
	for len(todo) > 0 {
		n := min(len(todo), MaxBatch)
		batch := todo[:n]
		todo = todo[n:]
		var m wire.UpdateLocks
		m.N = n
		c.mu.Lock()
		for i, l := range batch {
			m.Items[i] = wire.UpdateLock{ID: l.e.id, Lease: l.e.lease, Type: uint8(l.e.typ),
				Hold: holdKind(&l.e), State: l.e.report(), Token: l.e.token, Desc: l.e.desc}
		}
		c.mu.Unlock()
		cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, id, c.id) })
		if err != nil {
			return fmt.Errorf("dlock: update locks: %w", err)
		}
		st := passThrough(cl.status)
		var rep wire.IDs
		bad := st == Success && (rep.Decode(cl.body) != nil || rep.N != n)
		c.m.putCall(cl)
		if bad {
			return fmt.Errorf("dlock: update locks: malformed reply: %w", ErrBadResponse)
		}
		if st != Success {
			return fmt.Errorf("dlock: update locks: %w", st)
		}
		c.mu.Lock()
		for i, l := range batch {
			id := rep.IDs[i]
			if id <= 0 {
				continue
			}
			if id != l.e.id {
				if c.locks[l.e.id] == l {
					delete(c.locks, l.e.id)
				}
				l.e.id = id
				c.locks[id] = l
			}
			l.pending = false
			l.confirmed = true
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, l := range all {
		if l.pending {
			return fmt.Errorf("dlock: update locks: some locks are not confirmed yet: %w", ErrAgain)
		}
	}
	return nil
}

// ReinitDone tells the server this client finished re-registering
// (client_reinit_done); a new primary becomes ready when every expected
// client has.
func (c *Client) ReinitDone(ctx context.Context) error {
	err := c.control(ctx, "reinit done", wire.TReinitDone, nil)
	if err != nil && !errors.As(err, new(Status)) {
		return err // transport: the server may not have seen it
	}
	locks := c.lockList()
	c.mu.Lock()
	for _, l := range locks {
		l.confirmed = false
	}
	c.mu.Unlock()
	return err
}

// lockList snapshots the client's lock handles.
func (c *Client) lockList() []*Lock {
	c.mu.Lock()
	defer c.mu.Unlock()
	ls := make([]*Lock, 0, len(c.locks))
	for _, l := range c.locks {
		ls = append(ls, l)
	}
	return ls
}

// Revalidate asks the server, for every lock the client believes it holds,
// whether it really does — held, not expired — and resets the handles of
// the ones it does not. Call it once a recovered server is ready (it
// answers ErrNotReady before). Unlike Extend, an expired hold that nobody
// took yet is reported lost: a lease that ran out during an outage is never
// silently kept. Lost also lists the holds that Reinit found lost while
// resolving requests whose reply the old connection lost.
func (c *Client) Revalidate(ctx context.Context) (kept, lost []*Lock, err error) {
	for _, l := range c.lockList() {
		c.mu.Lock()
		held, id, token := l.e.held(), l.e.id, l.e.token
		c.mu.Unlock()
		if !held {
			continue
		}
		st, err := c.queryHold(ctx, id)
		if err != nil {
			return kept, lost, fmt.Errorf("dlock: revalidate %s: %w", quote(l.name), err)
		}
		switch st {
		case Success, ErrMoved: // (moved: see resolveLock)
			kept = append(kept, l)
		case ErrFail, ErrLockNotGet:
			// Only the hold the server was asked about is gone. The
			// lock's operations go on meanwhile (nothing here holds
			// l.mu): one may have ended that hold and taken a new one,
			// with a new token, which must not be reset.
			c.mu.Lock()
			same := l.e.held() && l.e.token == token
			if same {
				l.e.reset()
			}
			c.mu.Unlock()
			if same {
				lost = append(lost, l)
			}
		default:
			return kept, lost, fmt.Errorf("dlock: revalidate %s: %w", quote(l.name), st)
		}
	}
	// Holds found lost while resolving requests of unknown outcome (see
	// Reinit) are reported here too.
	c.mu.Lock()
	lost = append(lost, c.resolvedLost...)
	c.resolvedLost = nil
	c.mu.Unlock()
	return kept, lost, nil
}

// startRecovery launches the automatic recovery goroutine unless one runs.
func (c *Client) startRecovery() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recoveryRunning || c.closing || c.swapping {
		return
	}
	c.recoveryRunning = true
	c.recoverWG.Add(1)
	go c.recoverLoop()
}

// recoverLoop redials with jittered exponential backoff until a recovery
// succeeds, the server removed this client, or Close. A server that
// refuses the client (a status other than not-ready) is reported — logged,
// and passed to OnRecover with Retrying set — once per run of refusals, and
// tried again.
func (c *Client) recoverLoop() {
	defer c.recoverWG.Done()
	defer func() {
		c.mu.Lock()
		c.recoveryRunning = false
		c.mu.Unlock()
	}()
	backoff := 50 * time.Millisecond
	lostAt := time.Now()
	var refused error
	for {
		failover := false // a standby answered: a new primary is coming
		for _, addr := range c.addrs() {
			rep, err := c.recoverOnce(c.ctx, addr)
			if c.ctx.Err() != nil {
				return
			}
			failover = failover || errors.Is(err, ErrNotReady)
			if err == nil || errors.Is(err, ErrClientRemovedByServer) {
				if err != nil {
					rep = RecoveryReport{Addr: addr, Err: err}
					locks := c.lockList()
					c.mu.Lock()
					for _, l := range locks {
						if l.e.held() {
							l.e.reset()
							rep.Lost = append(rep.Lost, l)
						}
					}
					c.mu.Unlock()
				}
				c.cfg.Logger.Info("dlock: recovered", "addr", addr, "kept", len(rep.Kept), "lost", len(rep.Lost), "err", err)
				if c.cfg.OnRecover != nil {
					c.cfg.OnRecover(rep)
				}
				return
			}
			var st Status
			if errors.As(err, &st) && st != ErrNotReady {
				if refused == nil || refused.Error() != err.Error() {
					c.cfg.Logger.Warn("dlock: recovery refused by the server; retrying", "addr", addr, "err", err)
					if c.cfg.OnRecover != nil {
						c.cfg.OnRecover(RecoveryReport{Addr: addr, Err: err, Retrying: true})
					}
				}
				refused = err
			} else {
				refused = nil
				c.cfg.Logger.Debug("dlock: recovery attempt failed", "addr", addr, "err", err)
			}
		}
		c.mu.Lock()
		if c.reinitAt.After(lostAt) {
			// A server took this client back since (a new primary that
			// then died in its recovery): the next one waits for the
			// client from later than that.
			lostAt = c.reinitAt
		}
		c.mu.Unlock()
		if st := c.cfg.SessionTimeout; st > 0 && time.Since(lostAt) > st {
			// Past the session timeout the holds may be granted to others
			// (a new primary stops waiting for this client): report them
			// lost rather than keep them silently. The client is done.
			c.expire()
			return
		}
		if failover {
			backoff = 50 * time.Millisecond
		}
		sleep := backoff/2 + rand.N(backoff)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(sleep):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// ErrSessionExpired is the RecoveryReport.Err of a client whose automatic
// recovery reached no serving server within Config.SessionTimeout: its holds
// are reported lost and the client is unusable (dial a new one).
var ErrSessionExpired = errors.New("dlock: no server reached within the session timeout; holds lost")

// expire ends automatic recovery after the session timeout: every hold is
// reset and reported lost.
func (c *Client) expire() {
	rep := RecoveryReport{Err: ErrSessionExpired}
	locks := c.lockList()
	c.mu.Lock()
	for _, l := range locks {
		if l.e.held() {
			l.e.reset()
			rep.Lost = append(rep.Lost, l)
		}
	}
	c.mu.Unlock()
	c.cfg.Logger.Warn("dlock: session expired before recovery", "lost", len(rep.Lost))
	if c.cfg.OnRecover != nil {
		c.cfg.OnRecover(rep)
	}
}

// recoverOnce runs reinit → update → done → wait until the server is ready
// → revalidate against addr.
func (c *Client) recoverOnce(ctx context.Context, addr string) (RecoveryReport, error) {
	rep := RecoveryReport{Addr: addr}
	if err := c.Reinit(ctx, addr); err != nil {
		return rep, err
	}
	c.mu.Lock()
	rep.NewPrimary = c.newPrimary
	if rep.NewPrimary {
		rep.LostObjects = append([]*Atomic64(nil), c.lostObjects...)
	}
	c.mu.Unlock()
	if rep.NewPrimary {
		for {
			err := c.UpdateAllLocks(ctx)
			if err == nil {
				break
			}
			if !errors.Is(err, ErrAgain) {
				return rep, err
			}
			if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
				return rep, err
			}
		}
	}
	if err := c.ReinitDone(ctx); err != nil {
		return rep, err
	}
	// Other clients may still be recovering: the report comes only once
	// the server is ready (it answers heartbeats then).
	for {
		err := c.Heartbeat(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNotReady) {
			return rep, err
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return rep, err
		}
	}
	for {
		kept, lost, err := c.Revalidate(ctx)
		if err == nil {
			rep.Kept, rep.Lost = kept, lost
			break
		}
		if !errors.Is(err, ErrNotReady) {
			return rep, err
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// addrs returns the members automatic recovery tries.
func (c *Client) addrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg.Addrs
}

// setAddrs replaces the members automatic recovery tries (a Router's shard
// Client, when the shard's members change).
func (c *Client) setAddrs(addrs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg.Addrs = append([]string(nil), addrs...)
}

// connFailed starts automatic recovery, if configured, once the
// connection has failed.
func (c *Client) connFailed(error) {
	c.mu.Lock()
	recover := !c.closing && !c.swapping && c.cfg.AutoRecover
	c.mu.Unlock()
	if recover {
		c.startRecovery()
	}
}
