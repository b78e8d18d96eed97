package dlockserver

import "time"

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
//     (requests hold the shard gate shared from their check to the end of
//     their handler), and nothing in those slots is granted there again
//     (lock commands and hold queries answer moved, queued grants are
//     withheld). The source's primary then acknowledges the map version in
//     etcd, under its leader key; a primary promoted later reads the map
//     again before serving, so it never serves an older one.
//  3. Target: the map gives it the slots but lists them in
//     ShardMap.Incoming, frozen: by-name requests for them are answered
//     DLOCK_NOT_READY, so nothing in them is opened or granted. Its primary
//     waits for every source's acknowledgement, then raises its token floor
//     above each source's saved token mark (RaiseTokenFloor): the source
//     issued every token of those slots at or below that mark, so tokens per
//     lock only grow across the move. It then waits MoveGrace, the time a
//     holder needs to notice that its lock moved (its next command on the
//     lock answers moved), deletes the move record and serves the slots.
//
// What a move does to holders: a hold on a moved lock is not carried over;
// its holder learns on its next command on the lock (moved) and opens the
// lock again, now on the target. Fencing tokens make a holder that writes
// after the move without noticing harmless to a fenced resource (its token
// is below every token the target issues).

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

// enter holds the shard gate shared for one request and returns its
// release (a no-op outside a sharded cluster).
func (r *shardRef) enter() func() {
	if r.Load() == nil {
		return func() {}
	}
	r.gateMu.RLock()
	return r.gateMu.RUnlock
}
