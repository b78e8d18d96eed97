package dlock

import (
	"context"
	"errors"
	"fmt"

	"github.com/dlock-io/dlock/internal/wire"
)

// OpenAndLock opens the lock called name, as OpenLock does, and takes it
// exclusively, as Lock.Lock does, in one round trip: the first use of a lock
// costs no more than any later one. If the client has the name open
// already it is Lock.Lock on that handle.
//
// The handle is returned whenever the open succeeded, also when taking the
// lock failed (ctx ended, the connection broke): the lock is then open and
// not held, and the caller may Release it. An open that fails (a type
// mismatch, a full server) returns a nil handle and the error OpenLock
// would return.
func (c *Client) OpenAndLock(ctx context.Context, name string, opts LockOptions) (*Lock, error) {
	wait, err := blockingWait(ctx)
	if err != nil {
		return nil, fmt.Errorf("dlock: open and lock %s: %w", quote(name), err)
	}
	l, st, err := c.openAnd(ctx, name, opts, wire.FlagBlock, wait)
	if l == nil {
		return nil, err
	}
	return l, l.blockResult(ctx, OpLockExclusive, st, err)
}

// OpenAndTryLock opens the lock called name, as OpenLock does, and tries to
// take it exclusively, as Lock.TryLock does, in one round trip. The handle
// is returned whenever the open succeeded (see OpenAndLock).
func (c *Client) OpenAndTryLock(ctx context.Context, name string, opts LockOptions) (*Lock, bool, error) {
	l, st, err := c.openAnd(ctx, name, opts, 0, 0)
	if l == nil {
		return nil, false, err
	}
	ok, err := l.tryResult(OpLockExclusive, st, err)
	return l, ok, err
}

