package dlockserver

import (
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// This file keeps what operators observe (metrics, lock introspection)
// beside the lock state: operation counts, wait and hold times, the start
// and fencing token of each hold, and per-lock contention. Each stripe
// (state.go) keeps these for its own locks, updated under its mutex with
// fixed-size arrays or map entries that are reused, so the lock hot path
// allocates nothing for it; Observe adds the stripes up.

// HistogramBounds are the upper bounds, in seconds, of the buckets of the
// wait and hold time histograms.
var HistogramBounds = [...]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// Histogram is a snapshot of a histogram: Counts[i] observations fell at or
// below HistogramBounds[i] (cumulative); Count is the total, +Inf included.
type Histogram struct {
	Counts [len(HistogramBounds)]uint64
	Count  uint64
	Sum    float64 // seconds
}

type histogram struct {
	counts [len(HistogramBounds)]uint64 // per bucket, not cumulative
	count  uint64
	sum    float64
}

func (h *histogram) observe(sec float64) {
	for i, b := range HistogramBounds {
		if sec <= b {
			h.counts[i]++
			break
		}
	}
	h.count++
	h.sum += sec
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Count: h.count, Sum: h.sum}
	var cum uint64
	for i, n := range h.counts {
		cum += n
		out.Counts[i] = cum
	}
	return out
}

// Operation kinds counted by OpCounts: the eight lock commands, then the
// atomic64 operations.
const (
	OpFetchAndAdd = int(dlock.CmdMax) + iota
	OpCompareAndSwap
	OpLoad
	NumOpKinds
)

// OpKindName returns the name of operation kind k for metrics labels.
func OpKindName(k int) string {
	switch {
	case k < int(dlock.CmdMax):
		return dlock.Cmd(k).String()
	case k == OpFetchAndAdd:
		return "ATOMIC64_FAA"
	case k == OpCompareAndSwap:
		return "ATOMIC64_CAS"
	case k == OpLoad:
		return "ATOMIC64_LOAD"
	}
	return "unknown"
}

// OpStatuses are the statuses OpCounts distinguishes; every other status is
// counted in the last slot (OpStatusOther).
var OpStatuses = [...]dlock.Status{dlock.Success, dlock.ErrAgain, dlock.ErrTimeout, dlock.ErrInval,
	dlock.ErrTicket, dlock.ErrLockNotGet, dlock.ErrAlreadyLocked, dlock.ErrAlreadyUnlocked,
	dlock.ErrTicketToUnlock, dlock.ErrFail, dlock.ErrNotReady, dlock.ErrGeneric,
	dlock.ErrObjectNotGet, dlock.ErrObjectCASFailed}

// OpStatusOther is the index of the "other statuses" slot of OpCounts.
const OpStatusOther = len(OpStatuses)

func statusSlot(st dlock.Status) int {
	for i, s := range OpStatuses {
		if s == st {
			return i
		}
	}
	return OpStatusOther
}

type holdKey struct{ lock, client int32 }

type holdRec struct {
	since  int64 // clock nanoseconds of the grant
	token  uint64
	active bool
}

// contentionWindow is how long one window of per-lock contention lasts;
// TopLocks reports the current and the previous window.
const contentionWindow = 10 * time.Second

type window struct {
	waits     uint64 // requests that had to queue
	handovers uint64 // grants to queued requests
	waitNs    int64  // time the granted requests waited
	maxDepth  int    // longest queue seen
}

type contention struct {
	name      string
	typ       dlock.LockType
	epoch     int64
	cur, prev window
}

// roll moves c to the window of epoch.
func (c *contention) roll(epoch int64) {
	switch {
	case epoch == c.epoch:
		return
	case epoch == c.epoch+1:
		c.prev = c.cur
	default:
		c.prev = window{}
	}
	c.cur = window{}
	c.epoch = epoch
}

// lockObs is what a stripe observes of the requests on its locks and
// objects. Server.Observe adds the stripes up.
type lockObs struct {
	ops       [NumOpKinds][OpStatusOther + 1]uint64
	wait      [3]histogram         // by lock type
	hold      [3]histogram         // by lock type
	holds     map[holdKey]*holdRec // entries are reused: a grant writes in place
	contended map[int32]*contention
}

// observer is what the server observes outside the stripes. Guarded by
// Server.mu.
type observer struct {
	forced uint64 // force-released holds
	admin  uint64 // admin requests served
}

