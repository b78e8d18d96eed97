package lockcore

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/dlock-io/dlock"
)

// The exhaustive checker drives one lock with model clients that follow the
// client library's request mapping (SEMANTICS.md §6.2): a client caches the
// last value the server gave it, turns a "lock" into a trylock, ticket trylock
// or reentrant extend according to its local state, abandons a FAIR ticket
// locally on unlock, and may also block (Acquire), give up (Cancel, keeping or
// abandoning its ticket) or vanish (Drop). Every sequence of operations up to
// a depth is replayed; after every step the invariants are checked.

type mstate uint8

const (
	mIdle mstate = iota
	mExLocked
	mShLocked
	mExTicket
	mShTicket
)

type mclient struct {
	id      int32
	state   mstate
	cache   dlock.LockState
	lease   uint32 // expiry of the client's own hold (ATOMIC, FAIR)
	waitTag uint64 // queued blocking request, 0 if none
	waitSh  bool
	tx, ts  uint16 // FAIR ticket (ticketed or waiting)
	hasTkt  bool
	seq     int // issue order of the ticket
	wseq    int // queue order of the blocking request
}

type world struct {
	l       *Lock
	tokens  *Tokens
	now     uint32
	cl      []mclient
	lastTok uint64
	nextTag uint64
	seq     int
	trace   []traceEntry
}

// traceEntry is one line of a failure trace, formatted only on failure.
type traceEntry struct {
	kind   uint8 // 0 op, 1 tick, 2 exec, 3 acquire, 4 woke
	c      int32
	op     int
	cmd    dlock.Cmd
	status dlock.Status
	a, b   uint64
	q      bool
}

func (e traceEntry) String() string {
	switch e.kind {
	case 0:
		return fmt.Sprintf("t=%d c%d %s", e.a, e.c, opNames[e.op])
	case 1:
		return fmt.Sprintf("tick → %d", e.a)
	case 2:
		return fmt.Sprintf("    %v → %v tok=%d", e.cmd, e.status, e.b)
	case 3:
		return fmt.Sprintf("    acquire tag=%d → queued=%v %v tok=%d", e.a, e.q, e.status, e.b)
	}
	return fmt.Sprintf("    woke c%d tag=%d %v tok=%d", e.c, e.a, e.status, e.b)
}

const (
	opLockEx = iota
	opLockSh
	opUnlock
	opAcquireEx
	opAcquireSh
	opCancelKeep
	opCancelDrop
	opDrop
	numClientOps
)

var opNames = [...]string{"lock-ex", "lock-sh", "unlock", "acquire-ex", "acquire-sh", "cancel-keep", "cancel", "drop"}

const testExpire = 1 // lease of every request: expiry and grabs are reachable with one tick

func newWorld(typ dlock.LockType, clients int) *world {
	w := &world{tokens: new(Tokens), now: 1000}
	w.l = NewLock(typ, w.tokens)
	for i := range clients {
		w.cl = append(w.cl, mclient{id: int32(i + 1)})
	}
	return w
}

// clone deep-copies the world (the lock's slices included).
func (w *world) clone() *world {
	c := *w
	l := *w.l
	l.shared = slices.Clone(w.l.shared)
	l.ghosts = slices.Clone(w.l.ghosts)
	l.q.buf = slices.Clone(w.l.q.buf)
	tk := new(Tokens)
	tk.Raise(w.tokens.Last())
	l.tokens = tk
	c.tokens = tk
	c.l = &l
	c.cl = slices.Clone(w.cl)
	c.trace = slices.Clip(w.trace)
	return &c
}

func (w *world) fail(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s\ntrace:\n  %s\nlock: %+v holders=%d/%v waiters=%d ghosts=%v\nclients: %+v",
		fmt.Sprintf(format, args...), traceString(w.trace), w.decode(w.l.State()),
		w.l.owner, w.l.shared, w.l.q.len(), w.l.ghosts, w.cl)
}

func traceString(tr []traceEntry) string {
	var b strings.Builder
	for i, e := range tr {
		if i > 0 {
			b.WriteString("\n  ")
		}
		b.WriteString(e.String())
	}
	return b.String()
}

