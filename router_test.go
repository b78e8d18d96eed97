package dlock_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlocktest"
)

// shardPair is two real servers on loopback, shards "a" and "b" of one
// map given to them directly (in a cluster the coordinator in
// dlockserver/ha does it from etcd).
type shardPair struct {
	a, b *dlocktest.Server
}

func newShardPair(t *testing.T) *shardPair {
	p := &shardPair{a: dlocktest.NewServer(t, nil), b: dlocktest.NewServer(t, nil)}
	p.set(t, 1, dlockserver.NumSlots) // every slot on a
	return p
}

// set gives slots [0, split) to a and the rest to b, at version v.
func (p *shardPair) set(t *testing.T, v uint64, split int) {
	t.Helper()
	m := dlockserver.ShardMap{Version: v, Shards: []dlockserver.Shard{{Name: "a", Addrs: []string{p.a.Addr}},
		{Name: "b", Addrs: []string{p.b.Addr}}}, Slots: make([]int, dlockserver.NumSlots)}
	for i := range m.Slots {
		if i >= split {
			m.Slots[i] = 1
		}
	}
	for _, s := range []struct {
		srv  *dlocktest.Server
		name string
	}{{p.a, "a"}, {p.b, "b"}} {
		if err := s.srv.SetShardMap(s.name, m); err != nil {
			t.Fatal(err)
		}
	}
}

// nameInSlots returns a name whose slot is in [lo, hi).
func nameInSlots(t *testing.T, prefix string, lo, hi int) string {
	for i := 0; i < 100000; i++ {
		n := fmt.Sprintf("%s%d", prefix, i)
		if s := dlock.SlotOf(n); s >= lo && s < hi {
			return n
		}
	}
	t.Fatal("no name found")
	return ""
}

