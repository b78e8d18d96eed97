package dlockserver

import (
	"bytes"
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/wire"
)

// BenchmarkShardGate measures what a request costs the server from its
// frame to its reply, without the network, in a sharded server (every
// slot owned) and an unsharded one: an open by name and its release (the
// gate decodes the name), and a trylock and unlock by id. Every goroutine
// of b.RunParallel is a client on its own connection, with its own lock.
// Run it with -cpu 1,2 -benchmem: the gate's shared state, if it writes
// any, shows as a loss at 2 against 1.
func BenchmarkShardGate(b *testing.B) {
	for _, sharded := range []bool{false, true} {
		for _, op := range []string{"open-release", "trylock-unlock"} {
			name := "unsharded/" + op
			if sharded {
				name = "sharded/" + op
			}
			b.Run(name, func(b *testing.B) {
				s, err := New(Config{})
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				if sharded {
					m := ShardMap{Version: 1, Shards: []Shard{{Name: "a", Addrs: []string{"127.0.0.1:1"}}},
						Slots: make([]int, NumSlots)}
					if err := s.SetShardMap("a", m); err != nil {
						b.Fatal(err)
					}
				}
				var seq atomic.Uint64
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					p := newBenchPeer(b, s, seq.Add(1))
					get := wire.GetLock{Type: uint8(dlock.Atomic), Desc: fmt.Appendf(nil, "gate-%d", p.c.seq)}
					lid := p.getLock(&get)
					var reqs [2][]byte
					if op == "open-release" {
						// Released, then opened again (the lock stays, with
						// its id, while another client has it open).
						other := newBenchPeer(b, s, seq.Add(1)+1<<31)
						other.getLock(&get)
						rel := wire.ID{ID: lid}
						reqs[0] = rel.Append(nil, wire.TReleaseLock, 3, p.id)
						reqs[1] = get.Append(nil, 4, p.id)
					} else {
						arg := dlock.AtomicState{Owner: p.id, Timeout: 30}.State()
						lock := wire.LockOp{LockID: lid, Cmd: uint8(dlock.CmdExclusiveTrylock), Arg: arg}
						unlock := wire.LockOp{LockID: lid, Cmd: uint8(dlock.CmdExclusiveUnlock), Arg: arg}
						reqs[0] = lock.Append(nil, 3, p.id)
						reqs[1] = unlock.Append(nil, 4, p.id)
					}
					var hs [2]wire.Header
					var bodies [2][]byte
					for i, r := range reqs {
						bodies[i] = p.frame(r, &hs[i])
					}
					for pb.Next() {
						for i := range reqs {
							if !p.c.handle(&hs[i], bodies[i]) {
								panic("connection closed")
							}
							if st := p.status(); st != 0 {
								panic(fmt.Sprintf("%s %d (%v): status %d, out %d", op, i, hs[i].Type(), st, len(p.c.out)))
							}
						}
					}
				})
			})
		}
	}
}

// benchPeer is a registered connection whose requests the benchmark hands
// to conn.handle directly.
type benchPeer struct {
	tb testing.TB
	c  *conn
	id int32
	h  wire.Header
}

func newBenchPeer(tb testing.TB, s *Server, seq uint64) *benchPeer {
	a, z := net.Pipe()
	tb.Cleanup(func() { a.Close(); z.Close() })
	// (Not among the server's connections: nothing but the benchmark
	// touches its output.)
	p := &benchPeer{tb: tb, c: newConn(s, a, seq)}
	m := wire.Init{MinVersion: wire.Version}
	var h wire.Header
	p.c.handle(&h, p.frame(m.Append(nil, wire.TInit, 1, 0), &h))
	var rep wire.InitReply
	if err := rep.Decode(p.reply()); err != nil || p.h.Status() != 0 {
		tb.Fatalf("init: %v %d", err, p.h.Status())
	}
	p.id = rep.ClientID
	return p
}

// frame splits a request frame into its header and body.
func (p *benchPeer) frame(b []byte, h *wire.Header) []byte {
	body, err := wire.ReadFrame(bytes.NewReader(b), h, nil)
	if err != nil {
		p.tb.Fatal(err)
	}
	return body
}

// reply takes the reply the last request queued.
func (p *benchPeer) reply() []byte {
	p.c.outMu.Lock()
	defer p.c.outMu.Unlock()
	body, err := wire.ReadFrame(bytes.NewReader(p.c.out), &p.h, nil)
	if err != nil {
		panic(err)
	}
	p.c.out = p.c.out[:0]
	return body
}

// status takes the reply the last request queued and returns its status
// (of the frame, or of the lock result).
func (p *benchPeer) status() int32 {
	p.c.outMu.Lock()
	defer p.c.outMu.Unlock()
	n := len(p.c.out)
	if n < wire.HeaderLen {
		return -1
	}
	p.h = wire.Header(p.c.out[:wire.HeaderLen])
	p.c.out = p.c.out[:0]
	return p.h.Status()
}

func (p *benchPeer) getLock(m *wire.GetLock) int32 {
	var h wire.Header
	p.c.handle(&h, p.frame(m.Append(nil, 2, p.id), &h))
	var rep wire.GetLockReply
	if err := rep.Decode(p.reply()); err != nil || p.h.Status() != 0 {
		p.tb.Fatalf("get lock: %v %d", err, p.h.Status())
	}
	return rep.ID
}

// TestShardGateAllocs: in a sharded server, a trylock and an unlock by id
// allocate nothing, the gate included (a gate that returned a release
// closure allocated one per request).
func TestShardGateAllocs(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := ShardMap{Version: 1, Shards: []Shard{{Name: "a", Addrs: []string{"127.0.0.1:1"}}}, Slots: make([]int, NumSlots)}
	if err := s.SetShardMap("a", m); err != nil {
		t.Fatal(err)
	}
	p := newBenchPeer(t, s, 1)
	get := wire.GetLock{Type: uint8(dlock.Atomic), Desc: []byte("allocs")}
	lid := p.getLock(&get)
	arg := dlock.AtomicState{Owner: p.id, Timeout: 30}.State()
	var hs [2]wire.Header
	var bodies [2][]byte
	for i, cmd := range []dlock.Cmd{dlock.CmdExclusiveTrylock, dlock.CmdExclusiveUnlock} {
		op := wire.LockOp{LockID: lid, Cmd: uint8(cmd), Arg: arg}
		bodies[i] = p.frame(op.Append(nil, uint32(3+i), p.id), &hs[i])
	}
	cycle := func() {
		for i := range hs {
			p.c.handle(&hs[i], bodies[i])
			if st := p.status(); st != 0 {
				t.Fatalf("request %d: status %d", i, st)
			}
		}
	}
	cycle()
	if n := testing.AllocsPerRun(500, cycle); n > 0.05 {
		t.Errorf("%.2f allocations per sharded trylock+unlock, want 0", n)
	}
}
