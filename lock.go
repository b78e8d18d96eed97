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
	e        lockEntry  // guarded by c.mu while a step is applied
	last     LockState  // guarded by mu
	released bool

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
	if l := c.locks[id]; l != nil {
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
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
	return l.e.token
}

// Held reports whether the client holds the lock (in either mode) as far as
// its cache knows.
func (l *Lock) Held() bool {
	l.c.mu.Lock()
	defer l.c.mu.Unlock()
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
	l.c.mu.Lock()
	if l.e.state == stateSharedLocked {
		op = OpExtendShared
	}
	l.c.mu.Unlock()
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
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, id, c.id) })
	if err != nil {
		return fmt.Errorf("dlock: batch open: %w", err)
	}
	defer c.m.putCall(cl)
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
	var drops [MaxBatch]ticketDrop
	c.mu.Lock()
	for _, l := range locks {
		if l.released || l.e.ref > 0 {
			continue
		}
		if st := l.e.state; st == stateExclusiveTicketed || st == stateSharedTicketed {
			drops[m.N] = ticketDrop{id: l.e.id, ticket: l.e.value, was: st}
			l.e.reset()
		}
		sent[m.N] = l
		m.IDs[m.N] = l.e.id
		m.N++
	}
	c.mu.Unlock()
	for _, d := range drops[:m.N] {
		c.dropTicket(d)
	}
	if m.N == 0 {
		return fmt.Errorf("dlock: batch release: every lock is held or released already: %w", ErrGeneric)
	}
	cl, err := c.m.roundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, wire.TBatchRelease, id, c.id) })
	if err != nil {
		return fmt.Errorf("dlock: batch release: %w", err)
	}
	st := passThrough(cl.status)
	c.m.putCall(cl)
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
	s, _ := l.begin(context.Background(), op, expire, callAsync) // no error without a round trip
	if s.local {
		return s.status, s.result, s.fill, nil
	}
	cl, err := l.post(&s, 0, 0)
	if err != nil {
		l.end(&s, 0, LockState{}, 0, err)
		l.c.mu.Lock()
		l.c.stats.Inc(StatBadResponse)
		l.c.mu.Unlock()
		return ErrBadResponse, LockState{}, false, nil
	}
	return Success, LockState{}, false, func(ctx context.Context) (Status, LockState, bool, error) {
		status, res, err := l.c.awaitLock(ctx, cl)
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.complete(ctx, &s, status, res, err)
	}
}
