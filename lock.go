package dlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// LockOptions says what kind of lock OpenLock opens.
type LockOptions struct {
	// Type is Atomic, RW or Fair. The first client to open a name fixes its
	// type; opening it with another type fails.
	Type LockType
	// TTL is the lease of every hold of an Atomic or Fair lock (expire_time):
	// a holder that neither unlocks nor extends within it loses the lock. It
	// is rounded up to whole seconds. Default 10 s. RW locks have no lease.
	TTL time.Duration
	// LeaseTime is DLock's lock_desc.lease_time: stored and reported back
	// by the server, not enforced.
	LeaseTime uint32
}

// DefaultTTL is the lease of a hold when LockOptions.TTL is zero.
const DefaultTTL = 10 * time.Second

// MaxTTL is the longest lease: the protocol carries it in 32-bit seconds.
const MaxTTL = (1<<32 - 1) * time.Second

// checkTTL refuses a negative lease or one past MaxTTL.
func checkTTL(d time.Duration) error {
	switch {
	case d < 0:
		return fmt.Errorf("TTL %v is negative: %w", d, ErrInval)
	case d > MaxTTL:
		return fmt.Errorf("TTL %v is longer than MaxTTL (%v): %w", d, MaxTTL, ErrInval)
	}
	return nil
}

// quote quotes a lock or object name for an error message, shortened if
// long: an error need not carry a 512-byte name whole.
func quote(name string) string {
	const max = 64
	if len(name) > max {
		return strconv.Quote(name[:max-3]) + "..."
	}
	return strconv.Quote(name)
}

// checkName refuses an empty name or one longer than MaxDescLen.
func checkName(name string) error {
	switch {
	case len(name) == 0:
		return fmt.Errorf("empty name: %w", ErrInval)
	case len(name) > MaxDescLen:
		return fmt.Errorf("name of %d bytes is longer than MaxDescLen (%d): %w", len(name), MaxDescLen, ErrInval)
	}
	return nil
}

// checkOptions validates the options of OpenLock.
func checkOptions(opts LockOptions) error {
	if !opts.Type.Valid() {
		return fmt.Errorf("lock type %d is not Atomic, RW or Fair: %w", opts.Type, ErrInval)
	}
	return checkTTL(opts.TTL)
}

// Lock is a client's handle on one lock (get_lock). Its methods follow
// sync.RWMutex: Lock, RLock, TryLock, TryRLock, Unlock; plus Extend.
// After a successful acquisition, State reports the lock value the server
// returned and Token its fencing token.
type Lock struct {
	c    *Client
	name string
	ttl  uint32

	mu       sync.Mutex // serialises operations on this lock
	e        lockEntry  // guarded by c.smu while a step is applied
	last     LockState  // guarded by mu
	released bool
	opening  bool // guarded by mu: an open-and-lock's handle the server has not confirmed (openlock.go)

	// Recovery (guarded by c.smu): pending while uploaded to a new primary
	// and not yet confirmed; confirmed once it was, until ReinitDone.
	pending, confirmed bool
}

// OpenLock gets the lock called name, creating it on the server if needed
// (get_lock). Opening a name the client has open already returns the same
// handle.
func (c *Client) OpenLock(ctx context.Context, name string, opts LockOptions) (*Lock, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	if err := checkOptions(opts); err != nil {
		return nil, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	desc := []byte(name)
	m := wire.GetLock{Preferred: djb2(desc), Lease: opts.LeaseTime, Type: uint8(opts.Type), Desc: desc}
	cl, err := c.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, id, c.id) })
	if err != nil {
		return nil, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	defer c.putCall(cl)
	switch st := passThrough(cl.status); st {
	case Success:
	case ErrGeneric:
		return nil, fmt.Errorf("dlock: open %s as %v: the lock exists with another type: %w", quote(name), opts.Type, st)
	default:
		return nil, fmt.Errorf("dlock: open %s: %w", quote(name), st)
	}
	var rep wire.GetLockReply
	if rep.Decode(cl.body) != nil || rep.ID <= 0 {
		return nil, fmt.Errorf("dlock: open %s: malformed reply: %w", quote(name), ErrBadResponse)
	}
	return c.adoptLock(rep.ID, name, opts), nil
}

