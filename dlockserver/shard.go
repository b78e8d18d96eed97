package dlockserver

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
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
// A slot that a new map takes away from the server's shard is disowned
// until a move gives it back (a later map that lists it as incoming, frozen
// until the other shard let go of it; a map that merely gives it back is
// not enough): besides by-name requests, lock commands
// (single, batched, blocking) and hold queries on the locks of that slot are
// answered StatusMoved, so that the server never grants a lock another shard
// may now grant. (Unlocks, releases and give-ups still run: they only let
// go.) Until
// then, requests by id need no check: an id is only known to a client
// through this shard. Without SetShardMap the server behaves as an
// unsharded one.

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
	// Incoming lists slots moving to this server's shard that it must not
	// serve yet (see shard_move.go): by-name requests for them are
	// answered DLOCK_NOT_READY.
	Incoming []int
}

// shardRef holds a server's shard state (nil outside a sharded cluster).
//
// The gate costs a request no write to memory shared between connections:
// the state is an immutable snapshot behind an atomic pointer, which
// requests only read, and each connection publishes, in its own gated
// pointer, the snapshot its current request was checked against, from the
// check to the end of the handler. SetShardMap stores the new snapshot,
// then waits until no connection's gated pointer holds an older one. The
// request side publishes before it checks that the snapshot is still
// current (enterShard), and the map side stores before it scans: with
// sequentially consistent atomics, either the request's second load sees
// the new snapshot (it uses that one), or SetShardMap's scan sees the
// request's old one published (it waits for the request to end). So once
// SetShardMap returns, no request checked against an older map is still
// executing, exactly as when requests held a shared lock. A connection
// accepted after the scan began loads the new map for each of its requests;
// one closed to make room (evicted: no longer among the server's
// connections) never registers, so its requests open and grant nothing.
type shardRef struct {
	atomic.Pointer[shardState]
	shardMu sync.Mutex // serialises SetShardMap
}

// shardState is a server's view of the map (immutable once stored).
type shardState struct {
	self  string
	owned [NumSlots]bool // owned and never disowned
	// disowned marks slots an earlier map gave this shard and a later one
	// took away; anyDisowned says whether there is one (requests by id are
	// checked only then).
	disowned    [NumSlots]bool
	anyDisowned bool
	// frozen marks owned slots still moving in: not served yet.
	frozen [NumSlots]bool
	wire   wire.ShardMap

	anyFrozen bool // a slot is frozen (shard_move.go)
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
	for _, k := range m.Incoming {
		if k < 0 || k >= NumSlots {
			return fmt.Errorf("%w: incoming slot %d", ErrInvalidConfig, k)
		}
		st.frozen[k] = true
		st.anyFrozen = true
	}
	s.shard.shardMu.Lock()
	defer s.shard.shardMu.Unlock()
	defer s.movedIn(s.shard.Load(), st) // (shard_move.go)
	if prev := s.shard.Load(); prev != nil {
		if prev.self != self {
			return fmt.Errorf("%w: shard %q, was %q", ErrInvalidConfig, self, prev.self)
		}
		for i := range st.disowned {
			// A slot given back is owned again only when it comes back
			// through a move, frozen until the shard that had it since let
			// go of it (shard_move.go); given back otherwise, it stays
			// refused.
			back := st.owned[i] && st.frozen[i]
			st.disowned[i] = prev.disowned[i] && !back || prev.owned[i] && !st.owned[i]
			if st.disowned[i] {
				st.owned[i] = false
				st.anyDisowned = true
			}
		}
		if st.anyDisowned && !prev.anyDisowned {
			s.cfg.Logger.Warn("shard: slots taken away from this shard; their locks are refused from now on",
				"shard", self, "map_version", m.Version)
		}
	}
	s.shard.Store(st)
	s.quiesceShard(st)
	return nil
}

// quiesceShard waits until no request checked against a map older than st
// is executing (see shardRef). Called with shardMu held, without mu.
func (s *Server) quiesceShard(st *shardState) {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		// A handler runs for microseconds, or as long as the etcd commit
		// of a durable object: back off up to a millisecond.
		for d := time.Microsecond; ; d = min(2*d, time.Millisecond) {
			if g := c.gated.Load(); g == nil || g == st {
				break
			}
			s.clk.sleep(d)
		}
	}
}

// enterShard publishes, for the request about to be handled, the map it
// is checked against, and returns it (nil outside a sharded cluster, at no
// cost). The request's handler must end with leaveShard.
func (c *conn) enterShard() *shardState {
	st := c.s.shard.Load()
	if st == nil {
		return nil
	}
	for {
		c.gated.Store(st)
		cur := c.s.shard.Load()
		if cur == st {
			return st
		}
		st = cur // a new map meanwhile: check against it
	}
}

// leaveShard ends what enterShard began.
func (c *conn) leaveShard(st *shardState) {
	c.decoded = 0
	if st != nil {
		c.gated.Store(nil)
	}
}

// predecoded reports whether the shard gate decoded the body of the
// request of type t into the connection's reused struct for it already.
func (c *conn) predecoded(t wire.Type) bool { return c.decoded == t }

