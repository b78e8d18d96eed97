package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func open(t *testing.T, c *dlock.Client, name string, opts dlock.LockOptions) *dlock.Lock {
	t.Helper()
	l, err := c.OpenLock(context.Background(), name, opts)
	if err != nil {
		t.Fatalf("OpenLock(%q): %v", name, err)
	}
	return l
}

func mustTry(t *testing.T, l *dlock.Lock, shared bool, want bool) {
	t.Helper()
	var ok bool
	var err error
	if shared {
		ok, err = l.TryRLock(context.Background())
	} else {
		ok, err = l.TryLock(context.Background())
	}
	if err != nil || ok != want {
		t.Fatalf("try(%q, shared=%v) = %v, %v; want %v, nil", l.Name(), shared, ok, err, want)
	}
}

// waitFor polls cond (a server-side observation) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func waiters(srv *dlocktest.Server, l *dlock.Lock) int {
	info, _ := srv.LockInfo(l.ID())
	return info.Waiters
}

func TestAtomicTryLockUnlock(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	la := open(t, a, "lock desc 1", dlock.LockOptions{Type: dlock.Atomic})
	lb := open(t, b, "lock desc 1", dlock.LockOptions{Type: dlock.Atomic})
	if la.ID() != 1252963582 || lb.ID() != la.ID() {
		t.Fatalf("lock ids %d, %d; want the djb2 hash 1252963582 for both", la.ID(), lb.ID())
	}
	mustTry(t, la, false, true)
	if got := la.State().Atomic(); got.Owner != a.ID() {
		t.Errorf("state owner = %d, want %d", got.Owner, a.ID())
	}
	tok1 := la.Token()
	mustTry(t, lb, false, false)
	if err := lb.Unlock(ctx); !errors.Is(err, dlock.ErrAlreadyUnlocked) {
		t.Errorf("Unlock by non-holder = %v, want ErrAlreadyUnlocked", err)
	}
	if err := la.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	mustTry(t, lb, false, true)
	if tok2 := lb.Token(); tok2 <= tok1 || tok1 == 0 {
		t.Errorf("fencing tokens %d then %d: want strictly increasing and non-zero", tok1, tok2)
	}
	if err := lb.Extend(ctx, 30*time.Second); err != nil {
		t.Errorf("Extend: %v", err)
	}
	if err := lb.Release(ctx); !errors.Is(err, dlock.ErrGeneric) {
		t.Errorf("Release while held = %v, want ErrGeneric (unlock first)", err)
	}
	if err := lb.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Errorf("Release: %v", err)
	}
	if _, err := lb.TryLock(ctx); !errors.Is(err, dlock.ErrLockNotGet) {
		t.Errorf("TryLock after Release = %v, want ErrLockNotGet", err)
	}
}

func TestOpenLockTypeMismatch(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	a := srv.Dial(t)
	open(t, a, "typed", dlock.LockOptions{Type: dlock.RW})
	if _, err := a.OpenLock(context.Background(), "typed", dlock.LockOptions{Type: dlock.Fair}); !errors.Is(err, dlock.ErrGeneric) {
		t.Errorf("OpenLock with another type = %v, want ErrGeneric", err)
	}
	if _, err := a.OpenLock(context.Background(), "", dlock.LockOptions{}); !errors.Is(err, dlock.ErrInval) {
		t.Errorf("OpenLock(\"\") = %v, want ErrInval", err)
	}
}

func TestReentrancy(t *testing.T) {
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair} {
		t.Run(typ.String(), func(t *testing.T) {
			srv := dlocktest.NewServer(t, nil)
			ctx := testCtx(t)
			a, b := srv.Dial(t), srv.Dial(t)
			la := open(t, a, "re", dlock.LockOptions{Type: typ})
			lb := open(t, b, "re", dlock.LockOptions{Type: typ})
			mustTry(t, la, false, true)
			mustTry(t, la, false, true) // reentrant hold
			if err := la.Lock(ctx); err != nil {
				t.Fatalf("reentrant Lock: %v", err)
			}
			for i := 0; i < 2; i++ {
				if err := la.Unlock(ctx); err != nil {
					t.Fatalf("Unlock %d: %v", i, err)
				}
				if !la.Held() {
					t.Fatalf("after %d of 3 unlocks the hold is gone", i+1)
				}
				if info, _ := srv.LockInfo(la.ID()); info.State == (dlock.LockState{}) {
					t.Fatalf("server shows the lock free after %d of 3 unlocks", i+1)
				}
			}
			if err := la.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
			if la.Held() {
				t.Fatal("still held after the last unlock")
			}
			mustTry(t, lb, false, true)
		})
	}
}