func (w *world) decode(s dlock.LockState) any {
	switch w.l.typ {
	case dlock.Atomic:
		return s.Atomic()
	case dlock.RW:
		return s.RW()
	}
	return s.Fair()
}

// applicable reports whether client op makes the client send something.
func (w *world) applicable(c *mclient, op int) bool {
	typ := w.l.typ
	waiting := c.waitTag != 0
	switch op {
	case opLockEx, opLockSh:
		if waiting {
			return false
		}
		sh := op == opLockSh
		switch typ {
		case dlock.Atomic:
			return !sh
		case dlock.RW:
			return c.state == mIdle
		}
		switch c.state {
		case mIdle:
			return true
		case mExLocked, mExTicket:
			return !sh
		default:
			return sh
		}
	case opUnlock:
		return !waiting && c.state != mIdle
	case opAcquireEx, opAcquireSh:
		if waiting || (typ == dlock.Atomic && op == opAcquireSh) {
			return false
		}
		switch c.state {
		case mIdle:
			return true
		case mExTicket:
			return op == opAcquireEx
		case mShTicket:
			return op == opAcquireSh
		}
		return false
	case opCancelKeep:
		return waiting && typ == dlock.Fair
	case opCancelDrop:
		return waiting
	case opDrop:
		return c.state != mIdle || waiting
	}
	return false
}

func (w *world) step(t testing.TB, ci, op int) {
	t.Helper()
	c := &w.cl[ci]
	w.trace = append(w.trace, traceEntry{kind: 0, a: uint64(w.now), c: c.id, op: op})
	alive, grabs := w.alive(), w.l.grabs
	defer w.checkSkips(t, alive, grabs)
	var wake []Grant
	switch op {
	case opLockEx, opLockSh:
		wake = w.lockOp(t, c, op == opLockSh)
	case opUnlock:
		wake = w.unlockOp(t, c)
	case opAcquireEx, opAcquireSh:
		wake = w.acquireOp(t, c, op == opAcquireSh)
	case opCancelKeep, opCancelDrop:
		keep := op == opCancelKeep
		r, found, wk := w.l.Cancel(w.now, c.waitTag, keep, nil)
		wake = wk
		if found {
			c.waitTag = 0
			switch {
			case keep:
				if r.Status != dlock.ErrAgain {
					w.fail(t, "cancel keep: %v", r.Status)
				}
				tk := r.State.Fair()
				if tk.Mx != c.tx || tk.Ms != c.ts {
					w.fail(t, "kept ticket %d/%d, want %d/%d", tk.Mx, tk.Ms, c.tx, c.ts)
				}
				c.cache = r.State
				c.state = mExTicket
				if c.waitSh {
					c.state = mShTicket
				}
			case r.Status != dlock.ErrTimeout:
				w.fail(t, "cancel: %v", r.Status)
			default:
				c.hasTkt = false
			}
		}
	case opDrop:
		wake = w.l.Drop(w.now, c.id, nil)
		*c = mclient{id: c.id}
	}
	w.applyWake(t, wake)
	w.check(t)
}

// alive returns a bit set of the clients whose pending FAIR ticket could
// still be granted.
func (w *world) alive() (set uint64) {
	if w.l.typ != dlock.Fair {
		return 0
	}
	f := w.l.fairState()
	for i := range w.cl {
		c := &w.cl[i]
		if c.pending() && ticketAlive(f, c.tx, c.ts, sharedTicket(c)) {
			set |= 1 << i
		}
	}
	return set
}

// checkSkips asserts that a ticket alive before a step and still pending
// after it was passed only by a timeout grab.
func (w *world) checkSkips(t testing.TB, before uint64, grabs uint64) {
	t.Helper()
	if w.l.grabs != grabs {
		return
	}
	after := w.alive()
	for i := range w.cl {
		if before&(1<<i) != 0 && after&(1<<i) == 0 && w.cl[i].pending() {
			w.fail(t, "c%d's ticket %d/%d was passed without a timeout grab", w.cl[i].id, w.cl[i].tx, w.cl[i].ts)
		}
	}
}

func (w *world) tick(t testing.TB, d uint32) {
	t.Helper()
	w.now += d
	w.trace = append(w.trace, traceEntry{kind: 1, a: uint64(w.now)})
	alive, grabs := w.alive(), w.l.grabs
	defer w.checkSkips(t, alive, grabs)
	w.applyWake(t, w.l.Advance(w.now, nil))
	w.check(t)
}

