package wire

import (
	"bytes"
	"testing"
)

// TestOpenLockOpNotRunReply: the reply to a TOpenLockOp whose command did
// not run is a GetLockReply under the TOpenLockOp reply type (0xA7), and
// the body is TGetLock's. (Not in the kinds table: the fuzz corpus would
// spell its type byte as a section sign, which the docs test refuses.)
func TestOpenLockOpNotRunReply(t *testing.T) {
	m := GetLockReply{ID: 0x1234, Lease: 7, Type: 1}
	b := m.AppendType(nil, TOpenLockOp.Reply(), 9, 0)
	var h Header
	copy(h[:], b)
	if h.Type() != 0xA7 || h.ID() != 9 || h.Status() != 0 || int(h.Len()) != len(b)-HeaderLen {
		t.Fatalf("header % x", b[:HeaderLen])
	}
	if g := m.Append(nil, 9, 0); !bytes.Equal(g[HeaderLen:], b[HeaderLen:]) {
		t.Fatalf("body differs from TGetLock's: % x vs % x", b[HeaderLen:], g[HeaderLen:])
	}
	var d GetLockReply
	if err := d.Decode(b[HeaderLen:]); err != nil || d != m {
		t.Fatalf("decoded %+v, %v", d, err)
	}
}
