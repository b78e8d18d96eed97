package dlock_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// TestClientHotPathAllocs: the client allocates at most 2 times per
// trylock, unlock, extend and fetch-and-add (the server allocates nothing:
// see dlockserver's TestServerHotPathAllocs, and both run in this process),
// also with a ctx that can be cancelled: a call registers for its end only
// when its reply is slow to come.
func TestClientHotPathAllocs(t *testing.T) {
	t.Run("background", func(t *testing.T) { testHotPathAllocs(t, context.Background()) })
	t.Run("cancelable", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		testHotPathAllocs(t, ctx)
	})
}

func testHotPathAllocs(t *testing.T, ctx context.Context) {
	srv := dlocktest.NewServer(t, nil)
	c := srv.Dial(t)
	l := open(t, c, "allocs", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	o, err := c.CreateAtomic64(ctx, "allocs", 0, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]func(){
		"trylock+unlock": func() {
			if ok, err := l.TryLock(ctx); !ok || err != nil {
				t.Fatal(ok, err)
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		},
		"trylock+extend+unlock": func() {
			l.TryLock(ctx)
			if err := l.Extend(ctx, time.Minute); err != nil {
				t.Fatal(err)
			}
			l.Unlock(ctx)
		},
		"fetch-and-add": func() {
			if _, err := o.FetchAndAdd(ctx, 1); err != nil {
				t.Fatal(err)
			}
		},
	} {
		f()
		ops := map[string]float64{"trylock+unlock": 2, "trylock+extend+unlock": 3, "fetch-and-add": 1}[name]
		if n := testing.AllocsPerRun(300, f) / ops; n > 2 {
			t.Errorf("%s: %.2f allocations per operation, want ≤ 2", name, n)
		}
	}
}

func BenchmarkTryLockUnlock(b *testing.B) {
	benchTryLockUnlock(b, dlocktest.NewServer(b, nil).Dial(b), context.Background())
}

// BenchmarkTryLockUnlockCancelable is BenchmarkTryLockUnlock with a ctx
// that can be cancelled and has no deadline, as a load tool's or a
// server's request ctx: a call must then be able to stop its read when ctx
// ends.
func BenchmarkTryLockUnlockCancelable(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchTryLockUnlock(b, dlocktest.NewServer(b, nil).Dial(b), ctx)
}

// benchTryLockUnlock measures one acquire + release on c (shared by the
// plaintext and TLS benchmarks).
func benchTryLockUnlock(b *testing.B, c *dlock.Client, ctx context.Context) {
	l, err := c.OpenLock(ctx, "bench", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			b.Fatal(ok, err)
		}
		if err := l.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFetchAndAdd(b *testing.B) {
	srv := dlocktest.NewServer(b, nil)
	c := srv.Dial(b)
	ctx := context.Background()
	o, err := c.CreateAtomic64(ctx, "bench", 0, dlock.Atomic64Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := o.FetchAndAdd(ctx, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBatchTryLock31 takes and releases 31 locks per iteration, each
// direction in one round trip.
func BenchmarkBatchTryLock31(b *testing.B) {
	benchBatchTryLock31(b, dlocktest.NewServer(b, nil).Dial(b))
}

// BenchmarkBatchTryLock31Pipe is BenchmarkBatchTryLock31 over an in-memory
// connection: no system call, so what it measures is the client's and the
// server's own work per batch (and the goroutine switches of net.Pipe).
func BenchmarkBatchTryLock31Pipe(b *testing.B) {
	benchBatchTryLock31(b, dlocktest.NewPipeServer(b, nil).Dial(b))
}

func benchBatchTryLock31(b *testing.B, c *dlock.Client) {
	ctx := context.Background()
	names := make([]string, dlock.MaxBatch)
	for i := range names {
		names[i] = fmt.Sprint("b", i)
	}
	locks := make([]*dlock.Lock, len(names))
	if err := c.BatchOpenLock(ctx, names, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}, locks); err != nil {
		b.Fatal(err)
	}
	reqs := make([]dlock.LockRequest, len(locks))
	for i, l := range locks {
		reqs[i].Lock = l
	}
	res := make([]dlock.Result, len(locks))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.BatchTryLock(ctx, reqs, res); err != nil || res[30].Status != dlock.Success {
			b.Fatal(err, res[30].Status)
		}
		if err := c.BatchUnlock(ctx, locks, res); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParallelTryLockUnlock: many goroutines share one client, each on
// its own lock, so requests are pipelined on the connection.
func BenchmarkParallelTryLockUnlock(b *testing.B) {
	benchParallelTryLockUnlock(b, dlocktest.NewServer(b, nil).Dial(b), context.Background())
}

// BenchmarkParallelTryLockUnlockCancelable is BenchmarkParallelTryLockUnlock
// with a ctx that can be cancelled and has no deadline.
func BenchmarkParallelTryLockUnlockCancelable(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchParallelTryLockUnlock(b, dlocktest.NewServer(b, nil).Dial(b), ctx)
}

// benchParallelTryLockUnlock runs 32 goroutines per CPU on client c, each
// on its own lock, pipelining on the one connection.
func benchParallelTryLockUnlock(b *testing.B, c *dlock.Client, ctx context.Context) {
	b.SetParallelism(32)
	var n atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		l, err := c.OpenLock(ctx, fmt.Sprint("par", n.Add(1)), dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
		if err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if ok, err := l.TryLock(ctx); !ok || err != nil {
				b.Error(ok, err)
				return
			}
			if err := l.Unlock(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkOpenAndTryLock measures the first use of a lock: OpenAndTryLock
// (one request), then Unlock and Release, cycling through names so that
// every iteration opens a lock the client does not have open (three round
// trips per iteration).
func BenchmarkOpenAndTryLock(b *testing.B) {
	benchOpenAndTryLock(b, dlocktest.NewServer(b, nil).Dial(b))
}

// BenchmarkOpenAndTryLockPipe is BenchmarkOpenAndTryLock over an in-memory
// connection (see BenchmarkBatchTryLock31Pipe).
func BenchmarkOpenAndTryLockPipe(b *testing.B) {
	benchOpenAndTryLock(b, dlocktest.NewPipeServer(b, nil).Dial(b))
}

// BenchmarkTryLockUnlockPipe is BenchmarkTryLockUnlock over an in-memory
// connection (see BenchmarkBatchTryLock31Pipe).
func BenchmarkTryLockUnlockPipe(b *testing.B) {
	benchTryLockUnlock(b, dlocktest.NewPipeServer(b, nil).Dial(b), context.Background())
}

func benchOpenAndTryLock(b *testing.B, c *dlock.Client) {
	ctx := context.Background()
	names := make([]string, 4096)
	for i := range names {
		names[i] = fmt.Sprint("first/", i)
	}
	opts := dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l, ok, err := c.OpenAndTryLock(ctx, names[i%len(names)], opts)
		i++
		if !ok || err != nil {
			b.Fatal(ok, err)
		}
		if err := l.Unlock(ctx); err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPipelineTryLockUnlock: one goroutine keeps a window of 256
// requests in flight on one client with a Pipeline, each slot cycling
// TryLock and Unlock on its own lock; an operation is one TryLock + Unlock,
// as in BenchmarkParallelTryLockUnlock (32 goroutines per CPU, each making
// synchronous calls).
func BenchmarkPipelineTryLockUnlock(b *testing.B) {
	srv := dlocktest.NewServer(b, nil)
	c := srv.Dial(b)
	ctx := context.Background()
	const window = 256
	locks := make([]*dlock.Lock, window)
	for i := range locks {
		l, err := c.OpenLock(ctx, fmt.Sprint("pipe", i), dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		locks[i] = l
	}
	p := c.NewPipeline()
	reqs := make([]dlock.Request, window)
	b.ReportAllocs()
	started := 0
	for i := range reqs {
		if started == b.N {
			break
		}
		if err := p.TryLock(&reqs[i], locks[i]); err != nil {
			b.Fatal(err)
		}
		started++
	}
	for p.Outstanding() > 0 {
		r, err := p.Next(ctx)
		if err != nil || r.Err() != nil {
			b.Fatal(err, r.Err())
		}
		switch {
		case r.Op() != dlock.OpUnlock:
			if !r.Acquired() {
				b.Fatal("TryLock of a free lock failed")
			}
			err = p.Unlock(r, r.Lock())
		case started < b.N:
			started++
			err = p.TryLock(r, r.Lock())
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
