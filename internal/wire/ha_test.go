package wire

import (
	"bytes"
	"testing"
)

// TestInitReplyEpoch: the epoch travels only when set (16-byte body), an
// 8-byte body decodes as epoch 0, and a 16-byte body with epoch 0 is
// malformed.
func TestInitReplyEpoch(t *testing.T) {
	for _, m := range []InitReply{{ClientID: 7, ServerState: StateReady, Version: Version},
		{ClientID: 7, ServerState: StateWaitClientReinit, Version: Version, Epoch: 0x0102030405060708},
		{ClientID: 7, ServerState: StateWaitClientReinit, Version: Version, Flags: InitFlagDurableObjects, Epoch: 9}} {
		f := m.Append(nil, TInit, 1, 0)
		var h Header
		body, err := ReadFrame(bytes.NewReader(f), &h, nil)
		if err != nil {
			t.Fatal(err)
		}
		want := 8
		if m.Epoch != 0 {
			want = 16
		}
		if len(body) != want {
			t.Fatalf("epoch %d: body %d bytes, want %d", m.Epoch, len(body), want)
		}
		var got InitReply
		got.Epoch = 99
		if err := got.Decode(body); err != nil || got != m {
			t.Fatalf("decoded %+v (%v), want %+v", got, err, m)
		}
	}
	var m InitReply
	if err := m.Decode(make([]byte, 16)); err == nil {
		t.Error("a 16-byte reply with epoch 0 decoded")
	}
	if err := m.Decode(make([]byte, 12)); err == nil {
		t.Error("a 12-byte reply decoded")
	}
}

// TestRedirect: the status and the address round-trip; an empty body means
// no primary known; a bad length is malformed.
func TestRedirect(t *testing.T) {
	for _, addr := range []string{"10.0.0.5:21616", ""} {
		f := (&Redirect{Addr: addr}).Append(nil, TLockOp, 9)
		var h Header
		body, err := ReadFrame(bytes.NewReader(f), &h, nil)
		if err != nil {
			t.Fatal(err)
		}
		if h.Status() != StatusRedirect || h.Type() != TLockOp.Reply() || h.ID() != 9 {
			t.Fatalf("header: status %#x type %#x id %d", h.Status(), h.Type(), h.ID())
		}
		var r Redirect
		if err := r.Decode(body); err != nil || r.Addr != addr {
			t.Fatalf("decoded %q (%v), want %q", r.Addr, err, addr)
		}
	}
	var r Redirect
	if err := r.Decode([]byte{5, 0, 'a'}); err == nil {
		t.Error("a truncated address decoded")
	}
	if err := r.Decode([]byte{0, 0}); err == nil {
		t.Error("a zero-length address decoded")
	}
}