// adoptLock returns the handle for lock id, making one if needed.
func (c *Client) adoptLock(id int32, name string, opts LockOptions) *Lock {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.locks[id]; l != nil && l.name == name { // (another name: a stale open-and-lock guess)
		return l
	}
	l := &Lock{c: c, name: name, ttl: ttlSeconds(opts.TTL)}
	l.e = lockEntry{id: id, typ: opts.Type, lease: opts.LeaseTime, desc: []byte(name)}
	c.locks[id] = l
	return l
}

// ttlSeconds converts a lease checked by checkTTL to whole seconds, rounded
// up; zero means DefaultTTL.
func ttlSeconds(d time.Duration) uint32 {
	if d <= 0 {
		d = DefaultTTL
	}
	return uint32(min((d+time.Second-1)/time.Second, 0xFFFFFFFF))
}

// Name returns the lock's name.
func (l *Lock) Name() string { return l.name }

// ID returns the lock id the server assigned.
func (l *Lock) ID() int32 { return l.e.id }

// Type returns the lock's type.
func (l *Lock) Type() LockType { return l.e.typ }

// State returns the lock value the server reported with the last successful
// operation on this handle.
func (l *Lock) State() LockState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// Token returns the fencing token of the client's current hold, 0 if it
// holds nothing. Tokens strictly increase per lock: a resource guarded by the
// lock can refuse writes carrying a token lower than one it has seen.
func (l *Lock) Token() uint64 {
	l.c.smu.Lock()
	defer l.c.smu.Unlock()
	return l.e.token
}

// Held reports whether the client holds the lock (in either mode) as far as
// its cache knows.
func (l *Lock) Held() bool {
	l.c.smu.Lock()
	defer l.c.smu.Unlock()
	return l.e.held()
}

// TryLock tries to take the lock exclusively without waiting (trylock with
// LOCK_EXCLUSIVE). It reports false with a nil error when someone else holds
// it; for a Fair lock that means a ticket was taken and the next TryLock
// uses it (Unlock gives it up). Taking a lock the client holds already is a
// reentrant hold and reports true.
func (l *Lock) TryLock(ctx context.Context) (bool, error) {
	return l.try(ctx, OpLockExclusive)
}

// TryRLock is TryLock in shared mode (RW and Fair locks).
func (l *Lock) TryRLock(ctx context.Context) (bool, error) {
	return l.try(ctx, OpLockShared)
}

func (l *Lock) try(ctx context.Context, op Op) (bool, error) {
	st, err := l.do(ctx, op, l.ttl, 0, 0)
	switch {
	case err != nil:
		return false, l.wrap(op, err)
	case st == Success || st == ErrAlreadyLocked:
		return true, nil
	case st == ErrFail || st == ErrAgain:
		return false, nil
	}
	return false, l.wrap(op, st)
}

// Lock takes the lock exclusively, waiting until it is granted or ctx ends
// (lock with LOCK_EXCLUSIVE). The wait happens on the server: the request is
// queued and answered when the lock is handed over, in FIFO order (ticket
// order for Fair locks). If ctx ends first the request is withdrawn, and a
// grant that raced the withdrawal is released before Lock returns ctx's
// error.
func (l *Lock) Lock(ctx context.Context) error {
	return l.block(ctx, OpLockExclusive)
}

// RLock is Lock in shared mode (RW and Fair locks).
func (l *Lock) RLock(ctx context.Context) error {
	return l.block(ctx, OpLockShared)
}

func (l *Lock) block(ctx context.Context, op Op) error {
	// The server bounds the wait by the ctx's deadline, rounded up to whole
	// milliseconds so that it never gives up before the caller would; the
	// client withdraws the request when ctx ends for any other reason.
	var wait uint32
	d, hasDeadline := ctx.Deadline()
	if hasDeadline {
		left := time.Until(d)
		if left <= 0 {
			return l.wrap(op, context.DeadlineExceeded)
		}
		if ms := (left + time.Millisecond - 1) / time.Millisecond; ms <= 0xFFFFFFFF {
			wait = uint32(ms)
		} // else: no server-side bound; ctx's end withdraws the request
	}
	st, err := l.do(ctx, op, l.ttl, wire.FlagBlock, wait)
	switch {
	case err != nil:
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// The caller gave up, and then the connection failed too.
			err = fmt.Errorf("%w; %w", cerr, err)
		}
		return l.wrap(op, err)
	case st == Success || st == ErrAlreadyLocked:
		return nil
	case st == ErrTimeout && hasDeadline:
		// The server gave up at the deadline; our clock may read a hair
		// earlier. Report the deadline only once it has passed.
		<-ctx.Done()
		return l.wrap(op, ctx.Err())
	}
	if err := ctx.Err(); err != nil {
		return l.wrap(op, err)
	}
	return l.wrap(op, st.Err())
}

