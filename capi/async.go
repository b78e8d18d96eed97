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

// asyncOp is a client's outstanding async lock operation (§6.9): a
// goroutine running the operation and the slot its result lands in.
type asyncOp struct {
	lockID int32
	typ    dlock.LockType
	start  time.Time
	done   chan struct{} // closed when the fields below are set
	status dlock.Status
	state  dlock.LockState
	filled bool
}

// lock_request_async starts a lock operation and returns without waiting
// for the server (§6.9). One operation may be outstanding per client; its
// result is collected with lock_result_check.
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
	op, expire := dlock.Op(req.lock_op), uint32(req.expire_time)
	if local(l, op) {
		// Answered from the client's cache (a reentry, an unlock of a lock
		// not held, a refused mapping): no operation becomes outstanding.
		var scratch dlock.LockState
		return do(l, op, expire, false, unsafe.Pointer(&scratch))
	}
	a := &asyncOp{lockID: int32(req.lock_id), typ: l.Type(), start: time.Now(), done: make(chan struct{})}
	in.async = a
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		st, state, filled, err := l.Do(ctx, op, expire, false)
		if err != nil {
			st, filled = dlock.Status(statusOf(err)), false
		}
		a.status, a.state, a.filled = st, state, filled
		close(a.done)
	}()
	return 0
}

// local reports whether op on l is decided by the client's cache alone, as
// far as the lock's type and whether it is held tell.
func local(l *dlock.Lock, op dlock.Op) bool {
	held := l.Held()
	switch {
	case op == dlock.OpLockShared && l.Type() == dlock.Atomic:
		return true // DLOCK_EINVAL
	case op == dlock.OpLockExclusive || op == dlock.OpLockShared:
		return held && l.Type() == dlock.RW // local reentry or DLOCK_EINVAL
	case op == dlock.OpUnlock:
		return !held // DLOCK_ALREADY_UNLOCKED, or a fair ticket given up
	}
	return !held || l.Type() == dlock.RW // extend: DLOCK_EINVAL
}

// lock_result_check collects the result of the outstanding async operation
// (§6.9): DLOCK_ASYNC_AGAIN while it runs, DLOCK_ETIMEOUT 5 s after the
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
		if time.Since(a.start) > lockTimeout {
			in.async = nil // a result that comes later is dropped
			in.extra.Inc(dlock.StatETimeout)
			return dlock.ErrTimeout
		}
		return dlock.ErrAsyncAgain
	}
	in.async = nil
	if in.locks[a.lockID] == nil {
		return dlock.ErrLockNotGet
	}
	if a.filled {
		writeState(result, a.typ, a.state)
	}
	return a.status
}
