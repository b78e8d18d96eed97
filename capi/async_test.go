package main

import (
	"context"
	"errors"
	"testing"
	"time"
	"unsafe"

	"github.com/dlock-io/dlock"
)

// TestCheckResult covers the paths of lock_result_check that a C program
// cannot provoke against a healthy server: the 5-second timeout, after
// which the operation is forgotten (its late reply dropped), a transport
// failure, and a result for a lock released since. The wait functions
// stand in for the ones dlock.Lock.Start returns.
func TestCheckResult(t *testing.T) {
	in := &instance{locks: map[int32]*dlock.Lock{7: new(dlock.Lock)}}
	var buf [20]byte
	res := unsafe.Pointer(&buf[0])
	// settle waits until the outstanding operation has its outcome.
	settle := func() {
		t.Helper()
		select {
		case <-in.async.done:
		case <-time.After(5 * time.Second):
			t.Fatal("the wait did not end")
		}
	}

	if got := in.checkResult(res); got != dlock.ErrNoAsync {
		t.Errorf("nothing outstanding: got %v, want %v", got, dlock.ErrNoAsync)
	}

	forgotten := make(chan error, 1)
	in.startAsync(7, dlock.Atomic, func(ctx context.Context) (dlock.Status, dlock.LockState, bool, error) {
		<-ctx.Done() // no reply comes
		forgotten <- ctx.Err()
		return 0, dlock.LockState{}, false, ctx.Err()
	})
	if got := in.checkResult(res); got != dlock.ErrAsyncAgain {
		t.Errorf("running: got %v, want %v", got, dlock.ErrAsyncAgain)
	}
	in.async.start = time.Now().Add(-lockTimeout - time.Millisecond)
	if got := in.checkResult(res); got != dlock.ErrTimeout {
		t.Errorf("after 5 s: got %v, want %v", got, dlock.ErrTimeout)
	}
	if err := <-forgotten; !errors.Is(err, context.Canceled) {
		t.Errorf("the wait's ctx ended with %v, want it cancelled (the operation forgotten)", err)
	}
	if got := in.checkResult(res); got != dlock.ErrNoAsync {
		t.Errorf("after the timeout: got %v, want %v", got, dlock.ErrNoAsync)
	}
	if in.extra[dlock.StatETimeout] != 1 || in.extra[dlock.StatNoAsync] != 2 {
		t.Errorf("counters ETIMEOUT %d NO_ASYNC %d, want 1 and 2", in.extra[dlock.StatETimeout], in.extra[dlock.StatNoAsync])
	}

	state := dlock.AtomicState{Owner: 42, Timeout: 99}.State()
	for i := range buf {
		buf[i] = 0xAB
	}
	in.startAsync(7, dlock.Atomic, func(context.Context) (dlock.Status, dlock.LockState, bool, error) {
		return dlock.Success, state, true, nil
	})
	settle()
	if got := in.checkResult(res); got != dlock.Success {
		t.Errorf("done: got %v, want success", got)
	}
	if [8]byte(buf[:8]) != [8]byte(state[:8]) || buf[8] != 0xAB {
		t.Errorf("result % x: want the 8-byte atomic state and the rest untouched", buf)
	}

	in.startAsync(7, dlock.Atomic, func(context.Context) (dlock.Status, dlock.LockState, bool, error) {
		return 0, dlock.LockState{}, false, errors.New("connection reset")
	})
	settle()
	if got := in.checkResult(res); got != dlock.ErrBadResponse {
		t.Errorf("transport failure: got %v, want %v", got, dlock.ErrBadResponse)
	}

	in.startAsync(8, dlock.Atomic, func(context.Context) (dlock.Status, dlock.LockState, bool, error) {
		return dlock.Success, dlock.LockState{}, false, nil
	})
	settle()
	if got := in.checkResult(res); got != dlock.ErrLockNotGet {
		t.Errorf("lock gone: got %v, want %v", got, dlock.ErrLockNotGet)
	}
}