// Unlock releases one hold (unlock). A reentrant hold only decrements the
// count. For a Fair lock on which the client holds a ticket, Unlock gives
// the ticket up. Unlocking a lock the client does not hold returns
// ErrAlreadyUnlocked; ErrFail means the hold had been lost already (its
// lease ran out and someone else took the lock).
func (l *Lock) Unlock(ctx context.Context) error {
	st, err := l.do(ctx, OpUnlock, 0, 0, 0)
	switch {
	case err != nil:
		return l.wrap(OpUnlock, err)
	case st == Success || st == ErrAlreadyLocked:
		return nil
	}
	return l.wrap(OpUnlock, st)
}

// Extend moves the lease of the client's hold to ttl from now if that is
// later than its current expiry (lock_extend); ttl 0 only checks that the
// hold is still valid. ErrFail means the hold was lost. RW locks have no
// lease: ErrInval.
func (l *Lock) Extend(ctx context.Context, ttl time.Duration) error {
	op := OpExtendExclusive
	l.c.smu.Lock()
	if l.e.state == stateSharedLocked {
		op = OpExtendShared
	}
	l.c.smu.Unlock()
	if err := checkTTL(ttl); err != nil {
		return l.wrap(op, err)
	}
	var secs uint32
	if ttl > 0 {
		secs = ttlSeconds(ttl)
	}
	st, err := l.do(ctx, op, secs, 0, 0)
	switch {
	case err != nil:
		return l.wrap(op, err)
	case st == Success:
		return nil
	}
	return l.wrap(op, st)
}

// Release lets go of the lock (release_lock). The client must not hold it:
// ErrGeneric if it is locked, ErrTicketToUnlock if it holds a Fair ticket.
func (l *Lock) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return l.wrapName("release", ErrLockNotGet)
	}
	c := l.c
	c.smu.Lock()
	state := l.e.state
	c.smu.Unlock()
	switch state {
	case stateExclusiveTicketed, stateSharedTicketed:
		return l.wrapName("release", ErrTicketToUnlock)
	case stateExclusiveLocked, stateSharedLocked:
		return l.wrapName("release", fmt.Errorf("the lock is held: unlock it first: %w", ErrGeneric))
	}
	m := wire.ID{ID: l.e.id}
	cl, err := c.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, wire.TReleaseLock, id, c.id) })
	if err != nil {
		return l.wrapName("release", err)
	}
	st := passThrough(cl.status)
	c.putCall(cl)
	if st != ErrNotReady {
		l.released = true
		c.mu.Lock()
		if c.locks[l.e.id] == l {
			delete(c.locks, l.e.id)
		}
		c.mu.Unlock()
	}
	if st != Success {
		return l.wrapName("release", st)
	}
	return nil
}

// wrap says which operation on which lock an error is about.
func (l *Lock) wrap(op Op, err error) error {
	return l.wrapName(op.String(), err)
}

func (l *Lock) wrapName(op string, err error) error {
	return fmt.Errorf("dlock: %s %s: %w", op, quote(l.name), err)
}

// do runs one operation through the cache model: a local answer, or one
// round trip. flags and wait apply to a blocking lock request.
func (l *Lock) do(ctx context.Context, op Op, expire uint32, flags uint8, wait uint32) (Status, error) {
	st, _, _, err := l.exec(ctx, op, expire, flags, wait)
	if st == ErrLockNotGet {
		l.c.smu.Lock()
		pending := l.pending
		l.c.smu.Unlock()
		if pending {
			// Parked while recovery uploads it (the C API's LOCK_NOT_GET):
			// the hold is not gone, the server is not ready yet.
			st = ErrNotReady
		}
	}
	return st, err
}

