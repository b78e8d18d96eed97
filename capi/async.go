package main

/*
#include "dlock_types.h"
*/
import "C"

import (
	"context"
	"time"
	"unsafe"

	"github.com/dlock-io/dlock"
)

// waitFunc collects the reply of an operation begun with lockStart (cshim.go).
type waitFunc = func(context.Context) (dlock.Status, dlock.LockState, bool, error)

// asyncOp is a client's outstanding async lock operation (SEMANTICS.md §6.3): a command
// in flight, a goroutine waiting for its reply and the slot the outcome
// lands in.
type asyncOp struct {
	lockID int32
	typ    dlock.LockType
	start  time.Time
	cancel context.CancelFunc // forgets the operation: a reply that comes later is dropped
	done   chan struct{}      // closed when the fields below are set

	forgotten bool // the operation was forgotten before its reply came
	status    dlock.Status
	state     dlock.LockState
	filled    bool
}

// startAsync makes the operation whose reply wait collects the client's
// outstanding one. in.mu must be held.
func (in *instance) startAsync(lockID int32, typ dlock.LockType, wait waitFunc) {
	// opTimeout bounds an operation nobody collects; lock_result_check
	// forgets it after lockTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	a := &asyncOp{lockID: lockID, typ: typ, start: time.Now(), cancel: cancel, done: make(chan struct{})}
	in.async = a
	go func() {
		defer cancel()
		st, state, filled, err := wait(ctx)
		switch {
		case err != nil && ctx.Err() != nil:
			a.forgotten = true
		case err != nil:
			st, filled = dlock.Status(statusOf(err)), false
		}
		a.status, a.state, a.filled = st, state, filled
		close(a.done)
	}()
}

// forgetAsync drops the outstanding operation, if any: its reply, should it
// still come, is dropped. in.mu must be held.
func (in *instance) forgetAsync() {
	if in.async != nil {
		in.async.cancel()
		in.async = nil
	}
}

// lock_request_async starts a lock operation and returns without waiting
// for the server. One operation may be outstanding per client; its
// result is collected with lock_result_check. What the client's cache
// answers alone (a reentry, an unlock of a reentrant hold, a ticket of the
// other mode, a refused mapping) is returned at once and leaves nothing
// outstanding.
//
//export lock_request_async
func lock_request_async(clientID C.int, req *C.struct_lock_request) C.int {
	if req == nil || req.lock_op < 0 || req.lock_op >= C.LOCK_OPS_MAX ||
		(isLockOp(req.lock_op) && req.expire_time == 0) {
		return code(dlock.ErrInval)
	}
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return code(dlock.ErrClientMgrNotInit)
	case in == nil:
		return code(dlock.ErrClientNotInit)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.async != nil {
		in.extra.Inc(dlock.StatEAsync)
		return code(dlock.ErrAsync)
	}
	l := in.locks[int32(req.lock_id)]
	if l == nil {
		in.extra.Inc(dlock.StatLockNotGet)
		return code(dlock.ErrLockNotGet)
	}
	st, _, _, wait := lockStart(l, dlock.Op(req.lock_op), uint32(req.expire_time))
	if wait == nil {
		return code(st)
	}
	in.startAsync(int32(req.lock_id), l.Type(), wait)
	return 0
}

// lock_result_check collects the result of the outstanding async operation:
// DLOCK_ASYNC_AGAIN while it runs, DLOCK_ETIMEOUT 5 s after the
// request (its late result is then dropped), else the operation's code.
//
//export lock_result_check
func lock_result_check(clientID C.int, result unsafe.Pointer) C.int {
	if result == nil {
		return code(dlock.ErrInval)
	}
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return code(dlock.ErrClientMgrNotInit)
	case in == nil:
		return code(dlock.ErrClientNotInit)
	}
	return code(in.checkResult(result))
}

// checkResult is lock_result_check for a known client instance.
func (in *instance) checkResult(result unsafe.Pointer) dlock.Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	a := in.async
	if a == nil {
		in.extra.Inc(dlock.StatNoAsync)
		return dlock.ErrNoAsync
	}
	select {
	case <-a.done:
	default:
		if time.Since(a.start) <= lockTimeout {
			return dlock.ErrAsyncAgain
		}
		// Forget it. The wait settles at once: it withdraws the call, or
		// applies the reply if that came in meanwhile.
		a.cancel()
		<-a.done
	}
	in.async = nil
	if a.forgotten {
		in.extra.Inc(dlock.StatETimeout)
		return dlock.ErrTimeout
	}
	if in.locks[a.lockID] == nil {
		return dlock.ErrLockNotGet
	}
	if a.filled {
		writeState(result, a.typ, a.state)
	}
	return a.status
}
