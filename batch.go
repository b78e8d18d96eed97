package dlock

import (
	"context"
	"fmt"
	"time"
	"unsafe"

	"github.com/dlock-io/dlock/internal/wire"
)

// LockRequest is one entry of a batch trylock or extend.
type LockRequest struct {
	Lock *Lock
	Mode Mode // Exclusive or Shared
	// TTL is the lease (trylock) or the new lease from now (extend); zero
	// means the lock's own TTL for trylock and "check only" for extend.
	TTL time.Duration
}

// Result is the outcome of one batch entry.
type Result struct {
	// Status is the entry's outcome: Success; ErrAlreadyLocked for a
	// reentrant hold; ErrFail when the lock is busy (trylock) or the hold was
	// lost (unlock, extend); ErrAgain when a Fair trylock was queued with a
	// ticket; any other Status the single operation would return. A
	// transport failure gives every sent entry ErrBadResponse and makes the
	// batch call return the error.
	Status Status
	// State is the lock value the server reported (or the cache, for an
	// entry answered locally).
	State LockState
	// Token is the fencing token of a hold granted by this entry.
	Token uint64
	// Filled reports whether State is the entry's lock value (the C API
	// writes an entry's state only then: on success, a fair EAGAIN, a peek).
	Filled bool
}

// ErrBatchSize is returned (wrapped with ErrInval) for a batch of 0 or more
// than MaxBatch entries, or with fewer results than requests.
var ErrBatchSize = fmt.Errorf("batch needs 1..%d entries and a result per entry: %w", MaxBatch, ErrInval)

// BatchTryLock tries up to 31 locks in one round trip (batch_trylock). The
// server runs the entries independently, in order; there is no all-or-
// nothing semantics. results[i] receives entry i's outcome.
//
// A batch sends at most one command per lock: an entry on a lock for which
// an earlier entry of the same batch sends one is answered ErrInval without
// the server (this holds for every batch operation). Entries the cache
// answers locally (a reentrant RW lock, an unlock of a reentered hold) do
// not count.
func (c *Client) BatchTryLock(ctx context.Context, reqs []LockRequest, results []Result) error {
	return c.batch(ctx, len(reqs), results, func(i int) (*Lock, Op, uint32, error) {
		r := &reqs[i]
		op := OpLockExclusive
		if r.Mode == Shared {
			op = OpLockShared
		}
		if r.Lock == nil {
			return nil, op, 0, errNilLock
		}
		if err := checkTTL(r.TTL); err != nil {
			return nil, op, 0, err
		}
		ttl := r.Lock.ttl
		if r.TTL > 0 {
			ttl = ttlSeconds(r.TTL)
		}
		return r.Lock, op, ttl, nil
	})
}

// BatchUnlock unlocks up to 31 locks in one round trip (batch_unlock).
func (c *Client) BatchUnlock(ctx context.Context, locks []*Lock, results []Result) error {
	return c.batch(ctx, len(locks), results, func(i int) (*Lock, Op, uint32, error) {
		if locks[i] == nil {
			return nil, OpUnlock, 0, errNilLock
		}
		return locks[i], OpUnlock, 0, nil
	})
}

// BatchExtend extends up to 31 holds in one round trip (batch_lock_extend).
func (c *Client) BatchExtend(ctx context.Context, reqs []LockRequest, results []Result) error {
	return c.batch(ctx, len(reqs), results, func(i int) (*Lock, Op, uint32, error) {
		r := &reqs[i]
		op := OpExtendExclusive
		if r.Mode == Shared {
			op = OpExtendShared
		}
		if r.Lock == nil {
			return nil, op, 0, errNilLock
		}
		if err := checkTTL(r.TTL); err != nil {
			return nil, op, 0, err
		}
		var ttl uint32
		if r.TTL > 0 {
			ttl = ttlSeconds(r.TTL)
		}
		return r.Lock, op, ttl, nil
	})
}

