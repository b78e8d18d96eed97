package dlock_test

// Proof that the robustness suite's checkers can fail: each test feeds a
// checker a history (or a system) that breaks the checker's rule — a
// storage that accepts stale tokens, a history with two holders, a token
// reused, an unlock after a takeover, duplicate fetch-and-add results, a
// non-linearizable compare-and-swap register, a stalled worker, and a
// "split brain" where two servers grant the same lock — and asserts that
// the violation is reported, next to the same check passing on a correct
// history.

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

const ms = int64(time.Millisecond)

// wantViolation fails unless bad has a violation containing want.
func wantViolation(t *testing.T, bad []string, want string) {
	t.Helper()
	for _, b := range bad {
		if strings.Contains(b, want) {
			t.Logf("caught: %s", b)
			return
		}
	}
	t.Errorf("the checker missed the violation %q; it reported %q", want, bad)
}

func wantClean(t *testing.T, bad []string) {
	t.Helper()
	if len(bad) > 0 {
		t.Errorf("the checker flagged a correct history: %q", bad)
	}
}

// staleWrite runs, against a real (in-memory) server in a synctest bubble,
// the pause that fencing exists for: A takes an atomic lock and reads the
// storage; A stalls past its lease; B takes the lock, reads and writes; A
// wakes and writes what it computed from its stale read. It returns the
// history.
func staleWrite(t *testing.T, st store) []histOp {
	var ops []histOp
	synctest.Test(t, func(t *testing.T) {
		srv := dlocktest.NewPipeServer(t, nil)
		ctx := context.Background()
		opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Second}
		a, b := srv.Dial(t), srv.Dial(t)
		la, lb := open(t, a, "k", opts), open(t, b, "k", opts)
		rec := func(proc int, kind string, token, v uint64, ok bool) {
			ops = append(ops, histOp{Proc: proc, Kind: kind, Key: "k", Leased: true, TTL: int64(time.Second), Token: token, Value: v, OK: ok, Invoke: now(), Complete: now()})
		}
		if err := la.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		ta := la.Token()
		rec(1, opLock, ta, 0, true)
		va, ok := st.read("k", ta, false)
		rec(1, opRead, ta, va, ok)
		time.Sleep(3 * time.Second) // A stalls past its lease
		if err := lb.Lock(ctx); err != nil {
			t.Fatal(err)
		}
		tb := lb.Token()
		rec(2, opLock, tb, 0, true)
		vb, ok := st.read("k", tb, false)
		rec(2, opRead, tb, vb, ok)
		rec(2, opWrite, tb, vb+1, st.write("k", tb, vb+1))
		rec(2, opUnlock, tb, 0, lb.Unlock(ctx) == nil)
		rec(1, opWrite, ta, va+1, st.write("k", ta, va+1)) // A wakes up
		rec(1, opUnlock, ta, 0, la.Unlock(ctx) == nil)
	})
	return ops
}

// TestCheckerStaleStorage: the storage check catches a storage that accepts
// a stale token (a lost update), and passes the fenced one.
func TestCheckerStaleStorage(t *testing.T) {
	good := newFencedStore()
	ops := staleWrite(t, good)
	wantClean(t, checkStorage(good))
	wantClean(t, checkHolders(ops))
	wantClean(t, checkUnlocks(ops))
	wantClean(t, checkTokens(ops))

	broken := newFencedStore()
	broken.acceptStale = true
	staleWrite(t, broken)
	wantViolation(t, checkStorage(broken), "an update was lost")
}

