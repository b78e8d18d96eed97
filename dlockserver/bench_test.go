package dlockserver_test

import (
	"testing"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// hotPeer drives one lock over a raw connection with preallocated buffers,
// so that every allocation counted while it runs is the server's.
type hotPeer struct {
	r      *rawConn
	id     int32
	lockID int32
	out    []byte
	in     []byte
	h      wire.Header
	res    wire.LockResult
}

func newHotPeer(tb testing.TB, typ dlock.LockType) *hotPeer {
	t := tb
	srv := dlocktest.NewServer(t, nil)
	r := dialRaw(t, srv.Addr)
	p := &hotPeer{r: r, out: make([]byte, 0, 256), in: make([]byte, 0, 256)}
	p.id = r.register()
	get := wire.GetLock{Type: uint8(typ), Desc: []byte("hot")}
	r.write(get.Append(nil, 2, p.id))
	h, body, err := r.read()
	if err != nil || h.Status() != 0 {
		t.Fatalf("get lock: %v %d", err, h.Status())
	}
	var rep wire.GetLockReply
	if err := rep.Decode(body); err != nil {
		t.Fatal(err)
	}
	p.lockID = rep.ID
	return p
}

// do sends one command and waits for its reply, returning the status.
func (p *hotPeer) do(cmd dlock.Cmd, arg dlock.LockState) dlock.Status {
	m := wire.LockOp{LockID: p.lockID, Cmd: uint8(cmd), Arg: arg}
	p.out = m.Append(p.out[:0], 1, p.id)
	if _, err := p.r.nc.Write(p.out); err != nil {
		panic(err)
	}
	body, err := wire.ReadFrame(p.r.nc, &p.h, p.in)
	if err != nil {
		panic(err)
	}
	p.in = body[:0]
	if err := p.res.Decode(body); err != nil {
		panic(err)
	}
	return dlock.Status(p.h.Status())
}

// TestServerHotPathAllocs: trylock, extend and unlock allocate nothing on
// the server, for every lock type.
func TestServerHotPathAllocs(t *testing.T) {
	for _, typ := range []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair} {
		p := newHotPeer(t, typ)
		var lock, extend, unlock dlock.Cmd = dlock.CmdExclusiveTrylock, dlock.CmdExclusiveExtend, dlock.CmdExclusiveUnlock
		arg := dlock.AtomicState{Owner: p.id, Timeout: 30}.State()
		if typ == dlock.RW {
			arg = dlock.RWState{Owner: p.id}.State()
		}
		cycle := func() {
			a := arg
			if typ == dlock.Fair {
				a = dlock.FairState{Timeout: 30}.State()
			}
			if st := p.do(lock, a); st != dlock.Success {
				t.Fatalf("%v trylock: %v", typ, st)
			}
			if typ == dlock.Fair {
				f := p.res.State
				fs := dlock.LockState(f).Fair()
				fs.Timeout = 30
				a = fs.State()
			}
			if typ != dlock.RW {
				if st := p.do(extend, a); st != dlock.Success {
					t.Fatalf("%v extend: %v", typ, st)
				}
			}
			if st := p.do(unlock, a); st != dlock.Success {
				t.Fatalf("%v unlock: %v", typ, st)
			}
		}
		cycle() // warm up buffers
		if n := testing.AllocsPerRun(500, cycle); n > 0.05 {
			t.Errorf("%v: %.2f allocations per trylock+extend+unlock on the server, want 0", typ, n)
		}
	}
}

// BenchmarkServerTryLockUnlock measures one acquire+release over loopback
// with a minimal peer: the server's cost plus two TCP round trips.
func BenchmarkServerTryLockUnlock(b *testing.B) {
	p := newHotPeer(b, dlock.Atomic)
	arg := dlock.AtomicState{Owner: p.id, Timeout: 30}.State()
	b.ReportAllocs()
	for b.Loop() {
		if st := p.do(dlock.CmdExclusiveTrylock, arg); st != dlock.Success {
			b.Fatal(st)
		}
		if st := p.do(dlock.CmdExclusiveUnlock, arg); st != dlock.Success {
			b.Fatal(st)
		}
	}
}