// Do runs one lock operation with the exact semantics of the C API
// (SEMANTICS.md §6): trylock for OpLockExclusive/OpLockShared (or, with block,
// the blocking lock: at most 5 s, answered DLOCK_EAGAIN with the ticket kept
// for a fair lock that was not granted in time), unlock, or extend; expire is
// the relative lease in seconds, and 0 is the C API's "peek" for a lock
// operation. It returns the raw DLock status (including local outcomes such
// as ErrAlreadyLocked), the lock value the C call would write to its result
// buffer, and whether it writes one. It exists for the C ABI and for callers
// that want DLock's codes; the methods TryLock, Lock, Unlock and Extend are
// the idiomatic API.
func (l *Lock) Do(ctx context.Context, op Op, expire uint32, block bool) (st Status, result LockState, filled bool, err error) {
	if !op.Valid() {
		return ErrInval, LockState{}, false, nil
	}
	var flags uint8
	var wait uint32
	if block && isLockOp(op) {
		flags, wait = wire.FlagBlock|wire.FlagKeepTicket, 5000
	}
	return l.exec(ctx, op, expire, flags, wait)
}

// exec runs one operation through the cache model and reports the result
// buffer as the C API fills it.
func (l *Lock) exec(ctx context.Context, op Op, expire uint32, flags uint8, wait uint32) (Status, LockState, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.c
	c.smu.Lock()
	s := l.beginOp(op, expire, callSync)
	c.smu.Unlock()
	if s.local && s.status == ErrAlreadyLocked && isLockOp(op) && l.e.typ == RW {
		// RW locks re-enter in the cache, but the hold may be gone (the
		// server removed the client while it was cut off, or an operator
		// force-released it): confirm it before counting another hold.
		st, err := c.queryHold(ctx, l.e.id)
		if err != nil || st != Success {
			c.smu.Lock()
			l.e.restore(&s)
			if err == nil && (st == ErrFail || st == ErrLockNotGet) {
				l.e.reset()
				st = ErrFail
			}
			c.smu.Unlock()
			if err != nil {
				return 0, LockState{}, false, err
			}
			return st, LockState{}, false, nil
		}
	}
	if s.local {
		return s.status, s.result, s.fill, nil
	}
	m := wire.LockOp{LockID: l.e.id, Cmd: uint8(s.cmd), Arg: s.arg}
	if s.cmd == CmdExclusiveTrylock || s.cmd == CmdSharedTrylock ||
		s.cmd == CmdExclusiveTicketTrylock || s.cmd == CmdSharedTicketTrylock {
		m.Flags, m.WaitMillis = flags, wait
		s.retiresTicket = flags&wire.FlagBlock != 0 && flags&wire.FlagKeepTicket == 0
	}
	status, res, err := c.lockRoundTrip(ctx, &m)
	c.smu.Lock()
	defer c.smu.Unlock()
	if err != nil {
		l.e.abort(&s)
		c.stats.Inc(StatNetworkFail)
		return 0, LockState{}, false, err
	}
	st := l.e.finish(&s, status, res.State, res.Token, &c.stats)
	if s.fill {
		l.last = s.result
	}
	if ctx.Err() != nil && (st == Success || st == ErrAlreadyLocked) && isLockOp(op) {
		// The grant raced the caller's give-up: hand it back.
		_, err := l.undoGrant(ctx, &s, st)
		return 0, LockState{}, false, err
	}
	return st, s.result, s.fill, nil
}

// undoGrant releases a hold that was granted after the caller's ctx ended.
// Called with l.mu and c.smu held.
func (l *Lock) undoGrant(ctx context.Context, s *step, st Status) (Status, error) {
	c := l.c
	u := l.e.begin(OpUnlock, 0, c.id, callSync, &c.stats)
	if u.local {
		return 0, ctx.Err()
	}
	c.smu.Unlock()
	m := wire.LockOp{LockID: l.e.id, Cmd: uint8(u.cmd), Arg: u.arg}
	uctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	status, res, err := c.lockRoundTrip(uctx, &m)
	cancel()
	c.smu.Lock()
	if err != nil {
		// The unlock's outcome is unknown too. Forget the hold: resolving
		// the lock on reconnection then drops it on the server if it is
		// still there, as the caller was told it does not hold the lock.
		l.e.reset()
	} else {
		l.e.finish(&u, status, res.State, res.Token, &c.stats)
	}
	return 0, ctx.Err()
}

// queryHold asks the server whether the client holds lock id now
// (TLockQuery): Success, ErrFail or ErrLockNotGet.
func (c *Client) queryHold(ctx context.Context, id int32) (Status, error) {
	m := wire.ID{ID: id}
	cl, err := c.roundTrip(ctx, func(dst []byte, rid uint32) []byte { return m.Append(dst, wire.TLockQuery, rid, c.id) })
	if err != nil {
		return 0, err
	}
	st := passThrough(cl.status)
	c.putCall(cl)
	return st, nil
}