// nanos returns the clock's reading at t in nanoseconds since it started.
func (c *clock) nanos(t time.Time) int64 { return int64(t.Sub(c.start)) }

// wall returns the wall-clock time of a nanos reading.
func (c *clock) wall(ns int64) time.Time { return c.start.Add(time.Duration(ns)).Round(0) }

// holding reports whether client holds l at second now (a lease that ran
// out does not count).
func holding(l *lockcore.Lock, client int32, now uint32) bool {
	if !l.HeldBy(client) {
		return false
	}
	switch l.Type() {
	case dlock.Atomic:
		return now <= l.State().Atomic().Timeout
	case dlock.Fair:
		return now <= l.State().Fair().Timeout
	}
	return true
}

// acquiring reports whether cmd takes a hold when it succeeds.
func acquiring(cmd dlock.Cmd) bool {
	switch cmd {
	case dlock.CmdExclusiveTrylock, dlock.CmdSharedTrylock, dlock.CmdExclusiveTicketTrylock, dlock.CmdSharedTicketTrylock:
		return true
	}
	return false
}

func releasing(cmd dlock.Cmd) bool {
	return cmd == dlock.CmdExclusiveUnlock || cmd == dlock.CmdSharedUnlock
}

// observeOp records the outcome r of cmd by client on lock id.
func (st *stripe) observeOp(id int32, l *lockcore.Lock, client int32, cmd dlock.Cmd, r *lockcore.Reply, at instant) {
	if int(cmd) < int(dlock.CmdMax) {
		st.obs.ops[cmd][statusSlot(r.Status)]++
	}
	if r.Status != dlock.Success {
		return
	}
	switch {
	case acquiring(cmd):
		// Every successful acquisition is a grant with a new token. An
		// exclusive one starts a hold (the server has no reentrant
		// exclusive grants: a record still active belongs to a hold whose
		// lease ran out); a shared one starts it unless the client holds
		// the lock shared already.
		st.beginHold(id, client, r.Token, at.ns, !cmd.Shared())
	case releasing(cmd):
		if !holding(l, client, at.sec) {
			st.endHold(id, l.Type(), client, at.ns)
		}
	}
}

// beginHold records that client was granted lock id at ns; unless
// restart, a hold already recorded is kept.
func (st *stripe) beginHold(id, client int32, token uint64, ns int64, restart bool) {
	k := holdKey{id, client}
	if h := st.obs.holds[k]; h != nil {
		if restart || !h.active {
			*h = holdRec{since: ns, token: token, active: true}
		}
		return
	}
	if st.obs.holds == nil {
		st.obs.holds = make(map[holdKey]*holdRec)
	}
	st.obs.holds[k] = &holdRec{since: ns, token: token, active: true}
}

// endHold records that client let go of lock id at ns. The entry stays (for
// the next grant) until the client releases the lock.
func (st *stripe) endHold(id int32, typ dlock.LockType, client int32, ns int64) {
	h := st.obs.holds[holdKey{id, client}]
	if h == nil || !h.active {
		return
	}
	if int(typ) < len(st.obs.hold) {
		st.obs.hold[typ].observe(float64(max(0, ns-h.since)) / 1e9) // see observeGrant
	}
	h.active = false
}

// forgetHold drops what is known of client's holds of lock id (it released
// the lock).
func (st *stripe) forgetHold(id, client int32) {
	delete(st.obs.holds, holdKey{id, client})
}

// observeQueued records that a blocking request on lock id had to wait.
func (st *stripe) observeQueued(id int32, l *lockcore.Lock, at instant) {
	c := st.contentionOf(id, l, at.ns)
	c.cur.waits++
	c.cur.maxDepth = max(c.cur.maxDepth, l.Waiters())
}

// contentionOf returns the contention record of lock id, rolled to the
// window of ns.
func (st *stripe) contentionOf(id int32, l *lockcore.Lock, ns int64) *contention {
	if st.obs.contended == nil {
		st.obs.contended = make(map[int32]*contention)
	}
	c := st.obs.contended[id]
	if c == nil || c.name != l.Descriptor() {
		c = &contention{name: l.Descriptor(), typ: l.Type()}
		st.obs.contended[id] = c
	}
	c.roll(ns / int64(contentionWindow))
	return c
}

