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
//     safe) but not extend: every hold ends by its holder's unlock, its
//     lease or its client's session. Once the server is ready (not
//     recovering) and holds nothing in slots taken away (DisownedHeld), the
//     source's primary acknowledges the map version in etcd, under its
//     leader key; a primary promoted later reads the map again before
//     serving, so it never serves an older one.
//  3. Target: the map gives it the slots but lists them in
//     ShardMap.Incoming, frozen: by-name requests for them are answered
//     DLOCK_NOT_READY, so nothing in them is opened or granted. Its primary
//     waits for every source's acknowledgement, then raises its token floor
//     above each source's saved token mark (RaiseTokenFloor): the source
//     issued every token of those slots at or below that mark, so tokens per
//     lock only grow across the move. It then waits MoveGrace (a margin for
//     the clocks of the clients, which end their own view of a lease), deletes
//     the move record and serves the slots.
//
// What a move does to holders: a hold taken before the move stays valid
// until its holder unlocks it (the source still answers the unlock), so no
// lock is lost and no two clients hold one lock: the target grants nothing
// in the slots while the source still has a hold there. A hold cannot be
// extended on the source after the move (the extend answers moved); its
// holder opens the lock again through the map, on the target. Waiting for
// a lock in a moving slot answers moved on the source and DLOCK_NOT_READY on
// the target until it serves.

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