// batch runs n entries: local answers at once, the rest in one frame.
func (c *Client) batch(ctx context.Context, n int, results []Result, entry func(int) (*Lock, Op, uint32, error)) error {
	if n == 0 || n > MaxBatch || len(results) < n {
		return fmt.Errorf("dlock: batch: %w", ErrBatchSize)
	}
	var (
		locks [MaxBatch]*Lock
		steps [MaxBatch]step
		sent  [MaxBatch]int // index into the frame, -1 for local entries
		m     wire.BatchLockOp
	)
	var ops [MaxBatch]Op
	var ttls [MaxBatch]uint32
	for i := 0; i < n; i++ {
		l, op, ttl, err := entry(i)
		if err == nil && l.cl() != c {
			err = fmt.Errorf("Lock %s belongs to another client: %w", quote(l.name), ErrInval)
		}
		if err != nil {
			return fmt.Errorf("dlock: batch entry %d: %w", i, err)
		}
		locks[i], ops[i], ttls[i] = l, op, ttl
	}
	var held lockSet
	held.lock(locks[:n])
	defer held.unlock()
	for i := 0; i < n; i++ {
		// A Router moves a handle to another Client with its mutex held:
		// check again now that the handles are held.
		if l := locks[i]; l.cl() != c {
			return fmt.Errorf("dlock: batch entry %d: Lock %s belongs to another client: %w", i, quote(l.name), ErrInval)
		}
	}

	// Every entry begins under one hold of c.mu (as Lock.begin, which a
	// batch entry needs no more of), and ends under another: a batch of 31
	// takes it twice, not 62 times.
	var drops [MaxBatch]ticketDrop
	c.mu.Lock()
	for i := 0; i < n; i++ {
		l := locks[i]
		sent[i] = -1
		if held.repeated&(1<<i) != 0 && sentEarlier(locks[:i], sent[:i], l) {
			// An earlier entry sends a command on this lock already: the
			// cache cannot account for two outcomes of one lock in one
			// reply (the second's would undo the first's).
			steps[i] = step{op: ops[i], via: callBatch, local: true, status: ErrInval}
			drops[i] = ticketDrop{}
			continue
		}
		if drops[i] = l.beginOpInto(&steps[i], ops[i], ttls[i], callBatch); steps[i].local {
			continue // no error without a round trip
		}
		sent[i] = m.N
		m.Items[m.N] = wire.LockOp{LockID: l.e.id, Cmd: uint8(steps[i].cmd), Arg: steps[i].arg}
		m.N++
	}
	c.mu.Unlock()
	for i := 0; i < n; i++ {
		if drops[i].id != 0 {
			c.dropTicket(drops[i])
		}
	}

	var rep wire.BatchLockResult
	var err error
	if m.N > 0 {
		err = c.batchRoundTrip(ctx, &m, &rep)
	}

	c.mu.Lock()
	for i := 0; i < n; i++ {
		l, s := locks[i], &steps[i]
		res := &results[i]
		*res = Result{}
		switch {
		case s.local:
			res.Status = s.status
		case err != nil:
			l.endLocked(s, 0, LockState{}, 0, err)
			res.Status = ErrBadResponse
			continue
		default:
			it := &rep.Items[sent[i]]
			res.Status = l.endLocked(s, Status(it.Status), it.State, it.Token, nil)
			res.Token = it.Token
		}
		if s.fill {
			res.State, res.Filled = s.result, true
			if s.local {
				l.last = s.result // in entry order, as a remote entry's end
			}
		}
	}
	if err != nil {
		c.stats.Inc(StatNetworkFail)
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("dlock: batch: %w", err)
	}
	return nil
}

// sentEarlier reports whether one of the entries before, locks with sent
// (their indices into the frame, -1 for local ones), sends a command on l.
func sentEarlier(locks []*Lock, sent []int, l *Lock) bool {
	for j, o := range locks {
		if o == l && sent[j] >= 0 {
			return true
		}
	}
	return false
}

// batchRoundTrip sends a batch of lock commands and waits for the reply
// (see settle: an unknown outcome is resolved on reconnection).
func (c *Client) batchRoundTrip(ctx context.Context, m *wire.BatchLockOp, rep *wire.BatchLockResult) error {
	var ids [MaxBatch]int32
	for i := 0; i < m.N; i++ {
		ids[i] = m.Items[i].LockID
	}
	cl, err := c.m.newLockCall(false, ids[:m.N])
	if err != nil {
		return err
	}
	c.m.sendCall(cl, func(dst []byte) []byte { return m.Append(dst, cl.id, c.id) })
	c.settle(ctx, cl)
	if cl.err != nil {
		return cl.err
	}
	if st := passThrough(cl.status); st != Success {
		c.m.putCall(cl)
		return st.Err()
	}
	if cl.typ != wire.TBatchLockOp.Reply() || rep.Decode(cl.body) != nil || rep.N != m.N {
		return c.brokenReply(cl, "malformed batch reply")
	}
	c.m.putCall(cl)
	return nil
}