// ShardMapVersion returns the version of the server's slot map, 0 without
// one.
func (s *Server) ShardMapVersion() uint64 {
	if st := s.shard.Load(); st != nil {
		return st.wire.Version
	}
	return 0
}

var (
	errNotOwned = errors.New("slot not owned")
	errFrozen   = errors.New("slot moving in")
)

// shardGate answers TShardMap and refuses by-name requests for slots the
// server's shard does not own, by map st. It reports whether the request
// may proceed. A by-name body it decodes is decoded into the connection's
// reused struct that the handler uses, and marked so (predecoded): the
// handler does not decode it again. Called without mu.
func (c *conn) shardGate(st *shardState, h *wire.Header, body []byte) bool {
	var err error
	switch t := h.Type(); t {
	case wire.TShardMap:
		c.outMu.Lock()
		c.out = st.wire.Append(c.out, h.ID())
		c.outMu.Unlock()
		return false
	case wire.TGetLock:
		if m := &c.get; m.Decode(body) == nil {
			c.decoded = t
			err = st.check(m.Desc)
		}
	case wire.TOpenLockOp:
		if m := &c.olo; m.Decode(body) == nil {
			c.decoded = t
			err = st.check(m.Open.Desc)
		}
	case wire.TBatchGetLock:
		if m := &c.rareMsg().bget; m.Decode(body) == nil {
			c.decoded = t
			for i := 0; i < m.N && err == nil; i++ {
				err = st.check(m.Items[i].Desc)
			}
		}
	case wire.TObjCreate, wire.TObjGet:
		if m := &c.obj; m.Decode(body) == nil {
			c.decoded = t
			err = st.check(m.Desc)
		}
	}
	if st.anyFrozen && err == nil && !c.frozenGate(st, h, body) {
		return false
	}
	if st.anyDisowned && err == nil {
		return c.disownedGate(st, h, body)
	}
	if err == nil {
		return true // (a malformed body is answered by its handler)
	}
	if err == errFrozen {
		c.notReady(h, body)
		return false
	}
	mv := wire.Moved{Version: st.wire.Version}
	c.outMu.Lock()
	c.out = mv.Append(c.out, h.Type(), h.ID())
	c.outMu.Unlock()
	return false
}

func (st *shardState) check(name []byte) error {
	k := wire.Slot(name)
	if !st.owned[k] {
		return errNotOwned
	}
	if st.frozen[k] {
		return errFrozen
	}
	return nil
}

// disownedGate refuses lock commands and hold queries on locks of slots
// taken away from this shard: their locks must not be granted here again.
// It answers in the shape the request type expects, with status moved.
// Called without mu.
func (c *conn) disownedGate(st *shardState, h *wire.Header, body []byte) bool {
	s := c.s
	moved := func(id int32) bool {
		l := s.locks.Lock(id)
		return l != nil && st.disowned[wire.Slot([]byte(l.Descriptor()))]
	}
	switch h.Type() {
	case wire.TLockOp:
		var m wire.LockOp
		if m.Decode(body) != nil {
			return true
		}
		if isUnlock(m.Cmd) {
			return true // letting go is always allowed
		}
		s.mu.Lock()
		refuse := moved(m.LockID)
		s.mu.Unlock()
		if !refuse {
			return true
		}
		var r wire.LockResult
		c.outMu.Lock()
		c.out = r.Append(c.out, h.ID(), wire.StatusMoved)
		c.outMu.Unlock()
		return false
	case wire.TBatchLockOp:
		var m wire.BatchLockOp
		if m.Decode(body) != nil {
			return true
		}
		refuse := false
		s.mu.Lock()
		for i := 0; i < m.N && !refuse; i++ {
			refuse = !isUnlock(m.Items[i].Cmd) && moved(m.Items[i].LockID)
		}
		s.mu.Unlock()
		if !refuse {
			return true
		}
		// The whole batch: a client splits batches by the current map, so
		// only a client with an old map sends such a batch.
		var r wire.BatchLockResult
		r.N = m.N
		for i := 0; i < m.N; i++ {
			r.Items[i] = wire.LockResult{Status: wire.StatusMoved}
		}
		c.outMu.Lock()
		c.out = r.Append(c.out, h.ID(), 0)
		c.outMu.Unlock()
		return false
	case wire.TLockQuery:
		var m wire.ID
		if m.Decode(body) != nil {
			return true
		}
		s.mu.Lock()
		refuse := moved(m.ID)
		s.mu.Unlock()
		if !refuse {
			return true
		}
		c.outMu.Lock()
		c.out = wire.AppendFrame(c.out, h.Type().Reply(), h.ID(), wire.StatusMoved, nil)
		c.outMu.Unlock()
		return false
	}
	return true
}

// shardWithhold turns a pushed grant of a lock in a disowned slot into a
// moved answer: such a lock is never granted here again, also not to a
// request that was queued before (the lock table keeps the grant, but no
// request on that lock is executed any more). Called with mu held.
func (s *Server) shardWithhold(id int32, r *lockcore.Reply) {
	st := s.shard.Load()
	if st == nil || !st.anyDisowned {
		return
	}
	if l := s.locks.Lock(id); l != nil && st.disowned[wire.Slot([]byte(l.Descriptor()))] {
		*r = lockcore.Reply{Status: dlock.Status(wire.StatusMoved)}
	}
}