func TestRWReadersAndWriter(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	r1, r2, w := srv.Dial(t), srv.Dial(t), srv.Dial(t)
	l1 := open(t, r1, "rw", dlock.LockOptions{Type: dlock.RW})
	l2 := open(t, r2, "rw", dlock.LockOptions{Type: dlock.RW})
	lw := open(t, w, "rw", dlock.LockOptions{Type: dlock.RW})
	mustTry(t, l1, true, true)
	mustTry(t, l2, true, true)
	if got := l2.State().RW(); got.RCount != 2 || got.Owner != 0 {
		t.Errorf("state after two readers = %+v, want rcount 2, owner 0", got)
	}
	mustTry(t, lw, false, false)
	got := make(chan error, 1)
	go func() { got <- lw.Lock(ctx) }()
	waitFor(t, "writer queued", func() bool { return waiters(srv, lw) == 1 })
	if err := l1.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		t.Fatalf("writer granted beside a reader: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := l2.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("writer Lock: %v", err)
	}
	mustTry(t, l1, true, false)
	if _, err := l1.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lw.Extend(ctx, time.Second); !errors.Is(err, dlock.ErrInval) {
		t.Errorf("Extend of an RW lock = %v, want ErrInval", err)
	}
}

func TestFairFIFOUnderContention(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	holder := srv.Dial(t)
	lh := open(t, holder, "fifo", dlock.LockOptions{Type: dlock.Fair, TTL: time.Minute})
	mustTry(t, lh, false, true)
	const n = 8
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	locks := make([]*dlock.Lock, n)
	for i := range locks {
		locks[i] = open(t, srv.Dial(t), "fifo", dlock.LockOptions{Type: dlock.Fair, TTL: time.Minute})
	}
	for i, l := range locks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.Lock(ctx); err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			if err := l.Unlock(ctx); err != nil {
				t.Errorf("waiter %d unlock: %v", i, err)
			}
		}()
		// Queue the waiters one after another so their ticket order is known.
		waitFor(t, fmt.Sprintf("waiter %d queued", i), func() bool { return waiters(srv, l) == i+1 })
	}
	if err := lh.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, got := range order {
		if got != i {
			t.Fatalf("grant order %v, want 0..%d in order", order, n-1)
		}
	}
}

func TestBatch(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	names := make([]string, dlock.MaxBatch)
	for i := range names {
		names[i] = fmt.Sprintf("batch-%02d", i)
	}
	la := make([]*dlock.Lock, len(names))
	lb := make([]*dlock.Lock, len(names))
	if err := a.BatchOpenLock(ctx, names, dlock.LockOptions{Type: dlock.Atomic}, la); err != nil {
		t.Fatal(err)
	}
	if err := b.BatchOpenLock(ctx, names, dlock.LockOptions{Type: dlock.Atomic}, lb); err != nil {
		t.Fatal(err)
	}
	// b takes every third lock first.
	for i := 0; i < len(lb); i += 3 {
		mustTry(t, lb[i], false, true)
	}
	reqs := make([]dlock.LockRequest, len(la))
	for i, l := range la {
		reqs[i] = dlock.LockRequest{Lock: l}
	}
	res := make([]dlock.Result, len(reqs))
	if err := a.BatchTryLock(ctx, reqs, res); err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want := dlock.Success
		if i%3 == 0 {
			want = dlock.ErrFail
		}
		if r.Status != want {
			t.Errorf("entry %d: %v, want %v", i, r.Status, want)
		}
		if want == dlock.Success && (r.Token == 0 || r.State.Atomic().Owner != a.ID()) {
			t.Errorf("entry %d: token %d state %+v", i, r.Token, r.State.Atomic())
		}
	}
	if err := a.BatchExtend(ctx, reqs, res); err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if want := map[bool]dlock.Status{true: dlock.ErrInval, false: dlock.Success}[i%3 == 0]; r.Status != want {
			t.Errorf("extend entry %d: %v, want %v", i, r.Status, want)
		}
	}
	if err := a.BatchUnlock(ctx, la, res); err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if want := map[bool]dlock.Status{true: dlock.ErrAlreadyUnlocked, false: dlock.Success}[i%3 == 0]; r.Status != want {
			t.Errorf("unlock entry %d: %v, want %v", i, r.Status, want)
		}
	}
	// 32 entries is one too many.
	big := append(reqs, dlock.LockRequest{Lock: la[0]})
	if err := a.BatchTryLock(ctx, big, make([]dlock.Result, len(big))); !errors.Is(err, dlock.ErrInval) {
		t.Errorf("batch of 32 = %v, want ErrInval", err)
	}
	if err := a.BatchOpenLock(ctx, append(names, "one-more"), dlock.LockOptions{}, make([]*dlock.Lock, 32)); !errors.Is(err, dlock.ErrInval) {
		t.Errorf("batch open of 32 = %v, want ErrInval", err)
	}
	if err := a.BatchRelease(ctx, la); err != nil {
		t.Errorf("BatchRelease: %v", err)
	}
}

