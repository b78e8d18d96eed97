package dlockserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

// shardTestServer starts a server on loopback that owns every slot as
// shard "a" of map version 1.
func shardTestServer(t *testing.T) (*Server, string) {
	t.Helper()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Serve(ln)
	}()
	t.Cleanup(func() {
		s.Close()
		<-done
	})
	if err := s.SetShardMap("a", testMap(1, "a", ln.Addr().String(), nil)); err != nil {
		t.Fatal(err)
	}
	return s, ln.Addr().String()
}

// testMap is a map of version v in which shard a owns every slot but
// those in away, which shard b owns.
func testMap(v uint64, self, addr string, away map[int]bool) ShardMap {
	m := ShardMap{Version: v, Shards: []Shard{{Name: self, Addrs: []string{addr}}, {Name: "b"}},
		Slots: make([]int, NumSlots)}
	for k := range m.Slots {
		if away[k] {
			m.Slots[k] = 1
		}
	}
	return m
}

// serverConn returns the server's side of the only connection.
func serverConn(t *testing.T, s *Server) *conn {
	t.Helper()
	for i := 0; i < 500; i++ {
		s.mu.Lock()
		for c := range s.conns {
			s.mu.Unlock()
			return c
		}
		s.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no connection")
	return nil
}

// TestShardGateWaitsForRequests: a map change does not return while a
// request checked against the previous map is executing (so a source that
// counts its holds after the change sees every grant made under the old
// map), and returns as soon as that request ends; a request that starts
// after the change is checked against the new map.
func TestShardGateWaitsForRequests(t *testing.T) {
	s, addr := shardTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := dlock.Dial(ctx, addr, &dlock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c := serverConn(t, s)

	// A request in flight on c, checked against map 1 (as the reader
	// goroutine does between reading a frame and the end of its handler;
	// the client sends nothing meanwhile).
	old := c.enterShard()
	if old == nil || old.wire.Version != 1 {
		t.Fatalf("entered with %+v", old)
	}
	changed := make(chan error, 1)
	go func() { changed <- s.SetShardMap("a", testMap(2, "a", addr, map[int]bool{7: true})) }()
	select {
	case err := <-changed:
		t.Fatalf("the map changed while a request checked against the old one executed (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	if s.ShardMapVersion() != 2 {
		t.Fatalf("version %d while waiting: new requests must see the new map", s.ShardMapVersion())
	}
	c.leaveShard(old)
	select {
	case err := <-changed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the map change did not return once the request ended")
	}
	// The next request sees map 2: a name of slot 7 is moved.
	name := ""
	for i := 0; dlock.SlotOf(name) != 7 || name == ""; i++ {
		name = fmt.Sprintf("n%d", i)
	}
	if _, err := cl.OpenLock(ctx, name, dlock.LockOptions{}); !errors.Is(err, dlock.ErrMoved) {
		t.Fatalf("open of a slot taken away: %v", err)
	}
	if st := c.enterShard(); st == nil || st.wire.Version != 2 {
		t.Fatalf("entered with %+v after the change", st)
	} else {
		c.leaveShard(st)
	}
}

// TestShardGateUnderChanges: clients open, lock and unlock while the map
// changes 200 times (the race detector checks the gate's publication);
// every request is answered, and a lock held when a map takes its slot away
// is counted by DisownedHeld as soon as that change returns.
func TestShardGateUnderChanges(t *testing.T) {
	s, addr := shardTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ops atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for w := 0; w < 4; w++ {
		cl, err := dlock.Dial(ctx, addr, &dlock.Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				l, err := cl.OpenLock(ctx, fmt.Sprintf("w%d/%d", w, i%50), dlock.LockOptions{})
				if err == nil {
					var ok bool
					if ok, err = l.TryLock(ctx); err == nil && ok {
						err = l.Unlock(ctx)
					}
				}
				if err != nil {
					errc <- err
					return
				}
				ops.Add(1)
			}
		}()
	}
	for v := uint64(2); v < 202; v++ {
		if err := s.SetShardMap("a", testMap(v, "a", addr, nil)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatalf("a request failed while the map changed: %v", err)
	default:
	}
	if ops.Load() == 0 {
		t.Fatal("no request completed")
	}
	t.Logf("%d open+lock+unlock while the map changed 200 times", ops.Load())

	// A hold in slot k, then a map without k: counted at once.
	cl, err := dlock.Dial(ctx, addr, &dlock.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l, err := cl.OpenLock(ctx, "held", dlock.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := s.SetShardMap("a", testMap(300, "a", addr, map[int]bool{dlock.SlotOf("held"): true})); err != nil {
		t.Fatal(err)
	}
	if held, ready := s.DisownedHeld(); !ready || held != 1 {
		t.Fatalf("DisownedHeld %d %v, want 1 true", held, ready)
	}
}