// errNilLock refuses a nil *Lock in a batch.
var errNilLock = fmt.Errorf("nil Lock: %w", ErrInval)

// lockSet locks the handles' mutexes in id order (each once), so that
// concurrent batches over the same locks cannot deadlock.
type lockSet struct {
	sorted [MaxBatch]*Lock
	n      int
	// repeated has bit i set when entry i's handle is also another entry's.
	repeated uint32
}

// lock sorts the handles by id and locks them. A handle that appears twice
// is taken once; two handles with the same id (one released, the other
// opened again) are both taken, in the order of their addresses, so that
// two batches naming them in opposite orders take them in the same order.
// The sort is an insertion sort (a batch has at most 31 entries) of keys
// that hold the id and the entry's index, so that it moves integers, not
// pointers.
func (ls *lockSet) lock(locks []*Lock) {
	var keys [MaxBatch]uint64
	n := 0
	for i, l := range locks {
		if l == nil {
			continue
		}
		id := uint64(uint32(l.e.id) ^ 1<<31) // signed order
		j := n
		for j > 0 && (keys[j-1]>>8 > id || keys[j-1]>>8 == id && handleAddr(locks[keys[j-1]&0xFF]) > handleAddr(l)) {
			keys[j] = keys[j-1]
			j--
		}
		dup := false
		for k := j - 1; k >= 0 && keys[k]>>8 == id; k-- {
			if first := keys[k] & 0xFF; locks[first] == l {
				ls.repeated |= 1<<i | 1<<first
				dup = true
				break
			}
		}
		if dup {
			copy(keys[j:n], keys[j+1:n+1]) // undo the shift
			continue
		}
		keys[j] = id<<8 | uint64(i)
		n++
	}
	for k := 0; k < n; k++ {
		l := locks[keys[k]&0xFF]
		ls.sorted[k] = l
		l.mu.Lock()
	}
	ls.n = n
}

// handleAddr orders handles that share a lock id. Go does not move heap
// objects, so a handle's address stays the same while it is in use.
func handleAddr(l *Lock) uintptr { return uintptr(unsafe.Pointer(l)) }

func (ls *lockSet) unlock() {
	for i := ls.n - 1; i >= 0; i-- {
		ls.sorted[i].mu.Unlock()
	}
}

// batchOpenLocks opens up to 31 locks, each with its own options, in one
// round trip (batch_get_lock). The server handles the entries
// independently: locks[i] receives the handle for names[i] (opened with
// opts[i]) or nil, and ids[i] the server's answer — the lock id, -1 (type
// mismatch) or -int32(ErrServerNoResource). The error is for the call as
// a whole.
func (c *Client) batchOpenLocks(ctx context.Context, names []string, opts []LockOptions, locks []*Lock, ids []int32) error {
	n := len(names)
	if n == 0 || n > MaxBatch || len(opts) != n || len(locks) < n || len(ids) < n {
		return fmt.Errorf("dlock: batch open: %w", ErrBatchSize)
	}
	var m wire.BatchGetLock
	m.N = n
	for i, name := range names {
		err := checkName(name)
		if err == nil {
			err = checkOptions(opts[i])
		}
		if err != nil {
			return fmt.Errorf("dlock: batch open entry %d (%s): %w", i, quote(name), err)
		}
		d := []byte(name)
		m.Items[i] = wire.GetLock{Preferred: djb2(d), Lease: opts[i].LeaseTime, Type: uint8(opts[i].Type), Desc: d}
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
			locks[i] = c.adoptLock(id, names[i], opts[i])
		}
	}
	return nil
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
	var all [MaxBatch]LockOptions
	var ids [MaxBatch]int32
	for i := range names {
		all[i] = opts
	}
	if err := c.batchOpenLocks(ctx, names, all[:len(names)], locks, ids[:len(names)]); err != nil {
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
		case l.cl() != c:
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