// TestBatchEntryOrder: the server runs a batch's entries in entry order
// whichever stripes their locks fall in (the tokens of its grants increase
// in that order); 31 locks share stripes (the server has 16), and each
// entry gets its own result.
func TestBatchEntryOrder(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	c := srv.Dial(t)
	names := make([]string, dlock.MaxBatch)
	for i := range names {
		names[i] = fmt.Sprintf("order-%02d", (i*7)%len(names))
	}
	locks := make([]*dlock.Lock, len(names))
	if err := c.BatchOpenLock(ctx, names, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}, locks); err != nil {
		t.Fatal(err)
	}
	// The ids are hashes of the names: in entry order they go up and down.
	sorted := true
	for i := 1; i < len(locks); i++ {
		sorted = sorted && locks[i-1].ID() < locks[i].ID()
	}
	if sorted {
		t.Fatal("the lock ids are in entry order: the test would not see a reordering")
	}
	reqs := make([]dlock.LockRequest, len(locks))
	for i, l := range locks {
		reqs[i] = dlock.LockRequest{Lock: l}
	}
	// Another client holds every fourth lock: those entries fail, alone.
	other := srv.Dial(t)
	for i := 0; i < len(names); i += 4 {
		l := open(t, other, names[i], dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
		mustTry(t, l, false, true)
	}
	res := make([]dlock.Result, len(reqs))
	if err := c.BatchTryLock(ctx, reqs, res); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for i, r := range res {
		want := dlock.Success
		if i%4 == 0 {
			want = dlock.ErrFail
		}
		if r.Status != want {
			t.Fatalf("entry %d (lock %d): %v, want %v", i, locks[i].ID(), r.Status, want)
		}
		if want == dlock.Success {
			if r.Token <= last {
				t.Fatalf("entry %d (lock %d) got token %d after %d: the entries did not run in order", i, locks[i].ID(), r.Token, last)
			}
			last = r.Token
		}
	}
	if err := c.BatchUnlock(ctx, locks, res); err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		want := dlock.Success
		if i%4 == 0 {
			want = dlock.ErrAlreadyUnlocked
		}
		if r.Status != want || locks[i].Held() {
			t.Fatalf("unlock entry %d: %v (held %v), want %v", i, r.Status, locks[i].Held(), want)
		}
	}
}

