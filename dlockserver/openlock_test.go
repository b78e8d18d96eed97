package dlockserver_test

import (
	"testing"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/wire"
)

// TestOpenLockOpWire drives TOpenLockOp by hand: refused before
// registration, malformed bodies answered with EINVAL (the connection stays
// usable), the command run only under the predicted id, a failed open
// answered with its status and no body.
func TestOpenLockOpWire(t *testing.T) {
	srv := dlocktest.NewServer(t, nil)
	r := dialRaw(t, srv.Addr)
	req := func(id int32, pred int32, name string, typ dlock.LockType) []byte {
		m := wire.OpenLockOp{
			Op:   wire.LockOp{LockID: pred, Cmd: uint8(dlock.CmdExclusiveTrylock), Arg: dlock.AtomicState{Owner: id, Timeout: 5}.State()},
			Open: wire.GetLock{Preferred: pred, Type: uint8(typ), Desc: []byte(name)},
		}
		return m.Append(nil, 3, id)
	}
	expect := func(what string, typ wire.Type, st dlock.Status, bodyLen int) []byte {
		t.Helper()
		h, body, err := r.read()
		if err != nil || h.Type() != typ || h.Status() != int32(st) || len(body) != bodyLen {
			t.Fatalf("%s: reply type %#x status %d body %d bytes, %v; want %#x, %d, %d bytes", what, h.Type(), h.Status(), len(body), err, typ, st, bodyLen)
		}
		return body
	}
	r.write(req(0, 77, "x", dlock.Atomic))
	expect("before registration", wire.TOpenLockOp.Reply(), dlock.ErrGeneric, 0)
	id := r.register()

	f := req(id, 77, "x", dlock.Atomic)
	short := append([]byte(nil), f[:len(f)-1]...)
	bindLen(short)
	r.write(short)
	expect("short body", wire.TOpenLockOp.Reply(), dlock.ErrInval, 0)

	// Predicted right: the command runs, answered as a TLockOp.
	r.write(req(id, 77, "x", dlock.Atomic))
	body := expect("predicted id", wire.TLockOp.Reply(), dlock.Success, 24)
	var res wire.LockResult
	if err := res.Decode(body); err != nil || dlock.LockState(res.State).Atomic().Owner != id || res.Token == 0 {
		t.Fatalf("lock result %+v, %v", res, err)
	}
	if info, _ := srv.LockInfo(77); info.State.Atomic().Owner != id {
		t.Fatalf("server: lock 77 held by %d, want %d", info.State.Atomic().Owner, id)
	}
	// Predicted wrong: "y" gets another id, and nothing runs on lock 77 or on "y".
	r.write(req(id, 77, "y", dlock.Atomic))
	body = expect("taken id", wire.TOpenLockOp.Reply(), dlock.Success, 12)
	var gr wire.GetLockReply
	if err := gr.Decode(body); err != nil || gr.ID == 77 || gr.ID <= 0 {
		t.Fatalf("not-run reply %+v, %v", gr, err)
	}
	if info, _ := srv.LockInfo(gr.ID); info.State.Atomic().Owner != 0 {
		t.Fatalf("lock %d taken by %d though the command did not run", gr.ID, info.State.Atomic().Owner)
	}
	// A failed open (type mismatch): the open's status, no body, nothing run.
	r.write(req(id, 77, "x", dlock.Fair))
	expect("type mismatch", wire.TOpenLockOp.Reply(), dlock.ErrGeneric, 0)
	r.write(req(id, 5, "", dlock.Atomic))
	expect("empty name", wire.TOpenLockOp.Reply(), dlock.ErrInval, 0)
}

// bindLen rewrites the length field of frame f to its body's length.
func bindLen(f []byte) {
	n := uint32(len(f) - wire.HeaderLen)
	f[8], f[9], f[10], f[11] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
}