// TestCheckerTwoHolders: two exclusive holds whose certain intervals
// overlap, and a fenced access refused during a certain hold, are caught;
// shared holds side by side and holds one after the other are not.
func TestCheckerTwoHolders(t *testing.T) {
	lock := func(proc int, token uint64, shared bool, inv, done int64) histOp {
		return histOp{Proc: proc, Kind: opLock, Key: "k", Token: token, Shared: shared, OK: true, Invoke: inv, Complete: done}
	}
	unlock := func(proc int, token uint64, shared bool, inv int64) histOp {
		return histOp{Proc: proc, Kind: opUnlock, Key: "k", Token: token, Shared: shared, OK: true, Invoke: inv, Complete: inv + ms}
	}
	overlap := []histOp{lock(1, 10, false, 0, 1*ms), unlock(1, 10, false, 50*ms), lock(2, 11, false, 10*ms, 20*ms), unlock(2, 11, false, 60*ms)}
	wantViolation(t, checkHolders(overlap), "two holders at once")
	sharedWithExclusive := []histOp{lock(1, 10, true, 0, 1*ms), unlock(1, 10, true, 50*ms), lock(2, 11, false, 10*ms, 20*ms), unlock(2, 11, false, 60*ms)}
	wantViolation(t, checkHolders(sharedWithExclusive), "two holders at once")
	refused := []histOp{lock(1, 10, false, 0, 1*ms), {Proc: 1, Kind: opWrite, Key: "k", Token: 10, Invoke: 5 * ms, Complete: 6 * ms}, unlock(1, 10, false, 50*ms)}
	wantViolation(t, checkHolders(refused), "refused by the storage")

	wantClean(t, checkHolders([]histOp{lock(1, 10, true, 0, 1*ms), unlock(1, 10, true, 50*ms), lock(2, 11, true, 10*ms, 20*ms), unlock(2, 11, true, 60*ms)}))
	wantClean(t, checkHolders([]histOp{lock(1, 10, false, 0, 1*ms), unlock(1, 10, false, 50*ms), lock(2, 11, false, 10*ms, 55*ms), unlock(2, 11, false, 60*ms)}))
	// A leased hold whose unlock failed ends with its lease: a takeover
	// after that is no overlap.
	leased := []histOp{
		{Proc: 1, Kind: opLock, Key: "k", Token: 10, Leased: true, TTL: int64(2 * time.Second), OK: true, Invoke: 0, Complete: ms},
		{Proc: 2, Kind: opLock, Key: "k", Token: 11, Leased: true, TTL: int64(2 * time.Second), OK: true, Invoke: 500 * ms, Complete: 2100 * ms},
		{Proc: 1, Kind: opUnlock, Key: "k", Token: 10, Leased: true, Invoke: 2500 * ms, Complete: 2501 * ms},
	}
	wantClean(t, checkHolders(leased))
	leased[1].Complete = 1900 * ms // granted while the lease surely ran
	wantViolation(t, checkHolders(leased), "two holders at once")
	// Unless the holder had tried to unlock before: that attempt's reply
	// was lost, but it may have released the lock.
	leased[2].Invoke, leased[2].Retry = 1800*ms, 2500*ms
	wantClean(t, checkHolders(leased))
}

// TestCheckerTokens: a token granted twice, and a later grant with a lower
// token, are caught; a reentrant hold of the same client is not a new grant.
func TestCheckerTokens(t *testing.T) {
	g := func(proc int, token uint64, inv, done int64) histOp {
		return histOp{Proc: proc, Kind: opLock, Key: "k", Token: token, OK: true, Invoke: inv, Complete: done}
	}
	wantViolation(t, checkTokens([]histOp{g(1, 7, 0, ms), g(2, 7, 5*ms, 6*ms)}), "granted twice")
	wantViolation(t, checkTokens([]histOp{g(1, 9, 0, ms), g(2, 8, 5*ms, 6*ms)}), "not above token 9")
	wantClean(t, checkTokens([]histOp{g(1, 9, 0, 10*ms), g(2, 8, 5*ms, 6*ms)})) // concurrent: any order
	wantClean(t, checkTokens([]histOp{g(1, 7, 0, ms), g(1, 7, 5*ms, 6*ms)}))    // reentrant
	unlocked := []histOp{g(1, 7, 0, ms), {Proc: 1, Kind: opUnlock, Key: "k", Token: 7, OK: true, Invoke: 2 * ms, Complete: 3 * ms}, g(1, 7, 5*ms, 6*ms)}
	wantViolation(t, checkTokens(unlocked), "granted twice") // released, then the same token again
	// Reentrant holds count: lock, lock, unlock leaves the grant held.
	nested := []histOp{g(1, 7, 0, ms), g(1, 7, 2*ms, 3*ms), {Proc: 1, Kind: opUnlock, Key: "k", Token: 7, OK: true, Invoke: 4 * ms, Complete: 5 * ms}, g(1, 7, 6*ms, 7*ms)}
	wantClean(t, checkTokens(nested))
}

// TestCheckerUnlockAfterTakeover: an unlock that succeeds after another
// client was granted the lock with a newer token is caught.
func TestCheckerUnlockAfterTakeover(t *testing.T) {
	ops := []histOp{
		{Proc: 1, Kind: opLock, Key: "k", Token: 10, OK: true, Invoke: 0, Complete: ms},
		{Proc: 2, Kind: opLock, Key: "k", Token: 11, OK: true, Invoke: 2 * ms, Complete: 3000 * ms},
		{Proc: 1, Kind: opUnlock, Key: "k", Token: 10, OK: true, Invoke: 3100 * ms, Complete: 3101 * ms},
	}
	wantViolation(t, checkUnlocks(ops), "after proc 2 took over")
	// Retried: the first attempt before the takeover (its reply lost), the
	// one that succeeded after it.
	ops[2].Invoke, ops[2].Retry = 2*ms, 3100*ms
	wantViolation(t, checkUnlocks(ops), "after proc 2 took over")
	ops[2].OK = false
	wantClean(t, checkUnlocks(ops))
}

// TestCheckerFAA: duplicate fetch-and-add results and a final value that
// lost or invented adds are caught; adds of unknown outcome may or may not
// count.
func TestCheckerFAA(t *testing.T) {
	add := func(proc int, prev uint64, ok, unknown bool) histOp {
		return histOp{Proc: proc, Kind: opFAA, Key: "n", A: 1, Value: prev, OK: ok, Unknown: unknown}
	}
	ops := []histOp{add(1, 0, true, false), add(2, 1, true, false), add(1, 0, false, true)}
	wantClean(t, checkFAA(ops, map[string]uint64{"n": 2}))
	wantClean(t, checkFAA(ops, map[string]uint64{"n": 3}))
	wantViolation(t, checkFAA(ops, map[string]uint64{"n": 1}), "final value 1")
	wantViolation(t, checkFAA(ops, map[string]uint64{"n": 4}), "final value 4")
	dup := append(ops, add(3, 1, true, false))
	wantViolation(t, checkFAA(dup, nil), "returned 1 twice")
}