// TestBatchRepeatedLock: a batch sends at most one command per lock. A
// second entry on a lock that an earlier entry sends a command for is
// answered ErrInval without the server (before, the server ran both and
// the second's failure undid the first's grant in the cache: the lock
// stayed held on the server and Unlock answered "already unlocked");
// entries the cache answers locally still run in order.
func TestBatchRepeatedLock(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	c, other := srv.Dial(t), srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	a, b := open(t, c, "repeat-a", opts), open(t, c, "repeat-b", opts)
	res := make([]dlock.Result, 3)
	if err := c.BatchTryLock(ctx, []dlock.LockRequest{{Lock: a}, {Lock: b}, {Lock: a}}, res); err != nil {
		t.Fatal(err)
	}
	if res[0].Status != dlock.Success || res[1].Status != dlock.Success || res[2].Status != dlock.ErrInval {
		t.Fatalf("BatchTryLock a, b, a = %v, %v, %v; want success, success, invalid", res[0].Status, res[1].Status, res[2].Status)
	}
	if !a.Held() || res[0].Token == 0 {
		t.Fatalf("a: held %v, token %d", a.Held(), res[0].Token)
	}
	if err := c.BatchUnlock(ctx, []*dlock.Lock{a, a, b}, res); err != nil {
		t.Fatal(err)
	}
	if res[0].Status != dlock.Success || res[1].Status != dlock.ErrInval || res[2].Status != dlock.Success {
		t.Fatalf("BatchUnlock a, a, b = %v, %v, %v; want success, invalid, success", res[0].Status, res[1].Status, res[2].Status)
	}
	// Released on the server: another client takes both.
	for _, name := range []string{"repeat-a", "repeat-b"} {
		mustTry(t, open(t, other, name, opts), false, true)
	}

	// An RW lock held twice (the second hold is a local reentry): a batch
	// unlocking it twice answers the first entry locally and sends the
	// second.
	rw := open(t, c, "repeat-rw", dlock.LockOptions{Type: dlock.RW, TTL: time.Minute})
	if err := rw.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rw.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.BatchUnlock(ctx, []*dlock.Lock{rw, rw}, res); err != nil {
		t.Fatal(err)
	}
	if res[0].Status != dlock.ErrAlreadyLocked || res[1].Status != dlock.Success || rw.Held() {
		t.Fatalf("BatchUnlock rw, rw = %v, %v (held %v); want already locked, success", res[0].Status, res[1].Status, rw.Held())
	}
	mustTry(t, open(t, other, "repeat-rw", dlock.LockOptions{Type: dlock.RW, TTL: time.Minute}), false, true)
}

