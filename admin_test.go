package dlock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func adminContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// holderAndWaiter makes client a hold an atomic lock and client b wait for
// it on the server; it returns a's lock and the channel b's Lock reports to.
func holderAndWaiter(t *testing.T, ctx context.Context, a, b *dlock.Client, name string) (*dlock.Lock, *dlock.Lock, chan error) {
	t.Helper()
	la, err := a.OpenLock(ctx, name, dlock.LockOptions{Type: dlock.Atomic, TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.OpenLock(ctx, name, dlock.LockOptions{Type: dlock.Atomic, TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	granted := make(chan error, 1)
	go func() { granted <- lb.Lock(ctx) }()
	return la, lb, granted
}

// waitListed polls Locks until name shows n waiters.
func waitListed(t *testing.T, ctx context.Context, c *dlock.Client, name string, n int) dlock.LockInfo {
	t.Helper()
	for i := 0; ; i++ {
		locks, err := c.Locks(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range locks {
			if l.Name == name && len(l.Waiters) == n {
				return l
			}
		}
		if i == 500 {
			t.Fatalf("%s never listed with %d waiters: %+v", name, n, locks)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLocksListsHolderAndWaiter(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := adminContext(t)
	a, b, op := srv.Dial(t), srv.Dial(t), srv.Dial(t)
	before := time.Now()
	la, _, granted := holderAndWaiter(t, ctx, a, b, "jobs/nightly")
	if _, err := op.OpenLock(ctx, "other/x", dlock.LockOptions{Type: dlock.RW}); err != nil {
		t.Fatal(err)
	}
	info := waitListed(t, ctx, op, "jobs/nightly", 1)

	locks, err := op.Locks(ctx, "jobs/")
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 1 {
		t.Fatalf("prefix jobs/: %d locks %+v, want only jobs/nightly", len(locks), locks)
	}
	if info.Type != "atomic" || info.Refs != 2 || len(info.Holders) != 1 {
		t.Fatalf("listing %+v; want an atomic lock with 2 references and 1 holder", info)
	}
	h := info.Holders[0]
	if h.Client != a.ID() || h.Mode != "exclusive" || h.Token != la.Token() || !h.Connected || !strings.HasPrefix(h.Remote, "127.0.0.1:") {
		t.Errorf("holder %+v; want client %d exclusive with token %d, connected from 127.0.0.1", h, a.ID(), la.Token())
	}
	if h.Since.Before(before.Add(-time.Second)) || h.Since.After(time.Now()) {
		t.Errorf("holder since %v; want between %v and now", h.Since, before)
	}
	if d := time.Until(h.LeaseExpiry); d < 25*time.Second || d > 32*time.Second {
		t.Errorf("lease expiry in %v; want about 30s", d)
	}
	w := info.Waiters[0]
	if w.Client != b.ID() || w.Mode != "exclusive" || w.Since.Before(h.Since) || w.Since.After(time.Now()) {
		t.Errorf("waiter %+v; want client %d exclusive, queued after the grant", w, b.ID())
	}
	if err := la.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-granted; err != nil {
		t.Fatal(err)
	}
	info = waitListed(t, ctx, op, "jobs/nightly", 0)
	if len(info.Holders) != 1 || info.Holders[0].Client != b.ID() {
		t.Errorf("after the hand-over: holders %+v, want client %d", info.Holders, b.ID())
	}
}

// TestLocksPages: a listing larger than one reply comes back whole and in
// name order.
func TestLocksPages(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := adminContext(t)
	c := srv.Dial(t)
	const n = 600
	for i := range n {
		if _, err := c.OpenLock(ctx, fmt.Sprintf("page/%04d/%s", i, strings.Repeat("x", 100)), dlock.LockOptions{Type: dlock.Fair}); err != nil {
			t.Fatal(err)
		}
	}
	locks, err := c.Locks(ctx, "page/")
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != n {
		t.Fatalf("%d locks listed, want %d", len(locks), n)
	}
	for i, l := range locks {
		if !strings.HasPrefix(l.Name, fmt.Sprintf("page/%04d/", i)) || l.Type != "fair" {
			t.Fatalf("lock %d is %q (%s)", i, l.Name, l.Type)
		}
	}
}

// TestForceRelease: the waiter is granted, the former holder's next
// operation fails with ErrFail, and the release is counted and logged.
func TestForceRelease(t *testing.T) {
	var log lockedBuffer
	srv := dlocktest.NewServer(t, &dlockserver.Config{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	ctx := adminContext(t)
	a, b, op := srv.Dial(t), srv.Dial(t), srv.Dial(t)
	la, lb, granted := holderAndWaiter(t, ctx, a, b, "stuck")
	waitListed(t, ctx, op, "stuck", 1)

	released, err := op.ForceRelease(ctx, "stuck")
	if err != nil {
		t.Fatal(err)
	}
	if len(released) != 1 || released[0] != a.ID() {
		t.Fatalf("released %v, want [%d]", released, a.ID())
	}
	if err := <-granted; err != nil {
		t.Fatalf("the waiter was not granted: %v", err)
	}
	if lb.Token() <= la.Token() {
		t.Errorf("new holder's token %d not above the old one's %d", lb.Token(), la.Token())
	}
	if err := la.Extend(ctx, time.Minute); !errors.Is(err, dlock.ErrFail) {
		t.Errorf("former holder's Extend: %v, want ErrFail", err)
	}
	if got := srv.Observe().ForceReleased; got != 1 {
		t.Errorf("force releases counted: %d, want 1", got)
	}
	if !strings.Contains(log.String(), `msg="lock force-released" lock=stuck`) {
		t.Errorf("no log record of the force-release:\n%s", log.String())
	}
	// A holder whose next operation is an unlock learns it too.
	l2, err := a.OpenLock(ctx, "stuck2", dlock.LockOptions{Type: dlock.Fair, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := l2.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if released, err := op.ForceRelease(ctx, "stuck2"); err != nil || len(released) != 1 {
		t.Fatalf("force-release of a fair lock: %v %v", released, err)
	}
	if err := l2.Unlock(ctx); !errors.Is(err, dlock.ErrFail) {
		t.Errorf("former holder's Unlock: %v, want ErrFail", err)
	}
	if _, err := op.ForceRelease(ctx, "no such lock"); !errors.Is(err, dlock.ErrInval) {
		t.Errorf("force-release of an unknown lock: %v, want ErrInval", err)
	}
}

func TestTopLocks(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := adminContext(t)
	a, b, op := srv.Dial(t), srv.Dial(t), srv.Dial(t)
	la, _, granted := holderAndWaiter(t, ctx, a, b, "hot")
	waitListed(t, ctx, op, "hot", 1)
	top, err := op.TopLocks(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 1 || top[0].Name != "hot" || top[0].Waiters != 1 || top[0].Queued != 1 {
		t.Fatalf("top while waiting: %+v; want hot with 1 waiter", top)
	}
	time.Sleep(50 * time.Millisecond)
	if err := la.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-granted; err != nil {
		t.Fatal(err)
	}
	top, err = op.TopLocks(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(top) != 1 || top[0].Handovers != 1 || top[0].WaitSeconds < 0.05 || top[0].MaxQueue != 1 || top[0].WindowSeconds < 10 {
		t.Fatalf("top after the hand-over: %+v; want 1 hand-over after ≥ 50ms, queue 1", top)
	}
}

// TestAdminNeedsAdminCertificate: with mutual TLS only certificates named in
// AdminNames may make admin requests.
func TestAdminNeedsAdminCertificate(t *testing.T) {
	srv := dlocktest.NewTLSServer(t, &dlockserver.Config{AdminNames: []string{"operator"}})
	ctx := adminContext(t)
	user := srv.Dial(t) // certificate "client"
	if _, err := user.Locks(ctx, ""); !errors.Is(err, dlock.ErrGeneric) {
		t.Errorf("Locks with a non-admin certificate: %v, want ErrGeneric", err)
	}
	if _, err := user.ForceRelease(ctx, "x"); !errors.Is(err, dlock.ErrGeneric) {
		t.Errorf("ForceRelease with a non-admin certificate: %v, want ErrGeneric", err)
	}
	admin, err := dlock.Dial(ctx, srv.Addr, &dlock.Config{TLS: srv.PKI.TLS(srv.PKI.Issue("operator", dlocktest.CertOptions{}))})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if _, err := user.OpenLock(ctx, "x", dlock.LockOptions{}); err != nil {
		t.Fatal(err)
	}
	locks, err := admin.Locks(ctx, "")
	if err != nil || len(locks) != 1 || locks[0].Name != "x" {
		t.Errorf("Locks with the admin certificate: %+v, %v", locks, err)
	}
}

// TestForceReleaseEveryType: for every lock type and mode, the former
// holder's unlock after a force-release fails with ErrFail.
func TestForceReleaseEveryType(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	ctx := adminContext(t)
	a, op := srv.Dial(t), srv.Dial(t)
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair} {
		for _, shared := range []bool{false, true} {
			if typ == dlock.Atomic && shared {
				continue
			}
			name := fmt.Sprintf("%v/shared=%v", typ, shared)
			l, err := a.OpenLock(ctx, name, dlock.LockOptions{Type: typ, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if shared {
				err = l.RLock(ctx)
			} else {
				err = l.Lock(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			if r, err := op.ForceRelease(ctx, name); err != nil || len(r) != 1 || r[0] != a.ID() {
				t.Fatalf("%s: released %v, %v", name, r, err)
			}
			if err := l.Unlock(ctx); !errors.Is(err, dlock.ErrFail) {
				t.Errorf("%s: former holder's Unlock: %v, want ErrFail", name, err)
			}
		}
	}
}