// openAnd opens name and runs an exclusive lock request (trylock, or with
// wire.FlagBlock a blocking lock bounded by wait milliseconds) on it. It
// returns the handle (nil if the open failed or its outcome is unknown)
// and the request's status or transport error.
//
// The request is a TOpenLockOp naming the id the client predicts for the
// lock: the server runs the lock command only if the lock has that id. A
// provisional handle under that id is registered before the request is
// sent, so that if the reply is lost the outcome is resolved on
// reconnection like any lock request's. When the prediction is wrong the
// server only opens the lock; the handle for the real id then takes the
// lock in a second round trip.
func (c *Client) openAnd(ctx context.Context, name string, opts LockOptions, flags uint8, wait uint32) (*Lock, Status, error) {
	if err := checkName(name); err != nil {
		return nil, 0, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	if err := checkOptions(opts); err != nil {
		return nil, 0, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	desc := []byte(name)
	want := predictedID(desc)
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		old := c.locks[want]
		if old == nil {
			l := &Lock{name: name, ttl: ttlSeconds(opts.TTL), opening: true}
			l.cp.Store(c)
			l.e = lockEntry{id: want, typ: opts.Type, lease: opts.LeaseTime, desc: desc}
			l.mu.Lock() // whoever finds the handle meanwhile waits for this request
			c.locks[want] = l
			c.mu.Unlock()
			return c.openLockOp(ctx, l, opts, flags, wait)
		}
		c.mu.Unlock()
		if old.name != name || old.e.typ != opts.Type || attempt == 3 {
			// The predicted id is another lock's: open, then lock.
			return c.openThenLock(ctx, name, opts, flags, wait)
		}
		old.mu.Lock()
		if !old.opening {
			old.mu.Unlock()
			st, err := old.do(ctx, OpLockExclusive, old.ttl, flags, wait)
			return old, st, err
		}
		c.mu.Lock()
		live := c.locks[want] == old
		c.mu.Unlock()
		if live {
			// Left by an open-and-lock whose outcome was lost: the open
			// may or may not have happened; ask again on the same handle.
			return c.openLockOp(ctx, old, opts, flags, wait)
		}
		old.mu.Unlock() // its open-and-lock found another id: look again
	}
}

// openLockOp sends the TOpenLockOp of handle l, which is registered under
// its predicted id and not confirmed yet (l.opening), with l.mu held; it
// unlocks l.mu.
func (c *Client) openLockOp(ctx context.Context, l *Lock, opts LockOptions, flags uint8, wait uint32) (*Lock, Status, error) {
	name, want, desc := l.name, l.e.id, l.e.desc
	unlocked := false
	defer func() {
		if !unlocked {
			l.mu.Unlock()
		}
	}()
	// forget drops the handle, which names no lock of the server: its
	// open-and-lock found the name under another id, or failed.
	forget := func() {
		c.mu.Lock()
		if c.locks[want] == l {
			delete(c.locks, want)
		}
		c.mu.Unlock()
	}

	// The lock operation's steps (see lockop.go), with a TOpenLockOp for
	// the post.
	s, err := l.begin(ctx, OpLockExclusive, l.ttl, callSync)
	if err != nil {
		return nil, 0, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	if s.local { // a handle parked by recovery (ErrLockNotGet): nothing sent
		return nil, 0, fmt.Errorf("dlock: open %s: %w", quote(name), s.status)
	}
	m := wire.OpenLockOp{
		Op:   wire.LockOp{LockID: want, Cmd: uint8(s.cmd), Arg: s.arg, Flags: flags, WaitMillis: wait},
		Open: wire.GetLock{Preferred: want, Lease: opts.LeaseTime, Type: uint8(opts.Type), Desc: desc},
	}
	s.retiresTicket = flags&wire.FlagBlock != 0
	ids := [1]int32{want}
	cl, err := c.m.newLockCall(flags&wire.FlagBlock != 0, ids[:])
	if err != nil {
		l.end(&s, 0, LockState{}, 0, err)
		forget()
		return nil, 0, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	c.m.sendCall(cl, func(dst []byte) []byte { return m.Append(dst, cl.id, c.id) })
	c.settle(ctx, cl)
	if cl.err != nil {
		// The outcome is unknown: the handle stays registered (not
		// confirmed), and the reconnection resolves the lock (drops a
		// grant that never arrived).
		_, _, _, err := l.complete(ctx, &s, 0, wire.LockResult{}, cl.err)
		return nil, 0, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	switch cl.typ {
	case wire.TLockOp.Reply(): // opened under the predicted id, and the command ran
		var res wire.LockResult
		if res.Decode(cl.body) != nil {
			err := c.brokenReply(cl, "malformed lock reply")
			l.end(&s, 0, LockState{}, 0, err)
			return nil, 0, fmt.Errorf("dlock: open %s: %w", quote(name), err)
		}
		status := Status(cl.status)
		c.m.putCall(cl)
		l.opening = false // the server has the lock under this id
		st, _, _, err := l.complete(ctx, &s, status, res, nil)
		return l, st, err
	case wire.TOpenLockOp.Reply(): // the command did not run
	case wire.TUnknownReply: // a server without TOpenLockOp: nothing ran
		c.m.putCall(cl)
		l.end(&s, 0, LockState{}, 0, errNotRun)
		forget()
		l.mu.Unlock()
		unlocked = true
		return c.openThenLock(ctx, name, opts, flags, wait)
	default:
		err := c.brokenReply(cl, "unexpected reply type")
		l.end(&s, 0, LockState{}, 0, err)
		return nil, 0, fmt.Errorf("dlock: open %s: %w", quote(name), err)
	}
	st := passThrough(cl.status)
	var rep wire.GetLockReply
	bad := st == Success && (rep.Decode(cl.body) != nil || rep.ID <= 0)
	c.m.putCall(cl)
	l.end(&s, 0, LockState{}, 0, errNotRun)
	forget()
	switch {
	case bad:
		return nil, 0, fmt.Errorf("dlock: open %s: malformed reply: %w", quote(name), ErrBadResponse)
	case st == ErrGeneric:
		return nil, 0, fmt.Errorf("dlock: open %s as %v: the lock exists with another type: %w", quote(name), opts.Type, st)
	case st != Success:
		return nil, 0, fmt.Errorf("dlock: open %s: %w", quote(name), st)
	}
	// Opened under another id (a descriptor hash collision, or a lock first
	// opened through OpenLock): lock it in a second round trip.
	l.mu.Unlock()
	unlocked = true
	real := c.adoptLock(rep.ID, name, opts)
	st, err = real.do(ctx, OpLockExclusive, real.ttl, flags, wait)
	return real, st, err
}

// errNotRun aborts the step of an open-and-lock whose command did not run.
var errNotRun = errors.New("the lock command did not run")

// openThenLock is OpenLock followed by a lock request: two round trips.
func (c *Client) openThenLock(ctx context.Context, name string, opts LockOptions, flags uint8, wait uint32) (*Lock, Status, error) {
	l, err := c.OpenLock(ctx, name, opts)
	if err != nil {
		return nil, 0, err
	}
	st, err := l.do(ctx, OpLockExclusive, l.ttl, flags, wait)
	return l, st, err
}

// predictedID is the id a new lock named desc gets from a server that has
// the id free: the descriptor's djb2 hash, made positive. (OpenLock sends
// the hash as is, as the C client does, and the server assigns another id
// when it is not positive; an open-and-lock asks for a positive one so that
// every name can be predicted.)
func predictedID(desc []byte) int32 {
	id := djb2(desc) & 0x7FFFFFFF
	if id == 0 {
		id = 1
	}
	return id
}