// TestRouterFollowsMoved: a router whose map is older than the servers'
// is answered "moved", fetches the map again and opens the lock on the
// owning shard; a plain Client gets ErrMoved.
func TestRouterFollowsMoved(t *testing.T) {
	ctx := testCtx(t)
	p := newShardPair(t)
	r, err := dlock.DialRouter(ctx, &dlock.Config{Addrs: []string{p.a.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if m := r.Map(); m == nil || m.Version != 1 || len(m.Shards) != 2 {
		t.Fatalf("map %+v", m)
	}
	hi := nameInSlots(t, "hi/", dlock.NumSlots/2, dlock.NumSlots)
	lo := nameInSlots(t, "lo/", 0, dlock.NumSlots/2)
	if r.ShardOf(hi) != "a" {
		t.Fatalf("%s on %q with every slot on a", hi, r.ShardOf(hi))
	}
	p.set(t, 2, dlock.NumSlots/2) // the upper half now belongs to b

	plain := p.a.Dial(t)
	if _, err := plain.OpenLock(ctx, hi, dlock.LockOptions{}); !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("a plain client opening a moved name: %v", err)
	}
	if _, err := plain.CreateAtomic64(ctx, hi, 1, dlock.Atomic64Options{}); !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("a plain client creating a moved object: %v", err)
	}

	l, err := r.OpenLock(ctx, hi, dlock.LockOptions{TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if r.Map().Version != 2 || r.ShardOf(hi) != "b" || r.ShardOf(lo) != "a" {
		t.Fatalf("after the move: version %d, %s on %q", r.Map().Version, hi, r.ShardOf(hi))
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// The hold is on b: a client of b cannot take it, one of a cannot
	// even open it.
	other := p.b.Dial(t)
	ol, err := other.OpenLock(ctx, hi, dlock.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := ol.TryLock(ctx); ok || err != nil {
		t.Fatalf("b granted %s twice: %v %v", hi, ok, err)
	}
	o, err := r.CreateAtomic64(ctx, hi+"/obj", 7, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := o.FetchAndAdd(ctx, 1); err != nil || v != 7 {
		t.Fatal(v, err)
	}

	// A batch across both shards, with a stale part: every entry answered
	// in order.
	p.set(t, 3, dlock.NumSlots/4)
	var names []string
	for i := 0; i < dlock.MaxBatch; i++ {
		names = append(names, fmt.Sprintf("batch/%d", i))
	}
	locks := make([]*dlock.Lock, len(names))
	if err := r.BatchOpenLock(ctx, names, dlock.LockOptions{}, locks); err != nil {
		t.Fatal(err)
	}
	shards := map[string]int{}
	for i, l := range locks {
		if l == nil || l.Name() != names[i] {
			t.Fatalf("entry %d: %v", i, l)
		}
		shards[r.ShardOf(l.Name())]++
	}
	if r.Map().Version != 3 || len(shards) != 2 {
		t.Fatalf("version %d, shards %v", r.Map().Version, shards)
	}
}

// TestRouterOpenAndLock: open-and-lock through a Router whose map is stale
// follows "moved" to the shard that owns the name now, and the hold taken
// there is exclusive.
func TestRouterOpenAndLock(t *testing.T) {
	ctx := testCtx(t)
	p := newShardPair(t)
	r, err := dlock.DialRouter(ctx, &dlock.Config{Addrs: []string{p.a.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	hi := nameInSlots(t, "hi/", dlock.NumSlots/2, dlock.NumSlots)
	lo := nameInSlots(t, "lo/", 0, dlock.NumSlots/2)
	p.set(t, 2, dlock.NumSlots/2) // the upper half now belongs to b; r still thinks a

	l, ok, err := r.OpenAndTryLock(ctx, hi, dlock.LockOptions{TTL: time.Minute})
	if err != nil || !ok || l == nil {
		t.Fatalf("open-and-trylock of a moved name: %v %v %v", l, ok, err)
	}
	if r.Map().Version != 2 || r.ShardOf(hi) != "b" {
		t.Fatalf("after the move: version %d, %s on %q", r.Map().Version, hi, r.ShardOf(hi))
	}
	other := p.b.Dial(t)
	ol, err := other.OpenLock(ctx, hi, dlock.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ol.TryLock(ctx); got || err != nil {
		t.Fatalf("b granted %s to a second client: %v %v", hi, got, err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := ol.TryLock(ctx); !got || err != nil {
		t.Fatalf("after the router's unlock: %v %v", got, err)
	}
	// Busy: the open succeeds, the trylock does not.
	l2, ok, err := r.OpenAndTryLock(ctx, hi, dlock.LockOptions{TTL: time.Minute})
	if err != nil || ok || l2 == nil {
		t.Fatalf("open-and-trylock of a held lock: %v %v %v", l2, ok, err)
	}
	ll, err := r.OpenAndLock(ctx, lo, dlock.LockOptions{TTL: time.Minute})
	if err != nil || ll == nil || r.ShardOf(lo) != "a" {
		t.Fatalf("open-and-lock on a: %v %v", ll, err)
	}
	if err := ll.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestRouterUnsharded: against a server outside a sharded cluster a
// Router is one Client.
func TestRouterUnsharded(t *testing.T) {
	ctx := testCtx(t)
	srv := dlocktest.NewServer(t, nil)
	if _, err := dlock.FetchShardMap(ctx, srv.Addr, nil); !errors.Is(err, dlock.ErrNotSharded) {
		t.Fatalf("FetchShardMap: %v", err)
	}
	r, err := dlock.DialRouter(ctx, &dlock.Config{Addrs: []string{srv.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Map() != nil || r.ShardOf("x") != "" {
		t.Fatal("a map from an unsharded server")
	}
	l, err := r.OpenLock(ctx, "x", dlock.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := make([]dlock.Result, 1)
	if err := r.BatchTryLock(ctx, []dlock.LockRequest{{Lock: l}}, res); err != nil || res[0].Status != dlock.Success {
		t.Fatal(err, res[0].Status)
	}
	c, err := r.Client(ctx, "anything")
	if err != nil || c.ID() <= 0 {
		t.Fatalf("Client: %v", err)
	}
}

// TestDisownedSlotGrantsNothing: when a new map takes a slot away from a
// server, that server refuses every acquiring command on the slot's locks
// (a new trylock), and a blocking request queued before
// the change, which the holder's lease expiry would have granted, is
// answered moved instead of granted. Other slots' locks keep working.
func TestDisownedSlotGrantsNothing(t *testing.T) {
	ctx := testCtx(t)
	p := newShardPair(t)
	hi := nameInSlots(t, "hi/", dlock.NumSlots/2, dlock.NumSlots)
	lo := nameInSlots(t, "lo/", 0, dlock.NumSlots/2)
	c1, c2 := p.a.Dial(t), p.a.Dial(t)
	h1 := open(t, c1, hi, dlock.LockOptions{TTL: time.Second})
	h2 := open(t, c2, hi, dlock.LockOptions{TTL: time.Second})
	l1 := open(t, c1, lo, dlock.LockOptions{TTL: time.Minute})
	if ok, err := h1.TryLock(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	waited := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		waited <- h2.Lock(wctx)
	}()
	time.Sleep(200 * time.Millisecond) // c2 is queued
	p.set(t, 2, dlock.NumSlots/2)      // hi's slot now belongs to b

	if err := <-waited; !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("the queued request after the lease ran out: %v (want moved, never a grant)", err)
	}
	if ok, err := h2.TryLock(ctx); ok || !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("trylock of a disowned lock: %v %v", ok, err)
	}
	if ok, err := l1.TryLock(ctx); !ok || err != nil {
		t.Fatalf("a lock of a kept slot: %v %v", ok, err)
	}
	// Giving the slot back without a move (which would freeze it until b
	// let go) does not revive it on a: it was taken away.
	p.set(t, 3, dlock.NumSlots)
	if _, err := c1.OpenLock(ctx, "{"+hi+"}/x", dlock.LockOptions{}); !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("open on a slot taken away and given back: %v", err)
	}
	if ok, err := h2.TryLock(ctx); ok || !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("trylock after the slot came back: %v %v", ok, err)
	}
}

// TestRouterTLS: the map request and the shards' sessions run over mutual
// TLS like every other connection.
func TestRouterTLS(t *testing.T) {
	ctx := testCtx(t)
	srv := dlocktest.NewTLSServer(t, nil)
	m := dlockserver.ShardMap{Version: 4, Shards: []dlockserver.Shard{{Name: "only", Addrs: []string{srv.Addr}}},
		Slots: make([]int, dlockserver.NumSlots)}
	if err := srv.SetShardMap("only", m); err != nil {
		t.Fatal(err)
	}
	cfg := *srv.ClientConfig()
	cfg.Addrs = []string{srv.Addr}
	r, err := dlock.DialRouter(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if mm := r.Map(); mm == nil || mm.Version != 4 || r.ShardOf("x") != "only" {
		t.Fatalf("map over TLS: %+v", mm)
	}
	l, err := r.OpenLock(ctx, "x", dlock.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// Without a client certificate the map is not served.
	if _, err := dlock.FetchShardMap(ctx, srv.Addr, nil); err == nil {
		t.Fatal("a map over plaintext from a TLS server")
	}
}
