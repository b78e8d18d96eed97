package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// openMany opens n locks called prefix/0 .. prefix/n-1.
func openMany(t *testing.T, c *dlock.Client, prefix string, n int, opts dlock.LockOptions) []*dlock.Lock {
	t.Helper()
	ls := make([]*dlock.Lock, n)
	for i := range ls {
		ls[i] = open(t, c, fmt.Sprintf("%s/%d", prefix, i), opts)
	}
	return ls
}

// collect returns the next n completed requests of p.
func collect(t *testing.T, ctx context.Context, p *dlock.Pipeline, n int) []*dlock.Request {
	t.Helper()
	var got []*dlock.Request
	for range n {
		r, err := p.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %d of %d: %v", len(got), n, err)
		}
		got = append(got, r)
	}
	return got
}

// TestPipelineTryLockUnlock: 300 TryLocks in flight on one Client from one
// goroutine, some on locks another client holds, then their Unlocks: each
// result is what TryLock/Unlock would return, and the lock state (held,
// token, the server's holder) follows.
func TestPipelineTryLockUnlock(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	const n = 300
	la := openMany(t, a, "pipe", n, opts)
	lb := openMany(t, b, "pipe", n, opts)
	for i := 0; i < n; i += 10 {
		mustTry(t, lb[i], false, true) // every tenth is busy
	}
	p := a.NewPipeline()
	reqs := make([]dlock.Request, n)
	for i := range reqs {
		reqs[i].Tag = i
		if err := p.TryLock(&reqs[i], la[i]); err != nil {
			t.Fatal(err)
		}
	}
	if p.Outstanding() != n {
		t.Fatalf("Outstanding = %d, want %d", p.Outstanding(), n)
	}
	seen := make([]bool, n)
	for _, r := range collect(t, ctx, p, n) {
		i := r.Tag.(int)
		if seen[i] || r != &reqs[i] || r.Lock() != la[i] || r.Op() != dlock.OpLockExclusive || !r.Done() {
			t.Fatalf("request %d returned twice or with the wrong lock/op", i)
		}
		seen[i] = true
		busy := i%10 == 0
		if r.Err() != nil || r.Acquired() == busy {
			t.Fatalf("TryLock of lock %d (busy %v) = %v, %v", i, busy, r.Acquired(), r.Err())
		}
		if la[i].Held() == busy || (la[i].Token() == 0) != busy {
			t.Fatalf("lock %d (busy %v): held %v, token %d", i, busy, la[i].Held(), la[i].Token())
		}
		if !busy {
			if info, _ := srv.LockInfo(la[i].ID()); info.State.Atomic().Owner != a.ID() {
				t.Fatalf("lock %d: server owner %d, want %d", i, info.State.Atomic().Owner, a.ID())
			}
			if la[i].State().Atomic().Owner != a.ID() {
				t.Fatalf("lock %d: State owner %d", i, la[i].State().Atomic().Owner)
			}
		}
	}
	if _, err := p.Next(ctx); !errors.Is(err, dlock.ErrNoAsync) {
		t.Fatalf("Next with nothing outstanding = %v, want ErrNoAsync", err)
	}
	// Unlock all: the busy ones were not ours (ErrAlreadyUnlocked, as Unlock says).
	for i := range reqs {
		if err := p.Unlock(&reqs[i], la[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range collect(t, ctx, p, n) {
		i := r.Tag.(int)
		if i%10 == 0 {
			if !errors.Is(r.Err(), dlock.ErrAlreadyUnlocked) {
				t.Fatalf("Unlock of lock %d held by another client = %v, want ErrAlreadyUnlocked", i, r.Err())
			}
			continue
		}
		if r.Err() != nil || la[i].Held() || la[i].Token() != 0 {
			t.Fatalf("Unlock of lock %d = %v, held %v", i, r.Err(), la[i].Held())
		}
	}
	// The other client gets every free lock now.
	for i := range lb {
		if i%10 != 0 {
			mustTry(t, lb[i], false, true)
		}
	}
}

// TestPipelineReentrantAndExtend: a reentrant hold and its unlock are
// answered by the cache (completing at once), an Extend and a shared
// TryRLock go to the server, and the reentrancy count is kept as the
// synchronous calls keep it.
func TestPipelineReentrantAndExtend(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	l := open(t, a, "re", dlock.LockOptions{Type: dlock.Atomic, TTL: 5 * time.Second})
	rw := open(t, a, "rw", dlock.LockOptions{Type: dlock.RW})
	rwb := open(t, b, "rw", dlock.LockOptions{Type: dlock.RW})
	p := a.NewPipeline()
	var r1, r2 dlock.Request
	for round := range 2 { // the second round takes the lock reentrantly
		if err := p.TryLock(&r1, l); err != nil {
			t.Fatal(err)
		}
		if err := p.TryRLock(&r2, rw); err != nil {
			t.Fatal(err)
		}
		for _, r := range collect(t, ctx, p, 2) {
			if !r.Acquired() || r.Err() != nil {
				t.Fatalf("round %d: %v of %s = %v, %v", round, r.Op(), r.Lock().Name(), r.Acquired(), r.Err())
			}
		}
	}
	mustTry(t, rwb, true, true) // shared: b reads too
	if err := p.Extend(&r1, l, time.Minute); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, ctx, p, 1)[0]; r.Err() != nil || r.Op() != dlock.OpExtendExclusive {
		t.Fatalf("Extend = %v (%v)", r.Err(), r.Op())
	}
	// Two holds each: the first unlock keeps the lock, the second frees it.
	for i, wantHeld := range []bool{true, false} {
		if err := p.Unlock(&r1, l); err != nil {
			t.Fatal(err)
		}
		if err := p.Unlock(&r2, rw); err != nil {
			t.Fatal(err)
		}
		for _, r := range collect(t, ctx, p, 2) {
			if r.Err() != nil || r.Lock().Held() != wantHeld {
				t.Fatalf("unlock %d of %s = %v, held %v; want held %v", i, r.Lock().Name(), r.Err(), r.Lock().Held(), wantHeld)
			}
		}
	}
	if err := p.Unlock(&r1, l); err != nil {
		t.Fatal(err)
	}
	if r := collect(t, ctx, p, 1)[0]; !errors.Is(r.Err(), dlock.ErrAlreadyUnlocked) {
		t.Fatalf("unlock of a free lock = %v, want ErrAlreadyUnlocked", r.Err())
	}
}

// TestPipelineBlockingLock: a Lock request waits on the server and is
// granted when the holder unlocks; one whose wait passes completes with
// ErrTimeout, leaving nothing held.
func TestPipelineBlockingLock(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.Fair} {
		opts := dlock.LockOptions{Type: typ, TTL: time.Minute}
		la, lb := open(t, a, "block-"+typ.String(), opts), open(t, b, "block-"+typ.String(), opts)
		mustTry(t, lb, false, true)
		p := a.NewPipeline()
		var r dlock.Request
		if err := p.Lock(&r, la, 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if got := collect(t, ctx, p, 1)[0]; got.Acquired() || !errors.Is(got.Err(), dlock.ErrTimeout) || la.Held() {
			t.Fatalf("%v: Lock past its wait = %v, %v, held %v; want ErrTimeout", typ, got.Acquired(), got.Err(), la.Held())
		}
		if err := p.Lock(&r, la, time.Minute); err != nil {
			t.Fatal(err)
		}
		p.Flush()
		waitFor(t, "a queued", func() bool { return waiters(srv, la) == 1 })
		if err := lb.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if got := collect(t, ctx, p, 1)[0]; !got.Acquired() || got.Err() != nil || !la.Held() {
			t.Fatalf("%v: Lock = %v, %v, held %v", typ, got.Acquired(), got.Err(), la.Held())
		}
		mustTry(t, lb, false, false)
		if err := la.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPipelineFairTicket: a TryLock of a busy Fair lock reports false and
// leaves a ticket, as TryLock does; the next TryLock uses it once the holder
// has unlocked, and the server saw the ticket's order.
func TestPipelineFairTicket(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Fair, TTL: time.Minute}
	la, lb := open(t, a, "fair-ticket", opts), open(t, b, "fair-ticket", opts)
	mustTry(t, lb, false, true)
	p := a.NewPipeline()
	var r dlock.Request
	if err := p.TryLock(&r, la); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ctx, p, 1)[0]; got.Acquired() || got.Err() != nil || la.Held() {
		t.Fatalf("TryLock of a held fair lock = %v, %v, held %v; want false, nil", got.Acquired(), got.Err(), la.Held())
	}
	if err := lb.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.TryLock(&r, la); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ctx, p, 1)[0]; !got.Acquired() || got.Err() != nil || !la.Held() {
		t.Fatalf("TryLock with the ticket = %v, %v, held %v; want true", got.Acquired(), got.Err(), la.Held())
	}
	mustTry(t, lb, false, false)
	if err := p.Unlock(&r, la); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ctx, p, 1)[0]; got.Err() != nil || la.Held() {
		t.Fatalf("Unlock = %v, held %v", got.Err(), la.Held())
	}
}

