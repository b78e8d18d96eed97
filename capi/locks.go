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

const (
	lockTimeout   = 5 * time.Second        // LOCK_TIMEOUT: blocking lock budget, async result timeout
	sleepInterval = 100 * time.Millisecond // SLEEP_INTERVAL
	opTimeout     = 15 * time.Second       // bound of one Go call made for a C call
	resStride     = 20                     // sizeof(struct lock_op_res)
)

// djb2 is the descriptor hash written into lock ids before the server is
// contacted (SEMANTICS.md §3).
func djb2(b []byte) int32 {
	h := uint32(5381)
	for _, c := range b {
		h = h*33 + uint32(c)
	}
	return int32(h)
}

// validDesc checks a struct lock_desc: 1..512 bytes, a known lock type.
func validDesc(d *C.struct_lock_desc) bool {
	return d.len > 0 && d.len <= dlock.MaxDescLen && d.p_desc != nil && d.lock_type < C.DLOCK_MAX
}

// get_lock gets (opens) the lock described by desc and writes its
// id. The descriptor hash is written before the server is contacted;
// getting a lock the client has got already returns -1 with the valid id.
//
//export get_lock
func get_lock(clientID C.int, desc *C.struct_lock_desc, lockID *C.int) C.int {
	if lockID == nil || desc == nil || !validDesc(desc) {
		return code(dlock.ErrInval)
	}
	name := goBytes(desc.p_desc, desc.len)
	*lockID = C.int(djb2(name))
	inited, in := lookupClient(clientID)
	if !inited || in == nil {
		return errGeneric
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	var l *dlock.Lock
	err := in.routed(ctx, string(name), func(c *dlock.Client) (err error) {
		l, err = c.OpenLock(ctx, string(name), dlock.LockOptions{Type: dlock.LockType(desc.lock_type), LeaseTime: uint32(desc.lease_time)})
		return err
	})
	if err != nil {
		return statusOf(err)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	id, dup := in.addLock(l)
	*lockID = C.int(id)
	if dup {
		return errGeneric
	}
	return 0
}

// release_lock releases a lock the client has got and does not hold.
//
//export release_lock
func release_lock(clientID C.int, lockID C.int) C.int {
	inited, in := lookupClient(clientID)
	if !inited || in == nil {
		return errGeneric
	}
	in.mu.Lock()
	if in.async != nil && in.async.lockID == int32(lockID) {
		in.mu.Unlock()
		return code(dlock.ErrAsync)
	}
	l := in.locks[int32(lockID)]
	in.mu.Unlock()
	if l == nil {
		return errGeneric
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	err := l.Release(ctx)
	rc := statusOf(err)
	switch dlock.Status(rc) {
	case dlock.ErrNotReady, dlock.ErrBadResponse, dlock.ErrTicketToUnlock:
		return rc
	case dlock.ErrGeneric:
		if l.Held() { // "unlock first": nothing was sent
			return rc
		}
	}
	in.mu.Lock()
	in.dropLock(int32(lockID))
	in.mu.Unlock()
	return rc
}

// batch_get_lock gets up to 31 locks in one request. lock_ids[i]
// receives the id, or a negative value for an entry that failed.
//
//export batch_get_lock
func batch_get_lock(clientID C.int, lockNum C.uint, descs *C.struct_lock_desc, lockIDs *C.int) C.int {
	if lockIDs == nil || descs == nil || lockNum == 0 || lockNum > dlock.MaxBatch {
		return code(dlock.ErrInval)
	}
	n := int(lockNum)
	ds := unsafe.Slice(descs, n)
	ids := unsafe.Slice(lockIDs, n)
	names := make([]string, n)
	opts := make([]dlock.LockOptions, n)
	for i := range ds {
		if !validDesc(&ds[i]) {
			return code(dlock.ErrInval)
		}
		b := goBytes(ds[i].p_desc, ds[i].len)
		ids[i] = C.int(djb2(b))
		names[i] = string(b)
		opts[i] = dlock.LockOptions{Type: dlock.LockType(ds[i].lock_type), LeaseTime: uint32(ds[i].lease_time)}
	}
	inited, in := lookupClient(clientID)
	if !inited || in == nil {
		return errGeneric
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	locks := make([]*dlock.Lock, n)
	got := make([]int32, n)
	if err := in.batchOpen(ctx, names, opts, locks, got); err != nil {
		return statusOf(err)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for i, l := range locks {
		ids[i] = C.int(got[i])
		if l != nil {
			id, _ := in.addLock(l)
			ids[i] = C.int(id)
		}
	}
	return 0
}

// batch_release_lock releases up to 31 locks in one request.
// lock_ids is in/out: entries skipped by the local pre-check (async
// outstanding, not got, still locked) are set to 0.
//
//export batch_release_lock
func batch_release_lock(clientID C.int, lockNum C.uint, lockIDs *C.int) C.int {
	if lockIDs == nil || lockNum == 0 || lockNum > dlock.MaxBatch {
		return code(dlock.ErrInval)
	}
	inited, in := lookupClient(clientID)
	if !inited || in == nil {
		return errGeneric
	}
	ids := unsafe.Slice(lockIDs, int(lockNum))
	var locks []*dlock.Lock
	var sent []int32
	in.mu.Lock()
	for i, id := range ids {
		l := in.locks[int32(id)]
		if (in.async != nil && in.async.lockID == int32(id)) || l == nil || l.Held() {
			ids[i] = 0
			continue
		}
		locks = append(locks, l)
		sent = append(sent, int32(id))
	}
	in.mu.Unlock()
	if len(locks) == 0 {
		return errGeneric
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	rc := statusOf(in.batchRelease(ctx, locks))
	if st := dlock.Status(rc); st != dlock.ErrNotReady && st != dlock.ErrBadResponse {
		in.mu.Lock()
		for _, id := range sent {
			in.dropLock(id)
		}
		in.mu.Unlock()
	}
	return rc
}

// lockFor runs the common precondition checks of the single lock operations
// after the argument checks, in upstream's order: library initialised,
// client known, no async operation outstanding, lock opened.
func lockFor(clientID C.int, lockID int32) (*instance, *dlock.Lock, C.int) {
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return nil, nil, code(dlock.ErrClientMgrNotInit)
	case in == nil:
		return nil, nil, code(dlock.ErrClientNotInit)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.async != nil {
		in.extra.Inc(dlock.StatEAsync)
		return nil, nil, code(dlock.ErrAsync)
	}
	l := in.locks[lockID]
	if l == nil {
		in.extra.Inc(dlock.StatLockNotGet)
		return nil, nil, code(dlock.ErrLockNotGet)
	}
	return in, l, 0
}

// do runs one operation with the C semantics and fills result.
func do(l *dlock.Lock, op dlock.Op, expire uint32, block bool, result unsafe.Pointer) C.int {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	st, state, filled, err := lockDo(l, ctx, op, expire, block)
	if err != nil {
		return statusOf(err)
	}
	if filled {
		writeState(result, l.Type(), state)
	}
	return code(st)
}

func isLockOp(op C.int) bool { return op == C.LOCK_EXCLUSIVE || op == C.LOCK_SHARED }

func isExtendOp(op C.int) bool { return op == C.EXTEND_LOCK_EXCLUSIVE || op == C.EXTEND_LOCK_SHARED }

// trylock tries to take a lock without waiting. expire_time 0 only
// reads the cached lock value.
//
//export trylock
func trylock(clientID C.int, req *C.struct_lock_request, result unsafe.Pointer) C.int {
	if req == nil || result == nil || !isLockOp(req.lock_op) {
		return code(dlock.ErrInval)
	}
	_, l, rc := lockFor(clientID, int32(req.lock_id))
	if rc != 0 {
		return rc
	}
	return do(l, dlock.Op(req.lock_op), uint32(req.expire_time), false, result)
}

// lock takes a lock, waiting up to 5 s (SEMANTICS.md §6.3). The wait happens on the
// server (the request is queued and answered when the lock is handed over);
// a fair lock that was not granted in time keeps its ticket (DLOCK_EAGAIN).
// Attempts that fail without waiting are retried every 100 ms within the
// same 5 s budget, as upstream.
//
//export lock
func lock(clientID C.int, req *C.struct_lock_request, result unsafe.Pointer) C.int {
	if req == nil || result == nil || !isLockOp(req.lock_op) {
		return code(dlock.ErrInval)
	}
	start := time.Now()
	for {
		_, l, rc := lockFor(clientID, int32(req.lock_id))
		if rc == 0 {
			rc = do(l, dlock.Op(req.lock_op), uint32(req.expire_time), true, result)
			if dlock.Status(rc) == dlock.ErrTimeout {
				// The server-side wait ran out: upstream's last attempt
				// would have found the lock taken.
				rc = code(dlock.ErrFail)
			}
		}
		if st := dlock.Status(rc); st == dlock.Success || st == dlock.ErrAlreadyLocked {
			return rc
		}
		time.Sleep(sleepInterval)
		if time.Since(start) >= lockTimeout {
			return rc
		}
	}
}

// unlock releases one hold of a lock.
//
//export unlock
func unlock(clientID C.int, lockID C.int, result unsafe.Pointer) C.int {
	if result == nil {
		return code(dlock.ErrInval)
	}
	_, l, rc := lockFor(clientID, int32(lockID))
	if rc != 0 {
		return rc
	}
	return do(l, dlock.OpUnlock, 0, false, result)
}

// lock_extend moves the expiry of a hold.
//
//export lock_extend
func lock_extend(clientID C.int, req *C.struct_lock_request, result unsafe.Pointer) C.int {
	if req == nil || result == nil || !isExtendOp(req.lock_op) {
		return code(dlock.ErrInval)
	}
	_, l, rc := lockFor(clientID, int32(req.lock_id))
	if rc != 0 {
		return rc
	}
	return do(l, dlock.Op(req.lock_op), uint32(req.expire_time), false, result)
}

// batchFor runs the batch preconditions after the argument checks.
func batchFor(clientID C.int) (*instance, C.int) {
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return nil, code(dlock.ErrClientMgrNotInit)
	case in == nil:
		return nil, code(dlock.ErrClientNotInit)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.async != nil {
		in.extra.Inc(dlock.StatEAsync)
		return nil, code(dlock.ErrAsync)
	}
	return in, 0
}

// batchResults is a caller's array of struct lock_op_res.
type batchResults []byte

func (r batchResults) set(i int, st C.int) {
	*(*C.int)(unsafe.Pointer(&r[i*resStride+16])) = st
}

func (r batchResults) state(i int, typ dlock.LockType, s dlock.LockState) {
	writeState(unsafe.Pointer(&r[i*resStride]), typ, s)
}

// batchEntry is one entry of a batch lock operation.
type batchEntry struct {
	l      *dlock.Lock
	op     dlock.Op
	expire uint32
}

// runBatch runs entries: those not got are answered DLOCK_LOCK_NOT_GET,
// peeks (a lock op with expire_time 0) from the cache, the rest through one
// Go batch call. Every entry gets its op_ret; the state of an entry whose
// value was refreshed is written, as upstream does.
func runBatch(in *instance, entries []batchEntry, res batchResults) {
	var (
		goIdx  []int
		goReqs []dlock.LockRequest
		goLks  []*dlock.Lock
	)
	kind := dlock.OpUnlock
	for i, e := range entries {
		kind = e.op
		switch {
		case e.l == nil:
			in.inc(dlock.StatLockNotGet)
			res.set(i, code(dlock.ErrLockNotGet))
		case e.op <= dlock.OpLockShared && e.expire == 0:
			res.set(i, do(e.l, e.op, 0, false, unsafe.Pointer(&res[i*resStride])))
		default:
			goIdx = append(goIdx, i)
			mode := dlock.Exclusive
			if e.op == dlock.OpLockShared || e.op == dlock.OpExtendShared {
				mode = dlock.Shared
			}
			goReqs = append(goReqs, dlock.LockRequest{Lock: e.l, Mode: mode, TTL: time.Duration(e.expire) * time.Second})
			goLks = append(goLks, e.l)
		}
	}
	if len(goIdx) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	out := make([]dlock.Result, len(goIdx))
	switch kind {
	case dlock.OpLockExclusive, dlock.OpLockShared:
		in.batchTryLock(ctx, goReqs, out)
	case dlock.OpUnlock:
		in.batchUnlock(ctx, goLks, out)
	default:
		in.batchExtend(ctx, goReqs, out)
	}
	for j, i := range goIdx {
		r := out[j]
		res.set(i, code(r.Status))
		if r.Filled {
			res.state(i, entries[i].l.Type(), r.State)
		}
	}
}

// batchRequests validates and resolves a batch of lock requests whose ops
// must satisfy ok.
func batchRequests(clientID C.int, lockNum C.uint, reqs *C.struct_lock_request, results unsafe.Pointer, ok func(C.int) bool) (*instance, []batchEntry, batchResults, C.int) {
	if reqs == nil || results == nil || lockNum == 0 || lockNum > dlock.MaxBatch {
		return nil, nil, nil, code(dlock.ErrInval)
	}
	rs := unsafe.Slice(reqs, int(lockNum))
	for i := range rs {
		if !ok(rs[i].lock_op) {
			return nil, nil, nil, code(dlock.ErrInval)
		}
	}
	in, rc := batchFor(clientID)
	if rc != 0 {
		return nil, nil, nil, rc
	}
	entries := make([]batchEntry, len(rs))
	in.mu.Lock()
	for i := range rs {
		entries[i] = batchEntry{l: in.locks[int32(rs[i].lock_id)], op: dlock.Op(rs[i].lock_op), expire: uint32(rs[i].expire_time)}
	}
	in.mu.Unlock()
	return in, entries, batchResults(unsafe.Slice((*byte)(results), int(lockNum)*resStride)), 0
}

// batch_trylock tries up to 31 locks in one request; the outcome of
// entry i is in results[i].op_ret.
//
//export batch_trylock
func batch_trylock(clientID C.int, lockNum C.uint, reqs *C.struct_lock_request, results unsafe.Pointer) C.int {
	in, entries, res, rc := batchRequests(clientID, lockNum, reqs, results, isLockOp)
	if rc != 0 {
		return rc
	}
	runBatch(in, entries, res)
	return 0
}

// batch_lock_extend extends up to 31 holds in one request.
//
//export batch_lock_extend
func batch_lock_extend(clientID C.int, lockNum C.uint, reqs *C.struct_lock_request, results unsafe.Pointer) C.int {
	in, entries, res, rc := batchRequests(clientID, lockNum, reqs, results, isExtendOp)
	if rc != 0 {
		return rc
	}
	runBatch(in, entries, res)
	return 0
}

// batch_unlock unlocks up to 31 locks in one request.
//
//export batch_unlock
func batch_unlock(clientID C.int, lockNum C.uint, lockIDs *C.int, results unsafe.Pointer) C.int {
	if lockIDs == nil || results == nil || lockNum == 0 || lockNum > dlock.MaxBatch {
		return code(dlock.ErrInval)
	}
	in, rc := batchFor(clientID)
	if rc != 0 {
		return rc
	}
	ids := unsafe.Slice(lockIDs, int(lockNum))
	entries := make([]batchEntry, len(ids))
	in.mu.Lock()
	for i, id := range ids {
		entries[i] = batchEntry{l: in.locks[int32(id)], op: dlock.OpUnlock}
	}
	in.mu.Unlock()
	runBatch(in, entries, batchResults(unsafe.Slice((*byte)(results), int(lockNum)*resStride)))
	return 0
}
