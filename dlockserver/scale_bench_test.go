package dlockserver

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/dlock-io/dlock"
)

// BenchmarkStateParallel measures how the server's state scales with
// cores: every goroutine of b.RunParallel is a client taking and releasing
// its own ATOMIC lock through the same path as a request (Server.mu shared,
// the lock's stripe, the state machine, the observations), without the
// network. Run it with -cpu 1,2: ns/op at 1 divided by ns/op at 2 is the
// speed-up. The "one mutex" variant takes Server.mu exclusively for every
// operation, as the server did before its state was striped, for
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
				client := next.Add(1)
				if client > maxWorkers {
					panic("too many workers")
				}
				id := ids[client]
				arg := dlock.AtomicState{Owner: client, Timeout: 30}.State()
				cmds := [...]dlock.Cmd{dlock.CmdExclusiveTrylock, dlock.CmdExclusiveUnlock}
				for pb.Next() {
					for _, cmd := range cmds {
						if exclusive {
							s.mu.Lock()
						} else {
							s.opLock()
						}
						st := s.stripeOf(id)
						st.mu.Lock()
						r := st.exec(s.instant(), client, id, cmd, arg)
						st.mu.Unlock()
						if exclusive {
							s.mu.Unlock()
						} else {
							s.opUnlock()
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
