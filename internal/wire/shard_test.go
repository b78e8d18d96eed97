package wire

import (
	"bytes"
	"fmt"
	"testing"
)

// TestShardMap: a map round-trips; a truncated body, an index past the
// shards and a trailing byte are refused.
func TestShardMap(t *testing.T) {
	m := ShardMap{Version: 77, Shards: []ShardInfo{{Name: "a", Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, {Name: "b"}}}
	for i := range m.Slots {
		m.Slots[i] = uint16(i % 3)
		if i%3 == 2 {
			m.Slots[i] = NoShard
		}
	}
	f := m.Append(nil, 5)
	var h Header
	body, err := ReadFrame(bytes.NewReader(f), &h, nil)
	if err != nil || h.Type() != TShardMap.Reply() || h.ID() != 5 || h.Status() != 0 {
		t.Fatalf("frame: %v %v", h, err)
	}
	var got ShardMap
	if err := got.Decode(body); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(m) {
		t.Fatalf("got %v", got)
	}
	if got.Decode(body[:len(body)-1]) == nil || got.Decode(append(body[:len(body):len(body)], 0)) == nil {
		t.Fatal("a truncated or padded map decoded")
	}
	bad := append([]byte(nil), body...)
	bad[len(bad)-2] = 9 // shard index 9 of 2
	if got.Decode(bad) == nil {
		t.Fatal("an index past the shards decoded")
	}
}

// TestSlot: a hash tag decides the slot; an empty or unclosed tag does not.
func TestSlot(t *testing.T) {
	if Slot([]byte("{orders}/1")) != Slot([]byte("{orders}/2")) || Slot([]byte("{orders}/1")) != Slot([]byte("orders")) {
		t.Error("names with the same tag are in different slots")
	}
	for _, c := range []struct{ name, key string }{
		{"abc", "abc"}, {"{}x", "{}x"}, {"{x", "{x"}, {"a{b}c{d}", "b"}, {"x{}{y}", "x{}{y}"},
	} {
		if got := string(SlotKey([]byte(c.name))); got != c.key {
			t.Errorf("SlotKey(%q) = %q, want %q", c.name, got, c.key)
		}
	}
	var n [NumSlots]int
	for i := 0; i < 100000; i++ {
		n[Slot([]byte(fmt.Sprintf("lock-%d", i)))]++
	}
	for s, k := range n {
		if k == 0 {
			t.Fatalf("slot %d never used by 100000 names", s)
		}
	}
	var mv Moved
	f := (&Moved{Version: 9}).Append(nil, TGetLock, 3)
	var h Header
	body, _ := ReadFrame(bytes.NewReader(f), &h, nil)
	if h.Status() != StatusMoved || mv.Decode(body) != nil || mv.Version != 9 {
		t.Fatalf("moved: %v %v", h, mv)
	}
}
