package wire

import "hash/crc32"

// Sharded clusters: the lock namespace is cut into NumSlots slots by a hash
// of the name, and each slot is assigned to one shard (a primary and its
// standbys). A server answers a by-name request for a slot its shard does
// not own with StatusMoved; any member answers TShardMap with the map.

// NumSlots is the number of slots of a sharded cluster.
const NumSlots = 1024

// NoShard marks a slot no shard owns in ShardMap.Slots.
const NoShard = 0xFFFF

// MaxShards bounds the shards of one map.
const MaxShards = 256

// TShardMap asks a member of a sharded cluster for its slot map. It may be
// sent before registration; its body is empty and its reply body a
// ShardMap. A server outside a sharded cluster answers it as an unknown
// type.
const TShardMap Type = 0x60

// StatusMoved is the reply status of a by-name request (TGetLock,
// TBatchGetLock, TObjCreate, TObjGet) for a slot the server's shard does
// not own. The body is the server's map version (u64): a client whose map
// is older fetches the map (TShardMap) and retries at the owner.
const StatusMoved int32 = 0x2011

// SlotKey returns the part of name that is hashed: the text between the
// first '{' and the next '}' when it is not empty (a hash tag: names with
// the same tag land in the same slot), else the whole name.
func SlotKey(name []byte) []byte {
	for i, b := range name {
		if b != '{' {
			continue
		}
		for j := i + 1; j < len(name); j++ {
			if name[j] == '}' {
				if j > i+1 {
					return name[i+1 : j]
				}
				return name
			}
		}
		return name
	}
	return name
}

// Slot returns the slot of a lock or object name: CRC-32 (IEEE) of its
// SlotKey, modulo NumSlots.
func Slot(name []byte) int {
	return int(crc32.ChecksumIEEE(SlotKey(name)) % NumSlots)
}

// ShardInfo is one shard of a map: its name and the addresses of its
// members, the primary first when one is elected.
type ShardInfo struct {
	Name  string
	Addrs []string
}

// ShardMap is the body of a TShardMap reply:
//
//	u64 version | u16 N | N × (desc name | u16 M | M × desc addr) | NumSlots × u16 shard index
//
// where desc is a u16 length and that many bytes, and a shard index is
// NoShard for a slot without owner.
type ShardMap struct {
	Version uint64
	Shards  []ShardInfo
	Slots   [NumSlots]uint16
}

// Append appends a TShardMap reply frame.
func (m *ShardMap) Append(dst []byte, id uint32) []byte {
	start := len(dst)
	dst = appendHeader(dst, TShardMap.Reply(), id, 0)
	dst = le.AppendUint64(dst, m.Version)
	dst = le.AppendUint16(dst, uint16(len(m.Shards)))
	for _, s := range m.Shards {
		dst = appendDesc(dst, []byte(s.Name))
		dst = le.AppendUint16(dst, uint16(len(s.Addrs)))
		for _, a := range s.Addrs {
			dst = appendDesc(dst, []byte(a))
		}
	}
	for _, s := range m.Slots {
		dst = le.AppendUint16(dst, s)
	}
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *ShardMap) Decode(b []byte) error {
	r := reader{b: b}
	m.Version = r.u64()
	n := int(r.u16())
	if n > MaxShards {
		return ErrMalformed
	}
	m.Shards = make([]ShardInfo, 0, n)
	for i := 0; i < n && !r.bad; i++ {
		s := ShardInfo{Name: string(r.desc())}
		k := int(r.u16())
		for j := 0; j < k && !r.bad; j++ {
			s.Addrs = append(s.Addrs, string(r.desc()))
		}
		m.Shards = append(m.Shards, s)
	}
	for i := range m.Slots {
		m.Slots[i] = r.u16()
		if m.Slots[i] != NoShard && int(m.Slots[i]) >= n {
			r.bad = true
		}
	}
	return r.done()
}

// Moved is the body of a StatusMoved reply.
type Moved struct {
	Version uint64
}

// Append appends a StatusMoved reply to a request of type t.
func (m *Moved) Append(dst []byte, t Type, id uint32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t.Reply(), id, StatusMoved)
	dst = le.AppendUint64(dst, m.Version)
	return finish(dst, start)
}

// Decode fills m from a body.
func (m *Moved) Decode(b []byte) error {
	r := reader{b: b}
	m.Version = r.u64()
	return r.done()
}