func TestAtomic64(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	oa, err := a.CreateAtomic64(ctx, "counter", 40, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateAtomic64(ctx, "counter", 0, dlock.Atomic64Options{}); !errors.Is(err, dlock.ErrObjectAlreadyExisted) {
		t.Errorf("create by another client = %v, want ErrObjectAlreadyExisted", err)
	}
	if _, err := a.CreateAtomic64(ctx, "counter", 0, dlock.Atomic64Options{}); !errors.Is(err, dlock.ErrObjectAlreadyCreated) {
		t.Errorf("second create by the owner = %v, want ErrObjectAlreadyCreated", err)
	}
	ob, err := b.OpenAtomic64(ctx, "counter", dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	if old, err := ob.FetchAndAdd(ctx, 2); err != nil || old != 40 {
		t.Errorf("FetchAndAdd = %d, %v; want the old value 40", old, err)
	}
	if ok, err := oa.CompareAndSwap(ctx, 41, 1); err != nil || ok {
		t.Errorf("CAS with a wrong old value = %v, %v; want false", ok, err)
	}
	if ok, err := oa.CompareAndSwap(ctx, 42, 7); err != nil || !ok {
		t.Errorf("CAS = %v, %v; want true", ok, err)
	}
	if v, err := ob.Load(ctx); err != nil || v != 7 {
		t.Errorf("Load = %d, %v; want 7", v, err)
	}
	if err := ob.Destroy(ctx); !errors.Is(err, dlock.ErrObjectInvalidOwner) {
		t.Errorf("Destroy by a non-owner = %v, want ErrObjectInvalidOwner", err)
	}
	if err := oa.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	// Destroyed but still referenced: usable by those who have it open.
	if old, err := ob.FetchAndAdd(ctx, 1); err != nil || old != 7 {
		t.Errorf("FetchAndAdd on a destroyed, referenced object = %d, %v", old, err)
	}
	if _, err := b.OpenAtomic64(ctx, "counter", dlock.Atomic64Options{}); !errors.Is(err, dlock.ErrObjectAlreadyDestroyed) {
		t.Errorf("open after destroy = %v, want ErrObjectAlreadyDestroyed", err)
	}
	for _, o := range []*dlock.Atomic64{oa, ob} {
		if err := o.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := ob.Release(ctx); !errors.Is(err, dlock.ErrObjectNotGet) {
		t.Errorf("second Release = %v, want ErrObjectNotGet", err)
	}
	if _, err := ob.Load(ctx); !errors.Is(err, dlock.ErrObjectNotGet) {
		t.Errorf("Load after Release = %v, want ErrObjectNotGet", err)
	}
	if st := b.Stats(); st[dlock.StatObjectNotGet] != 1 {
		t.Errorf("client OBJECT_NOT_GET counter = %d, want 1", st[dlock.StatObjectNotGet])
	}
}

func TestHeartbeatAndStats(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	if err := a.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	la := open(t, a, "s", dlock.LockOptions{Type: dlock.Atomic})
	lb := open(t, b, "s", dlock.LockOptions{Type: dlock.Atomic})
	mustTry(t, la, false, true)
	mustTry(t, lb, false, false)
	st, err := a.ServerStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st[dlock.StatAtomicTrylockFail] != 1 {
		t.Errorf("server ATOMIC_TRYLOCK_FAIL = %d, want 1", st[dlock.StatAtomicTrylockFail])
	}
	if got := srv.Stats(); got != st {
		t.Errorf("Server.Stats and ServerStats differ: %v vs %v", got, st)
	}
	if err := a.ResetServerStats(ctx); err != nil {
		t.Fatal(err)
	}
	if got := srv.Stats(); got != (dlock.Stats{}) {
		t.Errorf("after reset: %v", got)
	}
	mustTry(t, la, false, true)            // reentrant
	if err := la.Unlock(ctx); err != nil { // ref 2 → 1: a local ALREADY_LOCKED
		t.Fatal(err)
	}
	if got := a.Stats()[dlock.StatAlreadyLocked]; got != 1 {
		t.Errorf("client ALREADY_LOCKED counter = %d, want 1", got)
	}
	a.ResetStats()
	if got := a.Stats(); got != (dlock.Stats{}) {
		t.Errorf("client stats after reset: %v", got)
	}
	srv.Close()
	if err := b.Heartbeat(ctx); err == nil || errors.Is(err, dlock.ErrNotReady) {
		t.Errorf("heartbeat to a stopped server = %v, want a transport error", err)
	}
}

func TestNotReadyDuringRecovery(t *testing.T) {
	srv := dlocktest.NewServer(t, &dlockserver.Config{RecoveryClients: 1})
	_, err := dlock.Dial(testCtx(t), srv.Addr, nil)
	if !errors.Is(err, dlock.ErrNotReady) {
		t.Fatalf("Dial to a recovering server = %v, want ErrNotReady", err)
	}
}

// TestFairAbandonedTicketDoesNotStall: a client that takes a fair ticket
// with TryLock and gives it up with Unlock tells the server, so the next
// client is not made to wait out the 2-second hand-over window for it
// (upstream DLock abandons the ticket only in the client's cache).
func TestFairAbandonedTicketDoesNotStall(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b, c := srv.Dial(t), srv.Dial(t), srv.Dial(t)
	la := open(t, a, "fair", dlock.LockOptions{Type: dlock.Fair})
	lb := open(t, b, "fair", dlock.LockOptions{Type: dlock.Fair})
	lc := open(t, c, "fair", dlock.LockOptions{Type: dlock.Fair})
	for _, shared := range []bool{false, true} {
		mustTry(t, la, false, true)
		mustTry(t, lb, shared, false)          // b takes a ticket...
		if err := lb.Unlock(ctx); err != nil { // ...and gives it up
			t.Fatal(err)
		}
		// The abandon is fire-and-forget; a heartbeat on b's connection
		// makes sure the server has read it.
		if err := b.Heartbeat(ctx); err != nil {
			t.Fatal(err)
		}
		if err := la.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		mustTry(t, lc, false, true) // at once: nobody waits for b's ticket
		if err := lc.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if got := srv.Stats()[dlock.StatEAgain]; got == 0 {
			t.Fatal("b's trylock was not queued: the test did not exercise a ticket")
		}
	}
}

// TestLowLevelAPI covers the pieces the C layer builds on: per-entry batch
// opens with raw ids, Result.Filled, create-only objects and handles by id,
// and Reinit bringing back locks parked by a rejected upload.
func TestLowLevelAPI(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	open(t, b, "typed", dlock.LockOptions{Type: dlock.RW})

	names := []string{"x", "typed", "y"} // "typed" is RW: a type mismatch
	opts := []dlock.LockOptions{{Type: dlock.Atomic}, {Type: dlock.Fair}, {Type: dlock.Fair}}
	locks := make([]*dlock.Lock, 3)
	ids := make([]int32, 3)
	if err := batchOpenLocks(a, ctx, names, opts, locks, ids); err != nil {
		t.Fatal(err)
	}
	if ids[0] <= 0 || ids[1] != -1 || ids[2] <= 0 || locks[1] != nil || locks[2].Type() != dlock.Fair {
		t.Fatalf("ids %v locks %v", ids, locks)
	}

	res := make([]dlock.Result, 1)
	if err := a.BatchUnlock(ctx, locks[:1], res); err != nil {
		t.Fatal(err)
	}
	if res[0].Status != dlock.ErrAlreadyUnlocked || res[0].Filled {
		t.Errorf("unlock of an unheld lock: %+v, want ALREADY_UNLOCKED, not filled", res[0])
	}
	if err := a.BatchTryLock(ctx, []dlock.LockRequest{{Lock: locks[0]}}, res); err != nil || !res[0].Filled {
		t.Errorf("trylock: %v %+v, want filled", err, res[0])
	}

	o, err := a.CreateAtomic64(ctx, "only", 1, dlock.Atomic64Options{CreateOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Load(ctx); !errors.Is(err, dlock.ErrObjectNotGet) {
		t.Errorf("Load on a created, unopened object: %v", err)
	}
	if err := atomic64ByID(b, o.ID()).Destroy(ctx); !errors.Is(err, dlock.ErrObjectInvalidOwner) {
		t.Errorf("Destroy by id from another client: %v", err)
	}
	if err := atomic64ByID(a, o.ID()).Destroy(ctx); err != nil {
		t.Errorf("Destroy by id from the owner: %v", err)
	}

	// An upload refused by a ready server parks the locks; Reinit brings
	// them back.
	if err := a.UpdateAllLocks(ctx); !errors.Is(err, dlock.ErrGeneric) {
		t.Fatalf("UpdateAllLocks on a ready server: %v, want ErrGeneric", err)
	}
	// The Go API says the hold is not gone but waits for recovery; Do keeps
	// the C API's DLOCK_LOCK_NOT_GET.
	if _, err := locks[0].TryLock(ctx); !errors.Is(err, dlock.ErrNotReady) {
		t.Fatalf("parked lock: %v, want ErrNotReady", err)
	}
	if st, _, _, err := lockDo(locks[0], ctx, dlock.OpLockExclusive, 10, false); err != nil || st != dlock.ErrLockNotGet {
		t.Fatalf("parked lock, Do: %v, %v; want ErrLockNotGet", st, err)
	}
	if err := a.Reinit(ctx, srv.Addr); err != nil {
		t.Fatal(err)
	}
	if err := a.ReinitDone(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := locks[0].TryLock(ctx); err != nil || !ok {
		t.Errorf("lock after Reinit: %v %v", ok, err)
	}
}

func TestStartAsync(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	la := open(t, a, "async", dlock.LockOptions{Type: dlock.Fair})
	lb := open(t, b, "async", dlock.LockOptions{Type: dlock.Fair})
	st, _, _, wait := lockStart(la, dlock.OpLockExclusive, 5)
	if st != dlock.Success || wait == nil {
		t.Fatalf("Start: %v, wait %v", st, wait != nil)
	}
	if st, res, filled, err := wait(ctx); err != nil || st != dlock.Success || !filled || res.Fair().Mx != 1 {
		t.Fatalf("async trylock: %v %v %v %+v", err, st, filled, res.Fair())
	}
	// A second lock is a reentrant extend; its unlock with ref 2 is local.
	_, _, _, wait = lockStart(la, dlock.OpLockExclusive, 5)
	if st, _, _, _ := wait(ctx); st != dlock.ErrAlreadyLocked {
		t.Fatalf("async reentrant lock: %v", st)
	}
	if st, _, _, wait := lockStart(la, dlock.OpUnlock, 0); st != dlock.ErrAlreadyLocked || wait != nil {
		t.Fatalf("async unlock with ref 2: %v, local %v", st, wait == nil)
	}
	// b queues with a ticket; EAGAIN through the async path.
	_, _, _, wait = lockStart(lb, dlock.OpLockExclusive, 5)
	if st, _, _, _ := wait(ctx); st != dlock.ErrAgain {
		t.Fatalf("async contended fair trylock: %v", st)
	}
	if st, _, _, _ := lockStart(lb, dlock.OpLockShared, 5); st != dlock.ErrTicket {
		t.Fatalf("shared op with an exclusive ticket: %v, want ETICKET locally", st)
	}
	if st, _, _, _ := lockStart(la, dlock.OpLockExclusive, 0); st != dlock.ErrInval {
		t.Fatalf("async with expire 0: %v, want EINVAL", st)
	}
}
