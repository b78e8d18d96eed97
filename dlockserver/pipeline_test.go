package dlockserver_test

import (
	"testing"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// TestPipelinedBurst: a burst of requests larger than a connection's first
// read buffer (so that the server grows it mid-burst, carrying the
// buffered bytes over) is answered request by request, in order.
func TestPipelinedBurst(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	r := dialRaw(t, srv.Addr)
	id := r.register()
	get := wire.GetLock{Type: uint8(dlock.Atomic), Desc: []byte("burst")}
	r.write(get.Append(nil, 2, id))
	h, body, err := r.read()
	if err != nil || h.Status() != 0 {
		t.Fatalf("get lock: %v %d", err, h.Status())
	}
	var rep wire.GetLockReply
	if err := rep.Decode(body); err != nil {
		t.Fatal(err)
	}
	arg := dlock.AtomicState{Owner: id, Timeout: 30}.State()
	const n = 1000 // 44 KB: several reads, the buffer grown during the first
	var burst []byte
	for i := range n {
		cmd := dlock.CmdExclusiveTrylock
		if i%2 == 1 {
			cmd = dlock.CmdExclusiveUnlock
		}
		m := wire.LockOp{LockID: rep.ID, Cmd: uint8(cmd), Arg: arg}
		burst = m.Append(burst, uint32(100+i), id)
	}
	go r.nc.Write(burst) // the server answers while we still send
	var res wire.LockResult
	var lastToken uint64
	for i := range n {
		h, body, err := r.read()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if h.ID() != uint32(100+i) || h.Status() != 0 {
			t.Fatalf("reply %d: id %d status %d, want id %d success", i, h.ID(), h.Status(), 100+i)
		}
		if err := res.Decode(body); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if res.Token <= lastToken {
				t.Fatalf("reply %d: token %d after %d", i, res.Token, lastToken)
			}
			lastToken = res.Token
		}
	}
}