// lockRoundTrip sends one lock command and waits for its reply.
func (c *Client) lockRoundTrip(ctx context.Context, m *wire.LockOp) (Status, wire.LockResult, error) {
	cl, err := c.newCall()
	if err != nil {
		return 0, wire.LockResult{}, err
	}
	cl.long = m.Flags&wire.FlagBlock != 0
	cl.setLocks(m.LockID)
	c.send(func(dst []byte) []byte { return m.Append(dst, cl.id, c.id) })
	return c.awaitLock(ctx, cl)
}

// errNoReply fails a connection on which the server left a request
// unanswered for cancelGrace after its caller gave up.
var errNoReply = errors.New("no reply from the server")

// awaitLock waits for the reply to the lock request cl. If ctx ends first,
// a blocking request is withdrawn (TCancel), and the reply is still awaited
// for cancelGrace, so that the caller learns what happened: the server
// answers every request and every withdrawal at once, so a reply that does
// not come by then means the connection is broken. It is then closed, and
// the request's outcome is resolved when the client is connected again
// (see Reinit). A lock request's outcome is thus never left unknown.
//
// The returned error is the transport's (the outcome was unknown); ctx's
// end is for the caller to check: a grant that raced it is returned as a
// grant.
func (c *Client) awaitLock(ctx context.Context, cl *call) (Status, wire.LockResult, error) {
	var res wire.LockResult
	c.settle(ctx, cl)
	if cl.err != nil {
		return 0, res, cl.err
	}
	status := Status(cl.status)
	if cl.typ != wire.TLockOp.Reply() || res.Decode(cl.body) != nil {
		return 0, res, c.brokenReply(cl, "malformed lock reply")
	}
	c.putCall(cl)
	return status, res, nil
}

// settle waits until lock request cl is finished: its reply is in, or its
// connection failed (the outcome is then unknown and cl.locks are marked
// for resolution). If ctx ends first, a blocking request is withdrawn
// (TCancel) and the reply awaited for cancelGrace more; a reply that does
// not come by then means the connection is broken, and it is closed.
func (c *Client) settle(ctx context.Context, cl *call) {
	if err := c.await(ctx, cl); err == nil || ctx.Err() == nil {
		return
	}
	if cl.long {
		cm := wire.ID{ID: int32(cl.id)}
		c.send(func(dst []byte) []byte { return cm.Append(dst, wire.TCancel, 0, c.id) })
	}
	gctx, cancel := context.WithTimeout(context.Background(), cancelGrace)
	err := c.await(gctx, cl)
	cancel()
	if err != nil && gctx.Err() != nil {
		c.mu.Lock()
		nc := c.rconn
		c.mu.Unlock()
		c.fail(nc, errNoReply)
		c.await(context.Background(), cl) // finished by fail, or by the reply just in
	}
}

// brokenReply handles a reply to lock request cl that breaks the protocol:
// the outcome is unknown, so the locks are marked for resolution and the
// connection is closed. cl is given back.
func (c *Client) brokenReply(cl *call, what string) error {
	err := fmt.Errorf("%s: %w", what, ErrBadResponse)
	c.mu.Lock()
	c.markUnknown(cl.locks[:cl.nlocks])
	nc := c.rconn
	c.mu.Unlock()
	c.putCall(cl)
	c.fail(nc, err)
	return err
}

// BatchOpenLock opens up to 31 locks of the same options in one round trip
// (batch_get_lock). locks[i] receives the handle for names[i], or nil when
// that entry failed; the error of the first failed entry is returned after
// all entries were processed (ErrGeneric for a type mismatch,
// ErrServerNoResource when the server is full).
func (c *Client) BatchOpenLock(ctx context.Context, names []string, opts LockOptions, locks []*Lock) error {
	if len(names) == 0 || len(names) > MaxBatch || len(locks) < len(names) {
		return fmt.Errorf("dlock: batch open: %w", ErrBatchSize)
	}
	var reqs [MaxBatch]OpenRequest
	var ids [MaxBatch]int32
	for i, name := range names {
		reqs[i] = OpenRequest{Name: name, Options: opts}
	}
	if err := c.BatchOpenLocks(ctx, reqs[:len(names)], locks, ids[:len(names)]); err != nil {
		return err
	}
	for i, id := range ids[:len(names)] {
		switch {
		case id > 0:
		case id == -int32(ErrServerNoResource):
			return fmt.Errorf("dlock: batch open entry %d (%s): %w", i, quote(names[i]), ErrServerNoResource)
		default:
			return fmt.Errorf("dlock: batch open entry %d (%s) as %v: the lock exists with another type: %w",
				i, quote(names[i]), opts.Type, ErrGeneric)
		}
	}
	return nil
}