func (w *world) exec(t testing.TB, c *mclient, cmd dlock.Cmd, arg dlock.LockState) (Reply, []Grant) {
	t.Helper()
	var st dlock.Stats
	r, wake := w.l.Exec(w.now, c.id, cmd, arg, &st, nil)
	w.trace = append(w.trace, traceEntry{kind: 2, cmd: cmd, status: r.Status, b: r.Token})
	if r.Status == dlock.ErrInval {
		w.fail(t, "model sent an invalid command %v", cmd)
	}
	return r, wake
}

func (w *world) payload(c *mclient, shared bool) dlock.LockState {
	switch w.l.typ {
	case dlock.Atomic:
		return dlock.AtomicState{Owner: c.id, Timeout: testExpire}.State()
	case dlock.RW:
		id := c.id
		if shared {
			id = 0
		}
		return dlock.RWState{Owner: id, Timeout: testExpire}.State()
	}
	f := c.cache.Fair()
	f.Timeout = testExpire
	return f.State()
}

func (w *world) lockOp(t testing.TB, c *mclient, shared bool) []Grant {
	t.Helper()
	arg := w.payload(c, shared)
	typ := w.l.typ
	var cmd dlock.Cmd
	switch c.state {
	case mIdle:
		cmd = dlock.CmdExclusiveTrylock
		if shared {
			cmd = dlock.CmdSharedTrylock
		}
	case mExLocked:
		cmd = dlock.CmdExclusiveExtend
	case mShLocked:
		cmd = dlock.CmdSharedExtend
	case mExTicket:
		cmd = dlock.CmdExclusiveTicketTrylock
	case mShTicket:
		cmd = dlock.CmdSharedTicketTrylock
	}
	before := w.l.fairState()
	r, wake := w.exec(t, c, cmd, arg)
	switch {
	case cmd == dlock.CmdExclusiveExtend || cmd == dlock.CmdSharedExtend:
		if r.Status == dlock.Success {
			if tt := expireAt(w.now, testExpire); tt > c.lease {
				c.lease = tt
			}
			c.cache = r.State
		} else {
			*c = mclient{id: c.id}
		}
	case r.Status == dlock.Success:
		w.granted(t, c, shared, r)
	case r.Status == dlock.ErrAgain && c.state == mIdle:
		if typ != dlock.Fair {
			w.fail(t, "EAGAIN on %v", typ)
		}
		c.cache = r.State
		c.state = mExTicket
		c.tx, c.ts = before.Mx, before.Ms
		if shared {
			c.state = mShTicket
		}
		tk := r.State.Fair()
		if tk.Mx != c.tx || tk.Ms != c.ts || tk.Timeout != w.now {
			w.fail(t, "ticket reply %+v, want tx=%d ts=%d", tk, c.tx, c.ts)
		}
		c.hasTkt = true
		w.seq++
		c.seq = w.seq
	case r.Status == dlock.ErrAgain:
		// still queued
	case r.Status == dlock.ErrFail:
		*c = mclient{id: c.id}
	default:
		w.fail(t, "unexpected %v", r.Status)
	}
	return wake
}

func (w *world) unlockOp(t testing.TB, c *mclient) []Grant {
	t.Helper()
	var cmd dlock.Cmd
	switch c.state {
	case mExTicket, mShTicket:
		// local abandon, nothing sent
		*c = mclient{id: c.id}
		return nil
	case mExLocked:
		cmd = dlock.CmdExclusiveUnlock
	default:
		cmd = dlock.CmdSharedUnlock
	}
	arg := w.payload(c, c.state == mShLocked)
	r, wake := w.exec(t, c, cmd, arg)
	if r.Token != 0 {
		w.fail(t, "unlock with a token")
	}
	*c = mclient{id: c.id}
	return wake
}

