package dlockserver

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/wire"
)

// BenchmarkStateParallel measures how the server's state scales with
// cores: every goroutine of b.RunParallel is a client taking and releasing
// its own ATOMIC lock through the same path as a request (the clock, the
// state's lockOp: the lock's stripe, the state machine, the observations),
// without the network. Run it with -cpu 1,2: ns/op at 1 divided by ns/op at 2 is the
// speed-up. The "one-mutex" variant also takes one mutex shared by every
// goroutine, as the server did before its state was striped, for
// comparison on the same machine.
func BenchmarkStateParallel(b *testing.B) {
	for _, exclusive := range []bool{false, true} {
		name := "striped"
		if exclusive {
			name = "one-mutex"
		}
		b.Run(name, func(b *testing.B) {
			s, err := New(Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var next atomic.Int32
			var one sync.Mutex // the "one mutex" variant's
			const maxWorkers = 256
			ids := make([]int32, maxWorkers+1)
			s.mu.Lock()
			for client := int32(1); client <= maxWorkers; client++ {
				id, status := s.locks.Get(client, fmt.Appendf(nil, "scale-%d", client), dlock.Atomic, 0, 0)
				if status != dlock.Success {
					b.Fatal(status)
				}
				ids[client] = id
			}
			s.mu.Unlock()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				cid := next.Add(1)
				if cid > maxWorkers {
					panic("too many workers")
				}
				// A connection of the client, without a socket: the
				// request's path is the state's (Server.lockOp).
				c := newConn(s, nil, uint64(cid))
				c.client = &client{id: cid}
				m := wire.LockOp{LockID: ids[cid]}
				m.Arg = dlock.AtomicState{Owner: cid, Timeout: 30}.State()
				cmds := [...]dlock.Cmd{dlock.CmdExclusiveTrylock, dlock.CmdExclusiveUnlock}
				for pb.Next() {
					for _, cmd := range cmds {
						m.Cmd = uint8(cmd)
						if exclusive {
							one.Lock()
						}
						r, _ := s.lockOp(s.instant(), c, 1, &m, &c.ob)
						if exclusive {
							one.Unlock()
						}
						if r.Status != dlock.Success {
							panic(r.Status)
						}
					}
				}
			})
		})
	}
}