// observeGrant records a blocking request of client answered with r after
// waiting since the clock reading since (ns is now).
func (st *stripe) observeGrant(w *waiter, r *lockcore.Reply, ns int64) {
	if r.Status != dlock.Success {
		return
	}
	l := st.s.locks.Lock(w.lockID)
	if l == nil {
		return
	}
	// A request reads the time before it takes its stripe, so the
	// request that grants may have read it before this one was queued.
	waited := max(0, ns-w.since)
	if t := l.Type(); int(t) < len(st.obs.wait) {
		st.obs.wait[t].observe(float64(waited) / 1e9)
	}
	st.beginHold(w.lockID, w.client, r.Token, ns, !w.shared)
	c := st.contentionOf(w.lockID, l, ns)
	c.cur.handovers++
	c.cur.waitNs += waited
}

// observeImmediate records a blocking request granted at once.
func (st *stripe) observeImmediate(id int32, l *lockcore.Lock, client int32, cmd dlock.Cmd, r *lockcore.Reply, at instant) {
	st.observeOp(id, l, client, cmd, r, at)
	if r.Status == dlock.Success {
		if t := l.Type(); int(t) < len(st.obs.wait) {
			st.obs.wait[t].observe(0)
		}
	}
}

// merge adds h to g.
func (g *histogram) merge(h *histogram) {
	for i, n := range h.counts {
		g.counts[i] += n
	}
	g.count += h.count
	g.sum += h.sum
}

// Observation is a snapshot of the server's state for metrics, taken under
// one lock.
type Observation struct {
	Ready           bool // serving (not recovering)
	Serving         bool // not shut down
	RecoveryPending int  // clients still expected by recovery

	Clients         int // registered clients
	AbnormalClients int // registered clients whose connection is lost
	Conns           int // open connections
	Handshakes      int // connections in the TLS handshake
	Objects         int

	// By lock type (dlock.Atomic, RW, Fair).
	Locks   [3]int // lock objects
	Held    [3]int // locks held (a lease that ran out does not count)
	Waiters [3]int // queued blocking requests

	Ops           [NumOpKinds][OpStatusOther + 1]uint64
	Wait, Hold    [3]Histogram
	ForceReleased uint64 // holds ended by a force-release
	AdminRequests uint64

	Counters dlock.Stats
}

// Observe returns a snapshot of the server for metrics. It walks every lock
// holding the server's mutex, so requests wait while it runs: in proportion
// to the number of locks, 5 to 8 ms at the limit of 51 200 on the 2-core
// development VM (BenchmarkObserveFull).
func (s *Server) Observe() Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.instant().sec
	o := Observation{
		Ready:           s.state == wire.StateReady,
		Serving:         !s.closed,
		RecoveryPending: s.recovery,
		Clients:         len(s.clients),
		Conns:           len(s.conns),
		Handshakes:      len(s.shaking),
		Objects:         s.objs.Len(),
		ForceReleased:   s.obs.forced,
		AdminRequests:   s.obs.admin,
		Counters:        s.statsLocked(),
	}
	for _, cl := range s.clients {
		if cl.conn == nil {
			o.AbnormalClients++
		}
	}
	var wait, hold [3]histogram
	for i := range s.stripes {
		st := &s.stripes[i]
		for k := range st.obs.ops {
			for j, n := range st.obs.ops[k] {
				o.Ops[k][j] += n
			}
		}
		for t := range wait {
			wait[t].merge(&st.obs.wait[t])
			hold[t].merge(&st.obs.hold[t])
		}
	}
	for i := range o.Wait {
		o.Wait[i] = wait[i].snapshot()
		o.Hold[i] = hold[i].snapshot()
	}
	var buf [dlock.MaxFairShared]int32
	s.locks.Range(func(_ int32, l *lockcore.Lock) bool {
		t := l.Type()
		if int(t) >= len(o.Locks) {
			return true
		}
		o.Locks[t]++
		o.Waiters[t] += l.Waiters()
		ex, shared := l.Holders(buf[:0])
		held := ex != 0 || len(shared) > 0
		switch t {
		case dlock.Atomic:
			held = held && now <= l.State().Atomic().Timeout
		case dlock.Fair:
			held = held && now <= l.State().Fair().Timeout
		}
		if held {
			o.Held[t]++
		}
		return true
	})
	return o
}

// Alive reports whether the server has not been shut down (a standby of a
// highly available cluster is alive too).
func (s *Server) Alive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed
}