func (w *world) acquireOp(t testing.TB, c *mclient, shared bool) []Grant {
	t.Helper()
	w.nextTag++
	wt := Waiter{Tag: w.nextTag, Client: c.id, Expire: testExpire}
	if shared {
		wt.Mode = dlock.Shared
	}
	before := w.l.fairState()
	if c.state == mExTicket || c.state == mShTicket {
		wt.HasTicket = true
		wt.Ticket = c.cache.Fair()
	}
	r, queued, wake := w.l.Acquire(w.now, wt, nil, nil)
	w.trace = append(w.trace, traceEntry{kind: 3, a: wt.Tag, q: queued, status: r.Status, b: r.Token})
	if w.l.typ == dlock.Fair && !wt.HasTicket && (queued || r.Status == dlock.Success) {
		c.tx, c.ts = before.Mx, before.Ms
		c.hasTkt = true
		w.seq++
		c.seq = w.seq
	}
	switch {
	case queued:
		c.waitTag = wt.Tag
		c.waitSh = shared
		c.state = mIdle
		w.seq++
		c.wseq = w.seq
	case r.Status == dlock.Success:
		w.seq++
		c.wseq = w.seq
		w.granted(t, c, shared, r)
		w.fifo(t, c)
	case r.Status == dlock.ErrFail:
		*c = mclient{id: c.id}
	default:
		w.fail(t, "acquire: %v", r.Status)
	}
	return wake
}

func (w *world) applyWake(t testing.TB, wake []Grant) {
	t.Helper()
	for _, g := range wake {
		i := slices.IndexFunc(w.cl, func(c mclient) bool { return c.id == g.Client && c.waitTag == g.Tag })
		if i < 0 {
			w.fail(t, "grant for unknown waiter %+v", g)
		}
		c := &w.cl[i]
		w.trace = append(w.trace, traceEntry{kind: 4, c: c.id, a: g.Tag, status: g.Reply.Status, b: g.Reply.Token})
		c.waitTag = 0
		switch g.Reply.Status {
		case dlock.Success:
			w.granted(t, c, c.waitSh, g.Reply)
			w.fifo(t, c)
		case dlock.ErrFail:
			*c = mclient{id: c.id}
		default:
			w.fail(t, "grant status %v", g.Reply.Status)
		}
	}
}

// granted records a successful grant to c and checks the token and (FAIR)
// the ticket order.
func (w *world) granted(t testing.TB, c *mclient, shared bool, r Reply) {
	t.Helper()
	if r.Token <= w.lastTok {
		w.fail(t, "token %d not above %d", r.Token, w.lastTok)
	}
	w.lastTok = r.Token
	if w.l.typ == dlock.Fair && c.hasTkt {
		f := w.l.fairState()
		for j := range w.cl {
			o := &w.cl[j]
			if o.id == c.id || !o.hasTkt || o.seq > c.seq || (shared && o.waitSh && o.pending() && sharedTicket(o)) {
				continue
			}
			if !o.pending() {
				continue
			}
			if ticketAlive(f, o.tx, o.ts, sharedTicket(o)) && !(shared && sharedTicket(o)) {
				w.fail(t, "c%d granted ticket %d/%d (seq %d) before c%d's earlier ticket %d/%d (seq %d)",
					c.id, c.tx, c.ts, c.seq, o.id, o.tx, o.ts, o.seq)
			}
		}
	}
	c.hasTkt = false
	c.cache = r.State
	c.state = mExLocked
	if shared {
		c.state = mShLocked
	}
	c.lease = expireAt(w.now, testExpire)
}

// fifo checks, for ATOMIC and RW, that the blocking request of c was not
// granted ahead of an earlier one that is still queued.
func (w *world) fifo(t testing.TB, c *mclient) {
	t.Helper()
	if w.l.typ == dlock.Fair {
		return
	}
	for i := range w.cl {
		o := &w.cl[i]
		if o.waitTag != 0 && o.wseq < c.wseq {
			w.fail(t, "c%d's blocking request granted before c%d's earlier one", c.id, o.id)
		}
	}
}

func (c *mclient) pending() bool {
	return c.hasTkt && (c.waitTag != 0 || c.state == mExTicket || c.state == mShTicket)
}

func sharedTicket(c *mclient) bool {
	if c.waitTag != 0 {
		return c.waitSh
	}
	return c.state == mShTicket
}

