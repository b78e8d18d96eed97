package dlock

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
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
	// cp is the Client the handle belongs to. It changes only when a
	// Router moves the handle to another shard's Client (router_move.go),
	// with mu held.
	cp   atomic.Pointer[Client]
	name string
	ttl  uint32

	mu       sync.Mutex // serialises operations on this lock
	e        lockEntry  // guarded by c.mu while a step is applied
	last     LockState  // guarded by mu
	released bool
	opening  bool // guarded by mu: an open-and-lock's handle the server has not confirmed (openlock.go)
	// async is set while an asynchronous request holds mu (pipeline.go).
	async atomic.Bool

	// Recovery (guarded by c.mu): pending while uploaded to a new primary
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
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, id, c.id) })
	if err != nil {
		return nil, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	defer c.m.putCall(cl)
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
	l := &Lock{name: name, ttl: ttlSeconds(opts.TTL)}
	l.cp.Store(c)
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
	c := l.cl()
	c.mu.Lock()
	defer c.mu.Unlock()
	return l.e.token
}

// Held reports whether the client holds the lock (in either mode) as far as
// its cache knows.
func (l *Lock) Held() bool {
	c := l.cl()
	c.mu.Lock()
	defer c.mu.Unlock()
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
	return l.tryResult(op, st, err)
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
	wait, err := blockingWait(ctx)
	if err != nil {
		return l.wrap(op, err)
	}
	st, err := l.do(ctx, op, l.ttl, wire.FlagBlock, wait)
	return l.blockResult(ctx, op, st, err)
}

// blockingWait is the server-side bound of a blocking request under ctx:
// its deadline rounded up to whole milliseconds, so that the server never
// gives up before the caller would; 0 for none (ctx's end then withdraws
// the request).
func blockingWait(ctx context.Context) (uint32, error) {
	d, ok := ctx.Deadline()
	if !ok {
		return 0, nil
	}
	left := time.Until(d)
	if left <= 0 {
		return 0, context.DeadlineExceeded
	}
	if ms := (left + time.Millisecond - 1) / time.Millisecond; ms <= 0xFFFFFFFF {
		return uint32(ms), nil
	}
	return 0, nil
}

// tryResult turns the outcome of a trylock into TryLock's answer.
func (l *Lock) tryResult(op Op, st Status, err error) (bool, error) {
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

// blockResult turns the outcome of a blocking lock request into Lock's
// answer.
func (l *Lock) blockResult(ctx context.Context, op Op, st Status, err error) error {
	_, hasDeadline := ctx.Deadline()
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
	return l.unlockResult(st, err)
}

// unlockResult turns the outcome of an unlock into Unlock's answer.
func (l *Lock) unlockResult(st Status, err error) error {
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
	c := l.cl()
	c.mu.Lock()
	if l.e.state == stateSharedLocked {
		op = OpExtendShared
	}
	c.mu.Unlock()
	if err := checkTTL(ttl); err != nil {
		return l.wrap(op, err)
	}
	var secs uint32
	if ttl > 0 {
		secs = ttlSeconds(ttl)
	}
	st, err := l.do(ctx, op, secs, 0, 0)
	return l.extendResult(op, st, err)
}

// extendResult turns the outcome of an extension into Extend's answer.
func (l *Lock) extendResult(op Op, st Status, err error) error {
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
	c := l.cl()
	c.mu.Lock()
	state := l.e.state
	c.mu.Unlock()
	switch state {
	case stateExclusiveTicketed, stateSharedTicketed:
		return l.wrapName("release", ErrTicketToUnlock)
	case stateExclusiveLocked, stateSharedLocked:
		return l.wrapName("release", fmt.Errorf("the lock is held: unlock it first: %w", ErrGeneric))
	}
	m := wire.ID{ID: l.e.id}
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, wire.TReleaseLock, id, c.id) })
	if err != nil {
		return l.wrapName("release", err)
	}
	st := passThrough(cl.status)
	c.m.putCall(cl)
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

// cl returns the Client the handle belongs to now.
func (l *Lock) cl() *Client { return l.cp.Load() }
