package dlockserver

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/dlock-io/dlock/internal/wire"
)

// Sharded clusters: the server side.
//
// A sharded cluster cuts the lock namespace into NumSlots slots, by a hash
// of the name (SlotOf), and assigns each slot to one shard: a primary and
// its standbys, a highly available cluster of its own. The coordinator
// (package dlockserver/ha) keeps the server's copy of the slot map current
// with SetShardMap. A server with a map:
//
//   - answers TShardMap, even before registration, with the map: clients
//     need no etcd client to learn it;
//   - answers every by-name request (opening a lock or a batch of locks,
//     creating or opening an atomic64 object) for a slot its shard does not
//     own with StatusMoved and the map's version, without executing it.
//
// Requests that name a lock or an object by id need no check: an id is
// only known to a client through this shard, and a slot changes shard only
// through a move (not implemented yet), which is when ids will be checked
// too. Without SetShardMap the server behaves as an unsharded one.

// NumSlots is the number of slots of a sharded cluster.
const NumSlots = wire.NumSlots

// SlotOf returns the slot of a lock or object name. A hash tag — the text
// between the first '{' and the next '}', when not empty — stands for the
// whole name, so that "{orders}/1" and "{orders}/2" share a slot.
func SlotOf(name []byte) int { return wire.Slot(name) }

// Shard is one shard of a ShardMap.
type Shard struct {
	Name string
	// Addrs are its members' advertised addresses, the primary first when
	// one is elected. Clients connect to any of them (a standby redirects
	// to the primary).
	Addrs []string
}

// ShardMap is a versioned slot → shard assignment.
type ShardMap struct {
	// Version increases with every change of the assignment.
	Version uint64
	Shards  []Shard
	// Slots[i] is the index in Shards of slot i's owner, -1 for none. It
	// has NumSlots entries.
	Slots []int
}

// shardRef holds a server's shard state (nil outside a sharded cluster).
type shardRef struct{ atomic.Pointer[shardState] }

// shardState is a server's view of the map (immutable once stored).
type shardState struct {
	self  string
	owned [NumSlots]bool
	wire  wire.ShardMap
}

// SetShardMap makes the server a member of shard self of a sharded
// cluster, with map m: from now on it refuses by-name requests for slots
// that m does not assign to self. It is called by the coordinator before
// the server is promoted, and whenever the map changes.
func (s *Server) SetShardMap(self string, m ShardMap) error {
	if len(m.Slots) != NumSlots {
		return fmt.Errorf("%w: shard map has %d slots, want %d", ErrInvalidConfig, len(m.Slots), NumSlots)
	}
	if len(m.Shards) > wire.MaxShards {
		return fmt.Errorf("%w: %d shards, at most %d", ErrInvalidConfig, len(m.Shards), wire.MaxShards)
	}
	st := &shardState{self: self}
	st.wire.Version = m.Version
	size := 8 + 2 + 2*NumSlots
	for _, sh := range m.Shards {
		if sh.Name == "" || len(sh.Name) > wire.MaxDesc {
			return fmt.Errorf("%w: shard name %q", ErrInvalidConfig, sh.Name)
		}
		var addrs []string
		for _, a := range sh.Addrs {
			if a != "" && len(a) <= wire.MaxDesc {
				addrs = append(addrs, a)
			}
		}
		size += 4 + len(sh.Name)
		for _, a := range addrs {
			size += 2 + len(a)
		}
		st.wire.Shards = append(st.wire.Shards, wire.ShardInfo{Name: sh.Name, Addrs: addrs})
	}
	if size > wire.MaxBody {
		return fmt.Errorf("%w: shard map of %d bytes does not fit a frame", ErrInvalidConfig, size)
	}
	for i, o := range m.Slots {
		switch {
		case o < 0:
			st.wire.Slots[i] = wire.NoShard
		case o < len(m.Shards):
			st.wire.Slots[i] = uint16(o)
			st.owned[i] = m.Shards[o].Name == self
		default:
			return fmt.Errorf("%w: slot %d names shard %d of %d", ErrInvalidConfig, i, o, len(m.Shards))
		}
	}
	s.shard.Store(st)
	return nil
}

// ShardMapVersion returns the version of the server's slot map, 0 without
// one.
func (s *Server) ShardMapVersion() uint64 {
	if st := s.shard.Load(); st != nil {
		return st.wire.Version
	}
	return 0
}

var errNotOwned = errors.New("slot not owned")

// shardGate answers TShardMap and refuses by-name requests for slots the
// server's shard does not own. It reports whether the request may proceed.
// Called without mu.
func (c *conn) shardGate(h *wire.Header, body []byte) bool {
	st := c.s.shard.Load()
	if st == nil {
		return true
	}
	var err error
	switch h.Type() {
	case wire.TShardMap:
		c.outMu.Lock()
		c.out = st.wire.Append(c.out, h.ID())
		c.outMu.Unlock()
		return false
	case wire.TGetLock:
		var m wire.GetLock
		if m.Decode(body) == nil {
			err = st.check(m.Desc)
		}
	case wire.TBatchGetLock:
		var m wire.BatchGetLock
		if m.Decode(body) == nil {
			for i := 0; i < m.N && err == nil; i++ {
				err = st.check(m.Items[i].Desc)
			}
		}
	case wire.TObjCreate, wire.TObjGet:
		var m wire.Object
		if m.Decode(body) == nil {
			err = st.check(m.Desc)
		}
	}
	if err == nil {
		return true // (a malformed body is answered by its handler)
	}
	mv := wire.Moved{Version: st.wire.Version}
	c.outMu.Lock()
	c.out = mv.Append(c.out, h.Type(), h.ID())
	c.outMu.Unlock()
	return false
}

func (st *shardState) check(name []byte) error {
	if !st.owned[wire.Slot(name)] {
		return errNotOwned
	}
	return nil
}