// OpenRequest is one entry of BatchOpenLocks.
type OpenRequest struct {
	Name    string
	Options LockOptions
}

// BatchOpenLocks opens up to 31 locks, each with its own options, in one
// round trip (batch_get_lock). The server handles the entries
// independently: locks[i] receives the handle for reqs[i] or nil, and
// ids[i] the server's answer — the lock id, -1 (type mismatch) or
// -int32(ErrServerNoResource). The error is for the call as a whole.
func (c *Client) BatchOpenLocks(ctx context.Context, reqs []OpenRequest, locks []*Lock, ids []int32) error {
	n := len(reqs)
	if n == 0 || n > MaxBatch || len(locks) < n || len(ids) < n {
		return fmt.Errorf("dlock: batch open: %w", ErrBatchSize)
	}
	var m wire.BatchGetLock
	m.N = n
	for i, r := range reqs {
		err := checkName(r.Name)
		if err == nil {
			err = checkOptions(r.Options)
		}
		if err != nil {
			return fmt.Errorf("dlock: batch open entry %d (%s): %w", i, quote(r.Name), err)
		}
		d := []byte(r.Name)
		m.Items[i] = wire.GetLock{Preferred: djb2(d), Lease: r.Options.LeaseTime, Type: uint8(r.Options.Type), Desc: d}
	}
	cl, err := c.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, id, c.id) })
	if err != nil {
		return fmt.Errorf("dlock: batch open: %w", err)
	}
	defer c.putCall(cl)
	if st := passThrough(cl.status); st != Success {
		return fmt.Errorf("dlock: batch open: %w", st)
	}
	var rep wire.IDs
	if rep.Decode(cl.body) != nil || rep.N != n {
		return fmt.Errorf("dlock: batch open: malformed reply: %w", ErrBadResponse)
	}
	for i := 0; i < n; i++ {
		ids[i], locks[i] = rep.IDs[i], nil
		if id := rep.IDs[i]; id > 0 {
			locks[i] = c.adoptLock(id, reqs[i].Name, reqs[i].Options)
		}
	}
	return nil
}

// BatchRelease releases up to 31 locks in one round trip
// (batch_release_lock). Locks the client still holds are skipped and left
// open; a fair ticket the client holds is given up (as DLock's
// batch_release_lock does); the others are released.
func (c *Client) BatchRelease(ctx context.Context, locks []*Lock) error {
	n := len(locks)
	if n == 0 || n > MaxBatch {
		return fmt.Errorf("dlock: batch release: %w", ErrBatchSize)
	}
	for i, l := range locks {
		switch {
		case l == nil:
			return fmt.Errorf("dlock: batch release entry %d: %w", i, errNilLock)
		case l.c != c:
			return fmt.Errorf("dlock: batch release entry %d: Lock %s belongs to another client: %w", i, quote(l.name), ErrInval)
		}
	}
	var held lockSet
	held.lock(locks)
	defer held.unlock()
	var m wire.IDs
	var sent [MaxBatch]*Lock
	c.smu.Lock()
	for _, l := range locks {
		if l.released || l.e.ref > 0 {
			continue
		}
		if st := l.e.state; st == stateExclusiveTicketed || st == stateSharedTicketed {
			c.abandonTicket(l.e.id, l.e.value, st)
			l.e.reset()
		}
		sent[m.N] = l
		m.IDs[m.N] = l.e.id
		m.N++
	}
	c.smu.Unlock()
	if m.N == 0 {
		return fmt.Errorf("dlock: batch release: every lock is held or released already: %w", ErrGeneric)
	}
	cl, err := c.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, wire.TBatchRelease, id, c.id) })
	if err != nil {
		return fmt.Errorf("dlock: batch release: %w", err)
	}
	st := passThrough(cl.status)
	c.putCall(cl)
	if st != ErrNotReady {
		c.mu.Lock()
		for _, l := range sent[:m.N] {
			l.released = true
			if c.locks[l.e.id] == l {
				delete(c.locks, l.e.id)
			}
		}
		c.mu.Unlock()
	}
	if st != Success {
		return fmt.Errorf("dlock: batch release: %w", st)
	}
	return nil
}