// ticketAlive reports whether ticket (tx, ts) could still be granted.
func ticketAlive(f dlock.FairState, tx, ts uint16, shared bool) bool {
	if shared {
		return !passed(tx, f.Nx) && !(f.RFlag && passed(ts, f.RMs))
	}
	return !passed(tx, f.Nx) && !passed(ts, f.Ns)
}

// check asserts the invariants after a step.
func (w *world) check(t testing.TB) {
	t.Helper()
	l := w.l
	typ := l.typ
	// Model view: holders whose own lease is valid (RW: no lease).
	var ex, sh []int32
	for i := range w.cl {
		c := &w.cl[i]
		valid := typ == dlock.RW || w.now <= c.lease
		if !valid {
			continue
		}
		switch c.state {
		case mExLocked:
			ex = append(ex, c.id)
		case mShLocked:
			sh = append(sh, c.id)
		}
	}
	if len(ex) > 1 {
		w.fail(t, "two exclusive holders %v", ex)
	}
	if len(ex) == 1 && len(sh) > 0 {
		w.fail(t, "writer %v beside readers %v", ex, sh)
	}
	// Server view agrees with the model for live holds.
	for _, id := range ex {
		if l.owner != id {
			w.fail(t, "c%d believes it holds exclusive, server owner %d", id, l.owner)
		}
	}
	for _, id := range sh {
		if !l.isShared(id) {
			w.fail(t, "c%d believes it holds shared, server holders %v", id, l.shared)
		}
	}
	// Every hold the server tracks belongs to a client that still believes it
	// holds the lock (its lease may have run out).
	inState := func(id int32, st mstate) bool {
		return slices.ContainsFunc(w.cl, func(c mclient) bool { return c.id == id && c.state == st })
	}
	if l.owner != 0 && !inState(l.owner, mExLocked) {
		w.fail(t, "server owner c%d does not hold the lock", l.owner)
	}
	for _, id := range l.shared {
		if !inState(id, mShLocked) {
			w.fail(t, "server shared holder c%d does not hold the lock", id)
		}
	}
	switch typ {
	case dlock.Atomic:
		if len(l.shared) != 0 || (l.owner == 0 && l.timeout != 0) {
			w.fail(t, "atomic bookkeeping")
		}
	case dlock.RW:
		if int(l.rcount) != len(l.shared) || (l.owner != 0 && l.rcount != 0) {
			w.fail(t, "rw holders: owner %d rcount %d shared %v", l.owner, l.rcount, l.shared)
		}
		// RW never loses a hold: server holders are exactly the model's.
		if len(sh) != len(l.shared) {
			w.fail(t, "rw shared holders %v, model %v", l.shared, sh)
		}
	case dlock.Fair:
		f := l.f
		if int(f.rcnt) != len(l.shared) || f.rcnt > dlock.MaxFairShared || (l.owner != 0 && f.rcnt != 0) {
			w.fail(t, "fair holders: owner %d rcnt %d shared %v", l.owner, f.rcnt, l.shared)
		}
		if passed(f.mx, f.nx) || passed(f.ms, f.ns) {
			w.fail(t, "fair counters ran ahead: %+v", l.fairState())
		}
	}
	// No waiter stays queued while it could go.
	if at, ok := l.NextEvent(); ok && at <= w.now {
		w.fail(t, "event at %d already due at %d", at, w.now)
	}
	if typ != dlock.Fair && l.q.len() > 0 {
		h := l.q.at(0)
		if (typ == dlock.Atomic && l.atomicFree(w.now)) || (typ == dlock.RW && l.rwCanGrant(h.Mode)) {
			w.fail(t, "head waiter could go")
		}
	}
}

