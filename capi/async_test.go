package main

import (
	"testing"
	"time"
	"unsafe"

	"github.com/dlock-io/dlock"
)

// TestCheckResult covers the paths of lock_result_check that a C program
// cannot provoke against a healthy server: the 5-second timeout, after
// which a late result is dropped, and a result for a lock released since.
func TestCheckResult(t *testing.T) {
	in := &instance{locks: map[int32]*dlock.Lock{7: new(dlock.Lock)}}
	var buf [20]byte
	res := unsafe.Pointer(&buf[0])

	if got := in.checkResult(res); got != dlock.ErrNoAsync {
		t.Errorf("nothing outstanding: got %v, want %v", got, dlock.ErrNoAsync)
	}
	pending := &asyncOp{lockID: 7, typ: dlock.Atomic, start: time.Now(), done: make(chan struct{})}
	in.async = pending
	if got := in.checkResult(res); got != dlock.ErrAsyncAgain {
		t.Errorf("running: got %v, want %v", got, dlock.ErrAsyncAgain)
	}
	pending.start = time.Now().Add(-lockTimeout - time.Millisecond)
	if got := in.checkResult(res); got != dlock.ErrTimeout {
		t.Errorf("after 5 s: got %v, want %v", got, dlock.ErrTimeout)
	}
	close(pending.done) // the late result
	if got := in.checkResult(res); got != dlock.ErrNoAsync {
		t.Errorf("late result: got %v, want it dropped (%v)", got, dlock.ErrNoAsync)
	}
	if in.extra[dlock.StatETimeout] != 1 || in.extra[dlock.StatNoAsync] != 2 {
		t.Errorf("counters ETIMEOUT %d NO_ASYNC %d, want 1 and 2", in.extra[dlock.StatETimeout], in.extra[dlock.StatNoAsync])
	}

	state := dlock.AtomicState{Owner: 42, Timeout: 99}.State()
	for i := range buf {
		buf[i] = 0xAB
	}
	done := &asyncOp{lockID: 7, typ: dlock.Atomic, start: time.Now(), done: make(chan struct{}),
		status: dlock.Success, state: state, filled: true}
	close(done.done)
	in.async = done
	if got := in.checkResult(res); got != dlock.Success {
		t.Errorf("done: got %v, want success", got)
	}
	if [8]byte(buf[:8]) != [8]byte(state[:8]) || buf[8] != 0xAB {
		t.Errorf("result % x: want the 8-byte atomic state and the rest untouched", buf)
	}

	gone := &asyncOp{lockID: 8, start: time.Now(), done: make(chan struct{}), status: dlock.Success}
	close(gone.done)
	in.async = gone
	if got := in.checkResult(res); got != dlock.ErrLockNotGet {
		t.Errorf("lock gone: got %v, want %v", got, dlock.ErrLockNotGet)
	}
}
