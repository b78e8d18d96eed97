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

// holdChecker records every grant and release and fails on two exclusive
// holders or a writer beside a reader. A grant is recorded after the server
// granted it and a release before the unlock is sent, so every overlap it
// sees is real.
type holdChecker struct {
	t       *testing.T
	mu      sync.Mutex
	writer  map[string]int32
	readers map[string]map[int32]int
	grants  int
	tokens  map[string]uint64
}

func newHoldChecker(t *testing.T) *holdChecker {
	return &holdChecker{t: t, writer: map[string]int32{}, readers: map[string]map[int32]int{}, tokens: map[string]uint64{}}
}

func (h *holdChecker) acquire(lock string, client int32, shared bool, token uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.grants++
	if w := h.writer[lock]; w != 0 {
		h.t.Errorf("%s: client %d granted (shared=%v) while client %d holds it exclusively", lock, client, shared, w)
	}
	if !shared && len(h.readers[lock]) > 0 {
		h.t.Errorf("%s: client %d granted exclusively beside readers %v", lock, client, h.readers[lock])
	}
	if token <= h.tokens[lock] && !shared {
		h.t.Errorf("%s: exclusive token %d not above the last %d", lock, token, h.tokens[lock])
	}
	if token > h.tokens[lock] {
		h.tokens[lock] = token
	}
	if shared {
		if h.readers[lock] == nil {
			h.readers[lock] = map[int32]int{}
		}
		h.readers[lock][client]++
	} else {
		h.writer[lock] = client
	}
}

func (h *holdChecker) release(lock string, client int32, shared bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if shared {
		if h.readers[lock][client]--; h.readers[lock][client] == 0 {
			delete(h.readers[lock], client)
		}
	} else {
		delete(h.writer, lock)
	}
}

// TestConcurrentInvariants: 64 goroutines on separate clients hammer a few
// locks of each type with trylocks, blocking locks, shared and exclusive
// holds, for a bounded number of operations each.
func TestConcurrentInvariants(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	h := newHoldChecker(t)
	const (
		clients = 64
		opsEach = 60
	)
	types := []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair}
	names := []string{"hot-0", "hot-1"}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		c := srv.Dial(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var locks []*dlock.Lock
			for _, typ := range types {
				for _, n := range names {
					l, err := c.OpenLock(ctx, typ.String()+"/"+n, dlock.LockOptions{Type: typ, TTL: time.Minute})
					if err != nil {
						t.Errorf("open: %v", err)
						return
					}
					locks = append(locks, l)
				}
			}
			for k := 0; k < opsEach; k++ {
				l := locks[(i+k)%len(locks)]
				shared := l.Type() != dlock.Atomic && (i+k)%3 == 0
				blocking := (i+k)%2 == 0
				var ok bool
				var err error
				switch {
				case blocking && shared:
					err = l.RLock(ctx)
					ok = err == nil
				case blocking:
					err = l.Lock(ctx)
					ok = err == nil
				case shared:
					ok, err = l.TryRLock(ctx)
				default:
					ok, err = l.TryLock(ctx)
				}
				if err != nil {
					t.Errorf("client %d op %d on %s: %v", c.ID(), k, l.Name(), err)
					return
				}
				if !ok {
					if l.Type() == dlock.Fair {
						l.Unlock(ctx) // give up the ticket
					}
					continue
				}
				h.acquire(l.Name(), c.ID(), shared, l.Token())
				h.release(l.Name(), c.ID(), shared)
				if err := l.Unlock(ctx); err != nil {
					t.Errorf("client %d unlock %s: %v", c.ID(), l.Name(), err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if h.grants < clients*opsEach/4 {
		t.Errorf("only %d grants in %d operations: the test exercised too little", h.grants, clients*opsEach)
	}
}

// TestLimits fills the server to its DLock limits through the public API.
func TestLimits(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the server: slow under -short")
	}
	srv := dlocktest.NewServer(t, nil)
	// Filling the server is some 200 000 round trips: under -race on a
	// busy 2-core machine they take longer than testCtx's 30 s.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("clients", func(t *testing.T) {
		clients := make([]*dlock.Client, 0, dlock.MaxClients)
		for srv.Clients() < dlock.MaxClients {
			clients = append(clients, srv.Dial(t))
		}
		if _, err := dlock.Dial(ctx, srv.Addr, nil); !errors.Is(err, dlock.ErrServerNoResource) {
			t.Fatalf("client %d: Dial = %v, want ErrServerNoResource", dlock.MaxClients+1, err)
		}
		// An abnormal client (connection dropped) is evicted to make room.
		clients[0].Close()
		waitFor(t, "server sees the drop", func() bool { return srv.Stats()[dlock.StatClientDisconnect] > 0 })
		c, err := dlock.Dial(ctx, srv.Addr, nil)
		if err != nil {
			t.Fatalf("Dial with an abnormal client to evict: %v", err)
		}
		c.Close()
		for _, c := range clients[1:] {
			c.Shutdown(ctx)
		}
		waitFor(t, "clients gone", func() bool { return srv.Clients() <= 1 })
	})

	t.Run("locks", func(t *testing.T) {
		c := srv.Dial(t)
		names := make([]string, dlock.MaxBatch)
		locks := make([]*dlock.Lock, dlock.MaxBatch)
		opened := 0
		for opened < dlock.MaxLocks {
			n := min(dlock.MaxBatch, dlock.MaxLocks-opened)
			for i := range n {
				names[i] = fmt.Sprintf("limit-%06d", opened+i)
			}
			if err := c.BatchOpenLock(ctx, names[:n], dlock.LockOptions{Type: dlock.Atomic}, locks); err != nil {
				t.Fatalf("after %d locks: %v", opened, err)
			}
			opened += n
		}
		if got := srv.Locks(); got != dlock.MaxLocks {
			t.Fatalf("server has %d locks, want %d", got, dlock.MaxLocks)
		}
		if _, err := c.OpenLock(ctx, "one-too-many", dlock.LockOptions{}); !errors.Is(err, dlock.ErrServerNoResource) {
			t.Fatalf("lock %d: %v, want ErrServerNoResource", dlock.MaxLocks+1, err)
		}
		// An existing lock can still be opened by another client.
		if _, err := srv.Dial(t).OpenLock(ctx, "limit-000000", dlock.LockOptions{}); err != nil {
			t.Fatalf("opening an existing lock at the limit: %v", err)
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("objects", func(t *testing.T) {
		const workers = 16
		var wg sync.WaitGroup
		per := dlock.MaxObjects / workers
		for w := range workers {
			c := srv.Dial(t)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					if _, err := c.CreateAtomic64(ctx, fmt.Sprintf("obj-%02d-%06d", w, i), 0, dlock.Atomic64Options{}); err != nil {
						t.Errorf("object %d/%d: %v", w, i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if _, err := srv.Dial(t).CreateAtomic64(ctx, "one-too-many", 0, dlock.Atomic64Options{}); !errors.Is(err, dlock.ErrObjectTooMany) {
			t.Fatalf("object %d: %v, want ErrObjectTooMany", dlock.MaxObjects+1, err)
		}
	})
}