// key encodes everything in w that can influence later steps and checks,
// with tags and issue sequences replaced by client ids and ranks, so that
// sequences reaching the same situation are explored once.
func (w *world) key(buf []byte) []byte {
	l := w.l
	buf = binary.LittleEndian.AppendUint32(buf, w.now)
	st := l.State()
	buf = append(buf, st[:]...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(l.owner))
	for _, id := range sortedIDs(l.shared) {
		buf = append(buf, byte(id))
	}
	buf = append(buf, 0xFF)
	for i := range l.q.len() {
		q := l.q.at(i)
		buf = append(buf, byte(q.Client), byte(q.Mode))
		buf = binary.LittleEndian.AppendUint16(buf, q.tx)
		buf = binary.LittleEndian.AppendUint16(buf, q.ts)
		buf = binary.LittleEndian.AppendUint32(buf, q.obtained)
	}
	buf = append(buf, 0xFF)
	for _, g := range l.ghosts {
		buf = binary.LittleEndian.AppendUint16(buf, g.tx)
		buf = binary.LittleEndian.AppendUint16(buf, g.ts)
		if g.shared {
			buf = append(buf, 1)
		} else {
			buf = append(buf, 0)
		}
	}
	buf = append(buf, 0xFF)
	rank := func(v int, get func(*mclient) int) byte {
		r := byte(0)
		for i := range w.cl {
			if get(&w.cl[i]) < v {
				r++
			}
		}
		return r
	}
	for i := range w.cl {
		c := &w.cl[i]
		buf = append(buf, byte(c.state), b2i(c.waitTag != 0), b2i(c.waitSh), b2i(c.hasTkt),
			rank(c.seq, func(o *mclient) int { return o.seq }),
			rank(c.wseq, func(o *mclient) int { return o.wseq }))
		buf = append(buf, c.cache[:]...)
		buf = binary.LittleEndian.AppendUint32(buf, c.lease)
		buf = binary.LittleEndian.AppendUint16(buf, c.tx)
		buf = binary.LittleEndian.AppendUint16(buf, c.ts)
	}
	return buf
}

func b2i(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// exhaust replays every sequence of client operations and clock ticks up to
// depth from a fresh lock, skipping a situation already explored with at
// least as many steps left. It returns the number of distinct situations.
func exhaust(t *testing.T, typ dlock.LockType, clients, depth int) int {
	seen := map[string]int{}
	var buf []byte
	var rec func(w *world, d int)
	rec = func(w *world, d int) {
		buf = w.key(buf[:0])
		if left, ok := seen[string(buf)]; ok && left >= d {
			return
		}
		seen[string(buf)] = d
		if d == 0 {
			return
		}
		for ci := range w.cl {
			for op := range numClientOps {
				if !w.applicable(&w.cl[ci], op) {
					continue
				}
				nw := w.clone()
				nw.step(t, ci, op)
				rec(nw, d-1)
			}
		}
		if typ == dlock.RW {
			return // nothing expires: the clock does not matter
		}
		for _, dt := range []uint32{1, 2} {
			nw := w.clone()
			nw.tick(t, dt)
			rec(nw, d-1)
		}
	}
	rec(newWorld(typ, clients), depth)
	return len(seen)
}

func TestExhaustive(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		typ              dlock.LockType
		clients          int
		depth, shortDeps int
	}{
		{dlock.Atomic, 2, 10, 6},
		{dlock.Atomic, 3, 7, 5},
		{dlock.RW, 2, 12, 6},
		{dlock.RW, 3, 9, 6},
		{dlock.Fair, 2, 6, 5},
		{dlock.Fair, 3, 5, 4},
	} {
		depth := tc.depth
		if testing.Short() {
			depth = tc.shortDeps
		}
		t.Run(fmt.Sprintf("%v/%dclients/depth%d", tc.typ, tc.clients, depth), func(t *testing.T) {
			t.Parallel()
			n := exhaust(t, tc.typ, tc.clients, depth)
			t.Logf("%d distinct situations", n)
		})
	}
}

// TestRandomWalks runs long random sequences (3 clients) through the same
// model and invariants.
func TestRandomWalks(t *testing.T) {
	steps := 20000
	if testing.Short() {
		steps = 2000
	}
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair} {
		for seed := range uint64(4) {
			rng := rand.New(rand.NewPCG(seed, uint64(typ)))
			w := newWorld(typ, 3)
			for i := range steps {
				if i%64 == 0 {
					w.trace = w.trace[:0] // keep failure traces short
				}
				if rng.IntN(8) == 0 {
					w.tick(t, uint32(rng.IntN(3)))
					continue
				}
				ci, op := rng.IntN(len(w.cl)), rng.IntN(numClientOps)
				if w.applicable(&w.cl[ci], op) {
					w.step(t, ci, op)
				}
			}
		}
	}
}
