package dlockserver

import (
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// Moving slots between shards: the server side.
//
// A move hands slots from their source shards to a target shard. The
// coordinator (package dlockserver/ha) runs it; each server only does what
// its own role asks:
//
//  1. The move is one etcd transaction: the new map and a move record for
//     the target. Every member applies the map (SetShardMap).
//  2. Source: the map takes the slots away. From the moment SetShardMap
//     returns, no request checked against the old map is still executing
//     (SetShardMap waits for them: see shardRef), and nothing in those slots is granted there again
//     (lock commands and hold queries answer moved, queued grants are
//     withheld). Holders there may still unlock (letting go is always
//     safe): every hold ends by its holder's hand-over (below) or unlock,
//     its lease or its client's session. Once the server is ready (not
//     recovering) and holds nothing in slots taken away (DisownedHeld), the
//     source's primary acknowledges the map version in etcd, under its
//     leader key; a primary promoted later reads the map again before
//     serving, so it never serves an older one.
//  3. Target: the map gives it the slots but lists them in
//     ShardMap.Incoming, frozen: by-name requests for them are answered
//     DLOCK_NOT_READY, and so are lock commands that could grant a lock
//     of them (frozenGate), so nothing in them is granted. It takes
//     hand-overs (moveUpload). Its primary waits for every source's
//     acknowledgement, then raises its token floor above each source's
//     saved token mark (RaiseTokenFloor): the source issued every token of
//     those slots at or below that mark, so tokens per lock only grow
//     across the move. It then waits MoveGrace (a margin for the clocks of
//     the clients, which end their own view of a lease), deletes the move
//     record and serves the slots.
//
// The hand-over: a client holding a lock of a moving slot uploads the hold
// to the target (TUpdateLocks to a ready server, merged as a recovery
// upload, in the client's name there), checks it there, then unlocks it on
// the source. The hold keeps its token and lease; the target lets its
// holder unlock and extend it while the slot is frozen. No two clients
// hold a lock: the target grants nothing in the slot until the source
// holds nothing there, and the source grants nothing there any more. A
// hand-over that comes after the target serves the slot is refused
// (DLOCK_FAIL): the source let go of that hold (its lease or session
// ended) before it came. The client side is the Router's (router_move.go
// in package dlock); a client that cannot hand over keeps its hold on the
// source until it lets go, and the move waits for it.

// RaiseTokenFloor makes every token the server issues from now on greater
// than mark (a source shard's saved mark, before serving slots moved from
// it). When mark is above the tokens reserved, grants wait for a new
// reservation as they do when a window runs out.
func (s *Server) RaiseTokenFloor(mark uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locks.RaiseTokens(mark)
	if s.ha != nil {
		s.tokenRoom() // starts the reservation at once
	}
}

// MoveGrace is how long a target shard waits, once the sources stopped
// serving moved slots, before it serves them: the session timeout (at
// least a second).
func (s *Server) MoveGrace() time.Duration {
	return max(s.cfg.SessionTimeout, time.Second)
}

// isUnlock reports whether a lock command only lets go.
func isUnlock(cmd uint8) bool {
	return dlock.Cmd(cmd) == dlock.CmdExclusiveUnlock || dlock.Cmd(cmd) == dlock.CmdSharedUnlock
}

// DisownedHeld reports how many locks in slots taken away from this
// server's shard it still has a hold on (a lease that ran out counts as
// none), and whether the answer is final: false while the server is not a
// ready primary (a recovering primary may still be given such holds).
func (s *Server) DisownedHeld() (held int, ready bool) {
	st := s.shard.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != wire.StateReady || (s.ha != nil && (s.ha.role != rolePrimary || s.ha.fenced())) {
		return 0, false
	}
	if st == nil || !st.anyDisowned {
		return 0, true
	}
	now := s.now()
	s.locks.Range(func(_ int32, l *lockcore.Lock) bool {
		if st.disowned[wire.Slot([]byte(l.Descriptor()))] && holdsAt(l, now) {
			held++
		}
		return true
	})
	return held, true
}

// holdsAt reports whether anyone holds l at now (as lockInfo judges it).
func holdsAt(l *lockcore.Lock, now uint32) bool {
	ex, shared := l.Holders(nil)
	if ex == 0 && len(shared) == 0 {
		return false
	}
	switch l.Type() {
	case dlock.Atomic:
		return now <= l.State().Atomic().Timeout
	case dlock.Fair:
		return now <= l.State().Fair().Timeout
	}
	return true
}

// isExtend reports whether a lock command extends a hold.
func isExtend(cmd uint8) bool {
	return dlock.Cmd(cmd) == dlock.CmdExclusiveExtend || dlock.Cmd(cmd) == dlock.CmdSharedExtend
}

// frozenGate answers DLOCK_NOT_READY to a lock command that could grant a
// lock of a slot still moving in: nothing in such a slot is granted until
// the move is over. Holds handed over by their holders (moveUpload) may be
// unlocked and extended meanwhile. Called without mu.
func (c *conn) frozenGate(st *shardState, h *wire.Header, body []byte) bool {
	s := c.s
	acquires := func(id int32, cmd uint8) bool {
		if isUnlock(cmd) || isExtend(cmd) {
			return false
		}
		l := s.locks.Lock(id)
		return l != nil && st.frozen[wire.Slot([]byte(l.Descriptor()))]
	}
	refuse := false
	switch h.Type() {
	case wire.TLockOp:
		var m wire.LockOp
		if m.Decode(body) != nil {
			return true
		}
		s.mu.Lock()
		refuse = acquires(m.LockID, m.Cmd)
		s.mu.Unlock()
	case wire.TBatchLockOp:
		var m wire.BatchLockOp
		if m.Decode(body) != nil {
			return true
		}
		s.mu.Lock()
		for i := 0; i < m.N && !refuse; i++ {
			refuse = acquires(m.Items[i].LockID, m.Items[i].Cmd)
		}
		s.mu.Unlock()
	}
	if refuse {
		c.notReady(h, body)
	}
	return !refuse
}

// moveUpload takes a hand-over (TUpdateLocks from a ready server's
// client): the holds a client had on the source shard of a move in
// progress, uploaded to the target. Every entry must be in a slot moving
// in (frozen); the entries are merged as a recovery upload is, the client
// getting a reference to each lock and, for a hold it reports, the hold.
// The answer is the ids; StatusMoved when a slot is not this shard's;
// DLOCK_FAIL when a slot is served already (the move is over: the holds it
// waited for have ended, so the hold reported is not carried over);
// DLOCK_ERROR outside a sharded cluster. A reported FAIR ticket is not
// carried over (the entry counts as holding nothing). Called with mu held.
func (c *conn) moveUpload(cl *client, h *wire.Header, body []byte) {
	s := c.s
	t := h.Type()
	st := s.shard.Load()
	if st == nil {
		c.reply(t, h.ID(), dlock.ErrGeneric)
		return
	}
	m := &c.rareMsg().upd
	if m.Decode(body) != nil {
		c.reply(t, h.ID(), dlock.ErrInval)
		return
	}
	for i := 0; i < m.N; i++ {
		k := wire.Slot(m.Items[i].Desc)
		switch {
		case !st.owned[k]:
			mv := wire.Moved{Version: st.wire.Version}
			c.outMu.Lock()
			c.out = mv.Append(c.out, t, h.ID())
			c.outMu.Unlock()
			return
		case !st.frozen[k]:
			c.reply(t, h.ID(), dlock.ErrFail)
			return
		}
	}
	c.ids.N = m.N
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		hold := lockcore.Hold(it.Hold)
		if hold != lockcore.HoldExclusive && hold != lockcore.HoldShared {
			hold, it.State, it.Token = lockcore.HoldNone, [16]byte{}, 0
		}
		c.ids.IDs[i] = s.locks.Merge(cl.id, it.Desc, dlock.LockType(it.Type), it.ID, it.Lease,
			dlock.LockState(it.State), hold, it.Token)
	}
	c.outMu.Lock()
	c.out = c.ids.Append(c.out, t.Reply(), h.ID(), 0)
	c.outMu.Unlock()
}

// movedIn runs when SetShardMap returns, prev the map before: once slots
// that were moving in are served, the reports kept to merge their
// hand-overs are dropped, as at the end of a recovery. (Nothing is done
// when st was not stored.) Called with shardMu held.
func (s *Server) movedIn(prev, st *shardState) {
	if prev == nil || !prev.anyFrozen || s.shard.Load() != st {
		return
	}
	for k := range prev.frozen {
		if prev.frozen[k] && !st.frozen[k] {
			s.mu.Lock()
			if s.state == wire.StateReady {
				s.locks.EndRecovery()
			}
			s.mu.Unlock()
			return
		}
	}
}