// TestPipelineMixedWithSync: a pipeline keeps 64 requests in flight while
// other goroutines make synchronous calls on the same Client, some on the
// pipeline's locks (they wait for its outstanding request) and some on
// their own; every result and the final state are consistent.
func TestPipelineMixedWithSync(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a := srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	const n = 64
	ls := openMany(t, a, "mixed", n, opts)
	own := openMany(t, a, "own", 4, opts)
	p := a.NewPipeline()
	reqs := make([]dlock.Request, n)
	const rounds = 40
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				// The shared locks: a Heartbeat-free probe of the state
				// through the lock itself, which waits for the pipeline.
				_ = ls[(g*16+k)%n].State()
				ok, err := own[g].TryLock(ctx)
				if err != nil || !ok {
					errs <- fmt.Errorf("own TryLock %d = %v, %v", g, ok, err)
					return
				}
				if err := own[g].Unlock(ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	held := make([]bool, n)
	for i := range reqs {
		reqs[i].Tag = i
		if err := p.TryLock(&reqs[i], ls[i]); err != nil {
			t.Fatal(err)
		}
	}
	done := 0
	for done < rounds*n {
		r, err := p.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := r.Tag.(int)
		if r.Err() != nil {
			t.Fatalf("request on lock %d: %v", i, r.Err())
		}
		if r.Op() == dlock.OpUnlock {
			held[i] = false
		} else if !r.Acquired() {
			t.Fatalf("TryLock of lock %d not acquired", i)
		} else {
			held[i] = true
		}
		if ls[i].Held() != held[i] {
			t.Fatalf("lock %d: Held %v after %v", i, ls[i].Held(), r.Op())
		}
		done++
		if done > (rounds-1)*n {
			if held[i] {
				if err := p.Unlock(r, ls[i]); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		if held[i] {
			err = p.Unlock(r, ls[i])
		} else {
			err = p.TryLock(r, ls[i])
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for p.Outstanding() > 0 {
		r, err := p.Next(ctx)
		if err != nil || r.Err() != nil {
			t.Fatalf("final unlock: %v, %v", err, r.Err())
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for i, l := range ls {
		if l.Held() {
			t.Errorf("lock %d still held", i)
		}
	}
}

// TestPipelineConnLost: requests in flight when the connection is severed
// (the server executed them, the replies are stuck) complete with
// ErrConnLost, the client does not believe it holds the locks, and the
// holds it never learned of are released when it reconnects.
func TestPipelineConnLost(t *testing.T) {
	ctx := testCtx(t)
	srv := dlocktest.NewServer(t, nil)
	fp := newFaultProxy(t, srv.Addr)
	reports := make(chan dlock.RecoveryReport, 4)
	x, err := dlock.Dial(ctx, fp.Addr(), &dlock.Config{AutoRecover: true,
		OnRecover: func(r dlock.RecoveryReport) { reports <- r }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	h := srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	const n = 50
	lx := openMany(t, x, "lost", n, opts)
	lh := openMany(t, h, "lost", n, opts)
	p := x.NewPipeline()
	reqs := make([]dlock.Request, n)
	fp.blackholeReplies()
	for i := range reqs {
		if err := p.TryLock(&reqs[i], lx[i]); err != nil {
			t.Fatal(err)
		}
	}
	p.Flush()
	// The server grants every request; the replies do not get through.
	waitFor(t, "the grants", func() bool {
		for _, l := range lh {
			if info, _ := srv.LockInfo(l.ID()); info.State.Atomic().Owner != x.ID() {
				return false
			}
		}
		return true
	})
	fp.sever()
	fp.heal()
	for _, r := range collect(t, ctx, p, n) {
		if r.Acquired() || !errors.Is(r.Err(), dlock.ErrConnLost) {
			t.Fatalf("request on %s = %v, %v; want ErrConnLost", r.Lock().Name(), r.Acquired(), r.Err())
		}
		if r.Lock().Held() {
			t.Fatalf("%s believed held after a lost reply", r.Lock().Name())
		}
	}
	select {
	case r := <-reports:
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no recovery")
	}
	if o := x.Outcomes(); o.Unknown < n || o.Resolved != o.Unknown || o.Released < n {
		t.Fatalf("outcomes %+v: want %d unknown outcomes resolved and released", o, n)
	}
	for _, l := range lh {
		mustTry(t, l, false, true)
	}
	// The pipeline works on the new connection.
	for i := range reqs {
		if err := p.TryLock(&reqs[i], lx[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range collect(t, ctx, p, n) {
		if r.Acquired() || r.Err() != nil {
			t.Fatalf("TryLock of a lock h holds = %v, %v", r.Acquired(), r.Err())
		}
	}
}

// TestPipelineNextCtx: Next's ctx bounds the wait, not the requests: when
// it ends (deadline, or cancel without one) Next returns its error, the
// requests stay outstanding and a later Next collects them.
func TestPipelineNextCtx(t *testing.T) {
	ctx := testCtx(t)
	srv := dlocktest.NewServer(t, nil)
	fp := newFaultProxy(t, srv.Addr)
	x, err := dlock.Dial(ctx, fp.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	ls := openMany(t, x, "ctx", 8, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	p := x.NewPipeline()
	reqs := make([]dlock.Request, len(ls))
	fp.blackholeReplies()
	for i := range reqs {
		if err := p.TryLock(&reqs[i], ls[i]); err != nil {
			t.Fatal(err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := p.Next(dctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next past its deadline = %v", err)
	}
	cctx, cancel2 := context.WithCancel(ctx)
	time.AfterFunc(30*time.Millisecond, cancel2)
	if _, err := p.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next cancelled = %v", err)
	}
	if p.Outstanding() != len(ls) {
		t.Fatalf("Outstanding = %d after ctx ended, want %d", p.Outstanding(), len(ls))
	}
	// A request on a lock with one outstanding is refused, not queued.
	var extra dlock.Request
	if err := p.Unlock(&extra, ls[0]); !errors.Is(err, dlock.ErrAsync) {
		t.Fatalf("second request on a busy lock = %v, want ErrAsync", err)
	}
	fp.heal()
	for _, r := range collect(t, ctx, p, len(ls)) {
		if !r.Acquired() || r.Err() != nil {
			t.Fatalf("TryLock after the ctx ended = %v, %v", r.Acquired(), r.Err())
		}
	}
}

// TestPipelineMisuse: requests that cannot start say why and start nothing.
func TestPipelineMisuse(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a, b := srv.Dial(t), srv.Dial(t)
	opts := dlock.LockOptions{Type: dlock.Atomic}
	la, lb := open(t, a, "misuse", opts), open(t, b, "misuse", opts)
	p := a.NewPipeline()
	var r dlock.Request
	if err := p.TryLock(&r, lb); !errors.Is(err, dlock.ErrInval) {
		t.Errorf("TryLock of another client's lock = %v, want ErrInval", err)
	}
	if err := p.TryLock(nil, la); !errors.Is(err, dlock.ErrInval) {
		t.Errorf("TryLock(nil) = %v, want ErrInval", err)
	}
	if err := p.Lock(&r, la, 0); !errors.Is(err, dlock.ErrInval) {
		t.Errorf("Lock with no wait = %v, want ErrInval", err)
	}
	if err := p.Extend(&r, la, -time.Second); !errors.Is(err, dlock.ErrInval) {
		t.Errorf("Extend by a negative TTL = %v, want ErrInval", err)
	}
	if p.Outstanding() != 0 {
		t.Fatalf("refused requests counted: %d outstanding", p.Outstanding())
	}
	if err := p.TryLock(&r, la); err != nil {
		t.Fatal(err)
	}
	other := open(t, a, "misuse-2", opts)
	if err := p.TryLock(&r, other); !errors.Is(err, dlock.ErrAsync) {
		t.Errorf("restarting an outstanding request = %v, want ErrAsync", err)
	}
	var r2 dlock.Request
	if err := p.TryLock(&r2, la); !errors.Is(err, dlock.ErrAsync) {
		t.Errorf("second request on the lock = %v, want ErrAsync", err)
	}
	// Another goroutine's synchronous call on the lock waits for the
	// request, then sees its outcome.
	unlocked := make(chan error, 1)
	go func() { unlocked <- la.Unlock(ctx) }()
	if got := collect(t, ctx, p, 1)[0]; !got.Acquired() {
		t.Fatalf("TryLock = %v, %v", got.Acquired(), got.Err())
	}
	if err := <-unlocked; err != nil {
		t.Fatalf("Unlock after the pipeline's TryLock = %v", err)
	}
	a.Close()
	if err := p.TryLock(&r, la); !errors.Is(err, dlock.ErrClosed) {
		t.Errorf("TryLock on a closed client = %v, want ErrClosed", err)
	}
	if _, err := p.Next(ctx); !errors.Is(err, dlock.ErrNoAsync) {
		t.Errorf("Next = %v, want ErrNoAsync", err)
	}
}

// TestPipelineSettledWithoutNext: a sent request is settled by whoever
// reads its reply, here the client's idle watch, so that the pipeline's
// own goroutine can call the lock once it has flushed; Next then returns
// the request with its result.
func TestPipelineSettledWithoutNext(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := testCtx(t)
	a := srv.Dial(t)
	l := open(t, a, "settled", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	p := a.NewPipeline()
	var r dlock.Request
	if err := p.TryLock(&r, l); err != nil {
		t.Fatal(err)
	}
	p.Flush()
	if err := l.Unlock(ctx); err != nil { // waits until the TryLock's reply is read
		t.Fatalf("Unlock after the pipeline's TryLock = %v", err)
	}
	if l.Held() {
		t.Fatal("lock held after Unlock")
	}
	if got := collect(t, ctx, p, 1)[0]; got != &r || !got.Acquired() || got.Err() != nil {
		t.Fatalf("TryLock = %v, %v", got.Acquired(), got.Err())
	}
}

// TestPipelineClosedWithRequestsInFlight: Close completes every request in
// flight with ErrClosed.
func TestPipelineClosedWithRequestsInFlight(t *testing.T) {
	ctx := testCtx(t)
	srv := dlocktest.NewServer(t, nil)
	fp := newFaultProxy(t, srv.Addr)
	x, err := dlock.Dial(ctx, fp.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ls := openMany(t, x, "close", 16, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	p := x.NewPipeline()
	reqs := make([]dlock.Request, len(ls))
	fp.blackholeReplies()
	for i := range reqs {
		if err := p.TryLock(&reqs[i], ls[i]); err != nil {
			t.Fatal(err)
		}
	}
	p.Flush()
	x.Close()
	for _, r := range collect(t, ctx, p, len(ls)) {
		if !errors.Is(r.Err(), dlock.ErrClosed) || r.Lock().Held() {
			t.Fatalf("request after Close = %v, held %v; want ErrClosed", r.Err(), r.Lock().Held())
		}
	}
	fp.heal()
}

// TestPipelineAllocs: after warm-up, a cycle of TryLock + Unlock through a
// window of requests allocates nothing.
func TestPipelineAllocs(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := context.Background()
	a := srv.Dial(t)
	const n = 64
	ls := openMany(t, a, "allocs", n, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	p := a.NewPipeline()
	reqs := make([]dlock.Request, n)
	cycle := func() {
		for i := range reqs {
			if err := p.TryLock(&reqs[i], ls[i]); err != nil {
				t.Fatal(err)
			}
		}
		for range n {
			r, err := p.Next(ctx)
			if err != nil || !r.Acquired() {
				t.Fatalf("TryLock: %v", err)
			}
			if err := p.Unlock(r, r.Lock()); err != nil {
				t.Fatal(err)
			}
		}
		for range n {
			if r, err := p.Next(ctx); err != nil || r.Err() != nil {
				t.Fatalf("Unlock: %v", err)
			}
		}
	}
	cycle()
	if allocs := testing.AllocsPerRun(20, cycle) / (2 * n); allocs != 0 {
		t.Fatalf("%.3f allocations per request, want 0", allocs)
	}
}