// beginOp maps op on this lock through the cache, with l.mu and c.smu held.
// A lock released or parked by recovery answers ErrLockNotGet. A local
// answer is settled here: its result recorded, and a fair ticket given up in
// the cache reported to the server. Otherwise the step carries the command
// to send.
func (l *Lock) beginOp(op Op, expire uint32, via callKind) step {
	c := l.c
	if l.released || l.pending {
		c.stats.Inc(StatLockNotGet)
		return step{op: op, via: via, local: true, status: ErrLockNotGet}
	}
	prev, ticket := l.e.state, l.e.value
	s := l.e.begin(op, expire, c.id, via, &c.stats)
	if s.local {
		if s.fill {
			l.last = s.result
		}
		if gaveUpTicket(prev, op, &s) {
			c.abandonTicket(l.e.id, ticket, prev)
		}
	}
	return s
}

// gaveUpTicket reports whether step s, begun on an entry in state prev,
// gave a fair ticket up in the cache (an unlock in a ticketed state).
func gaveUpTicket(prev localState, op Op, s *step) bool {
	return s.local && op == OpUnlock && s.status == Success &&
		(prev == stateExclusiveTicketed || prev == stateSharedTicketed)
}

// abandonTicket tells the server that a fair ticket given up in the cache
// (DLock's local abandon) is not wanted, so the lock's hand-over does not
// wait 2 s for it. Fire and forget: the server sends no reply.
func (c *Client) abandonTicket(id int32, ticket LockState, was localState) {
	m := wire.LockOp{LockID: id, Cmd: uint8(CmdExclusiveTicketTrylock), Arg: ticket}
	if was == stateSharedTicketed {
		m.Cmd = uint8(CmdSharedTicketTrylock)
	}
	c.send(func(dst []byte) []byte { return m.AppendType(dst, wire.TAbandon, 0, c.id) })
}

// Start begins one lock operation the way the C API's lock_request_async
// does (SEMANTICS.md §6.3, Async): the client's cache answers at once (wait is nil;
// st, result and filled are the answer), or the command is sent and wait
// collects the server's answer later. If wait's ctx ends first, the
// operation is forgotten — a late reply is dropped — and wait returns ctx's
// error. The C layer allows one such operation per client at a time.
func (l *Lock) Start(op Op, expire uint32) (st Status, result LockState, filled bool, wait func(context.Context) (Status, LockState, bool, error)) {
	if !op.Valid() {
		return ErrInval, LockState{}, false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.c
	c.smu.Lock()
	s := l.beginOp(op, expire, callAsync)
	c.smu.Unlock()
	if s.local {
		return s.status, s.result, s.fill, nil
	}
	m := wire.LockOp{LockID: l.e.id, Cmd: uint8(s.cmd), Arg: s.arg}
	cl, err := c.newCall()
	if err != nil {
		c.smu.Lock()
		l.e.abort(&s)
		c.stats.Inc(StatBadResponse)
		c.smu.Unlock()
		return ErrBadResponse, LockState{}, false, nil
	}
	cl.setLocks(m.LockID)
	c.send(func(dst []byte) []byte { return m.Append(dst, cl.id, c.id) })
	return Success, LockState{}, false, func(ctx context.Context) (Status, LockState, bool, error) {
		status, res, err := c.awaitLock(ctx, cl)
		l.mu.Lock()
		defer l.mu.Unlock()
		c.smu.Lock()
		defer c.smu.Unlock()
		if err != nil {
			l.e.abort(&s)
			c.stats.Inc(StatNetworkFail)
			return 0, LockState{}, false, err
		}
		st := l.e.finish(&s, status, res.State, res.Token, &c.stats)
		if s.fill {
			l.last = s.result
		}
		if ctx.Err() != nil && (st == Success || st == ErrAlreadyLocked) && isLockOp(op) {
			// The caller gave up before the grant came: hand it back.
			_, err := l.undoGrant(ctx, &s, st)
			return 0, LockState{}, false, err
		}
		return st, s.result, s.fill, nil
	}
}