// TestCheckerCAS: porcupine finds a stale read after a swap, and a swap
// that succeeded on a value the register did not hold; operations of
// unknown outcome may take effect late or never.
func TestCheckerCAS(t *testing.T) {
	load := func(proc int, v uint64, inv, done int64) histOp {
		return histOp{Proc: proc, Kind: opLoad, Key: "r", Value: v, OK: true, Invoke: inv, Complete: done}
	}
	cas := func(proc int, old, new uint64, swapped bool, inv, done int64) histOp {
		op := histOp{Proc: proc, Kind: opCAS, Key: "r", A: old, B: new, OK: true, Invoke: inv, Complete: done}
		if swapped {
			op.Value = 1
		}
		return op
	}
	unknown := func(proc int, old, new uint64, inv int64) histOp {
		return histOp{Proc: proc, Kind: opCAS, Key: "r", A: old, B: new, Unknown: true, Invoke: inv}
	}
	const to = 10 * time.Second
	wantClean(t, checkCAS([]histOp{load(1, 0, 0, ms), cas(1, 0, 5, true, 2*ms, 3*ms), load(2, 5, 4*ms, 5*ms)}, to))
	wantViolation(t, checkCAS([]histOp{load(1, 0, 0, ms), cas(1, 0, 5, true, 2*ms, 3*ms), load(2, 0, 4*ms, 5*ms)}, to), "not linearizable")
	wantViolation(t, checkCAS([]histOp{cas(1, 0, 5, true, 0, ms), cas(2, 0, 6, true, 2*ms, 3*ms)}, to), "not linearizable")
	wantViolation(t, checkCAS([]histOp{cas(1, 0, 5, false, 0, ms)}, to), "not linearizable") // refused although 0 was there
	// Unknown outcome: it may land late, or never, but not undo itself.
	wantClean(t, checkCAS([]histOp{unknown(1, 0, 5, 0), load(2, 0, 2*ms, 3*ms), load(2, 5, 4*ms, 5*ms)}, to))
	wantClean(t, checkCAS([]histOp{unknown(1, 0, 5, 0), load(2, 0, 2*ms, 3*ms)}, to))
	wantViolation(t, checkCAS([]histOp{unknown(1, 0, 5, 0), load(2, 5, 2*ms, 3*ms), load(2, 0, 4*ms, 5*ms)}, to), "not linearizable")
}

// TestCheckerLiveness: a worker or a lock without progress after the heal
// is caught.
func TestCheckerLiveness(t *testing.T) {
	healed := int64(1000 * ms)
	ops := []histOp{
		{Proc: 1, Kind: opLock, Key: "a", OK: true, Invoke: healed, Complete: healed + ms},
		{Proc: 2, Kind: opFAA, Key: "n", OK: true, Invoke: healed, Complete: healed + 2*ms},
		{Proc: 3, Kind: opLock, Key: "b", OK: true, Invoke: 0, Complete: healed - ms}, // before the heal
		{Proc: 3, Kind: opLock, Key: "b", OK: false, Invoke: healed, Complete: healed + 5*ms},
	}
	bad := checkLiveness(ops, []int{1, 2, 3}, []string{"a", "b"}, healed, time.Second)
	wantViolation(t, bad, "worker 3 made no progress")
	wantViolation(t, bad, "lock b was granted to nobody")
	wantClean(t, checkLiveness(ops, []int{1, 2}, []string{"a"}, healed, time.Second))
	// A reentrant hold by a client that never let go is no progress.
	stuck := []histOp{
		{Proc: 1, Kind: opLock, Key: "a", Token: 5, OK: true, Invoke: 0, Complete: ms},
		{Proc: 1, Kind: opLock, Key: "a", Token: 5, OK: true, Invoke: healed, Complete: healed + ms},
	}
	wantViolation(t, checkLiveness(stuck, []int{1}, []string{"a"}, healed, time.Second), "lock a was granted to nobody")
}

// TestCheckerSplitBrain runs the suite's workload on a system that grants
// twice: half the workers talk to the real server, the other half to a
// second server that knows nothing of the first (as a primary that lost
// its state would). The checkers must report the two holders.
func TestCheckerSplitBrain(t *testing.T) {
	e := newRobustEnv(t)
	other := dlocktest.NewServer(t, &dlockserver.Config{SessionTimeout: robustSession})
	var n atomic.Int32
	split := func(ctx context.Context, network, address string) (net.Conn, error) {
		target := address
		if n.Add(1)%2 == 0 {
			target = other.Addr
		}
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}
	bad := e.run(scenario{workers: 4, warmup: time.Second, bound: time.Second, dial: split})
	wantViolation(t, bad, "two holders at once")
}
