package dlockserver

import (
	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// The transitions of clients and of the server's mode, on the state: a
// client registers or comes back (recovery), heartbeats, uploads its locks,
// leaves; its connection closes; the recovery deadline passes. Each holds
// the whole server (Server.mu) and returns what to send, like the requests
// on locks (state_locks.go).

// register registers a new client on connection c (TInit). It returns
// the reply and whether to keep the connection; rep is set when the status
// is Success. Making room for it may remove an abnormal client, whose
// holds then go to whoever waits (out).
func (s *serverState) register(at instant, c *conn, out *outbox) (rep wire.InitReply, st dlock.Status, keep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.evicted {
		return rep, dlock.ErrGeneric, false // see reregister
	}
	if c.client != nil {
		return rep, dlock.ErrGeneric, true
	}
	if s.state != wire.StateReady {
		return rep, dlock.ErrNotReady, false
	}
	if len(s.clients) >= s.srv.cfg.MaxClients && !s.evictOne(at, out) {
		return rep, dlock.ErrServerNoResource, false
	}
	srv := s.srv
	cl := &client{id: srv.newClientID(), conn: c, identity: c.peerID, hasIdentity: c.hasPeer}
	s.clients[cl.id] = cl
	c.client = cl
	if srv.ha != nil {
		// Recorded in the cluster before the client learns its id, so
		// that a next primary waits for it.
		epoch := srv.ha.epoch
		err := srv.haRegister(cl.id)
		if err != nil || srv.ha.epoch != epoch || s.clients[cl.id] != cl || !srv.haServing() {
			if s.clients[cl.id] == cl {
				delete(s.clients, cl.id)
			}
			c.client = nil
			srv.cfg.Logger.Warn("registration not recorded in the cluster", "client", cl.id, "err", err)
			return rep, dlock.ErrNotReady, false
		}
		srv.ha.known[cl.id] = true
	}
	cl.addr = c.remote()
	if srv.debugOn() {
		srv.cfg.Logger.Debug("client registered", "client", cl.id, "remote", c.remote())
	}
	rep = wire.InitReply{ClientID: cl.id, ServerState: s.state, Version: wire.Version, Flags: srv.objFlags(), Epoch: srv.haEpoch()}
	return rep, dlock.Success, true
}

// reregister lets client id come back on connection c (TReinit): after its
// connection dropped, or to a new primary that recovers the state from its
// clients. Its old connection, if any, goes to out to be closed, and its
// queued requests there are dropped. It returns what register returns.
func (s *serverState) reregister(at instant, c *conn, id int32, out *outbox) (rep wire.InitReply, st dlock.Status, keep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := s.srv
	if c.evicted {
		// Closed to make room, with frames still buffered: it never
		// becomes a client (a slot map change waits only for the
		// requests of the server's connections: shard.go).
		return rep, dlock.ErrGeneric, false
	}
	if id <= 0 || (c.client != nil && c.client.id != id) {
		return rep, dlock.ErrGeneric, true
	}
	cl := s.clients[id]
	if cl != nil && cl.hasIdentity && (!c.hasPeer || c.peerID != cl.identity) {
		// Another certificate claims this id: impersonation. The holder's
		// connection, if any, is left alone.
		s.stats.Inc(dlock.StatClientIDVerifyFail)
		srv.cfg.Logger.Warn("refusing reinit: the client certificate differs from the one that registered the id", "client", id, "remote", c.raw.RemoteAddr())
		return rep, dlock.ErrGeneric, false
	}
	if cl != nil {
		// A client that registers again — also during recovery, after its
		// connection dropped mid-upload — replaces its old connection; its
		// new upload merges idempotently with what it uploaded before. If
		// it had finished recovering, the server waits for it again.
		if s.state != wire.StateReady && cl.finished {
			cl.finished = false
			s.recovery++
		}
		if old := cl.conn; old != nil && old != c {
			old.client = nil
			s.dropConnWaiters(at, old, out)
			out.closeConn(old)
		}
	} else {
		if s.state == wire.StateReady || (srv.ha != nil && !srv.ha.known[id]) {
			// In a cluster, only the registered clients may come back.
			return rep, dlock.ErrClientRemovedByServer, true
		}
		if len(s.clients) >= srv.cfg.MaxClients {
			return rep, dlock.ErrServerNoResource, true
		}
		cl = &client{id: id, identity: c.peerID, hasIdentity: c.hasPeer}
		s.clients[id] = cl
	}
	cl.conn = c
	cl.reinit = true
	c.client = cl
	cl.addr = c.remote()
	if srv.debugOn() {
		srv.cfg.Logger.Debug("client re-registered", "client", id, "remote", c.remote())
	}
	rep = wire.InitReply{ClientID: id, ServerState: s.state, Version: wire.Version, Flags: srv.objFlags(), Epoch: srv.haEpoch()}
	return rep, dlock.Success, true
}

// evictOne removes the abnormal client with the smallest id and reports
// whether there was one. Called with mu held.
func (s *serverState) evictOne(at instant, out *outbox) bool {
	var victim *client
	for _, cl := range s.clients {
		if cl.conn == nil && (victim == nil || cl.id < victim.id) {
			victim = cl
		}
	}
	if victim == nil {
		return false
	}
	s.srv.cfg.Logger.Info("evicting abnormal client to make room", "client", victim.id, "remote", victim.addr)
	s.removeClient(at, victim, out)
	s.srv.haDeregister(victim.id, false)
	return true
}

// clientOf returns the id of the client registered on c, if any. It holds
// one stripe, which is enough to read the server-wide state.
func (s *serverState) clientOf(c *conn) (int32, bool) {
	home := s.stripeOf(int32(c.seq)) // any stripe will do: mu holds them all
	s.opLock(home)
	defer s.opUnlock(home)
	if c.client == nil {
		return 0, false
	}
	return c.client.id, true
}

// clientGate answers a request of connection c that needs a registered
// client (ErrGeneric without) and, when ready is set, a server that is not
// recovering (ErrNotReady). Called with mu held.
func (s *serverState) clientGate(c *conn, ready bool) dlock.Status {
	if c.client == nil {
		return dlock.ErrGeneric
	}
	if ready && s.state != wire.StateReady {
		return dlock.ErrNotReady
	}
	return dlock.Success
}

// heartbeat answers THeartbeat.
func (s *serverState) heartbeat(c *conn) dlock.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clientGate(c, true)
}

// deregister removes the client of c (TDeinit) with everything it holds;
// the grants that lets through go to out. keep says whether the connection
// stays.
func (s *serverState) deregister(at instant, c *conn, out *outbox) (st dlock.Status, keep bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.clientGate(c, true); st != dlock.Success {
		return st, st == dlock.ErrGeneric
	}
	cl := c.client
	s.removeClient(at, cl, out)
	s.srv.haDeregister(cl.id, true)
	if s.srv.debugOn() {
		s.srv.cfg.Logger.Debug("client deregistered", "client", cl.id, "remote", c.remote())
	}
	return dlock.Success, false
}

// reinitDone records that the client of c finished re-registering
// (TReinitDone); during recovery, the last one to finish makes the server
// ready.
func (s *serverState) reinitDone(c *conn) dlock.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	cl := c.client
	if cl == nil || !cl.reinit {
		return dlock.ErrGeneric
	}
	cl.reinit = false
	if s.state == wire.StateWaitClientReinit && s.srv.ha != nil {
		s.srv.haReinitDone(cl.id)
	} else if s.state == wire.StateWaitClientReinit && !cl.finished {
		cl.finished = true
		s.recovery--
		if s.recovery <= 0 {
			s.becomeReady()
		}
	}
	return dlock.Success
}

// lockQuery answers TLockQuery (see holds); m is nil when the request did
// not decode.
func (s *serverState) lockQuery(at instant, c *conn, m *wire.ID) dlock.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.clientGate(c, true); st != dlock.Success {
		return st
	}
	if m == nil {
		return dlock.ErrInval
	}
	return s.holds(at, c.client.id, m.ID)
}

// statsFor returns the debug counters (TStats).
func (s *serverState) statsFor(c *conn) (dlock.Stats, dlock.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.clientGate(c, true); st != dlock.Success {
		return dlock.Stats{}, st
	}
	return s.statsLocked(), dlock.Success
}

// resetStatsFor zeroes the debug counters (TResetStats).
func (s *serverState) resetStatsFor(c *conn) dlock.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.clientGate(c, true); st != dlock.Success {
		return st
	}
	s.resetStatsLocked()
	return dlock.Success
}

// moveUploadWhenReady hands a TUpdateLocks of a ready server, which
// uploads holds in slots moving to this shard, to the slot move code
// (moveUpload, shard_move.go), which answers it. It returns false when c
// has no client or the server is recovering (see updateLocks).
func (s *serverState) moveUploadWhenReady(c *conn, h *wire.Header, body []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.client == nil || s.state != wire.StateReady {
		return false
	}
	c.moveUpload(c.client, h, body)
	return true
}

// updateLocks merges the recovery upload m of c's client (TUpdateLocks) and
// writes the ids the locks have here to ids. Only a client re-registering
// during recovery uploads; m is nil when the request did not decode.
func (s *serverState) updateLocks(c *conn, m *wire.UpdateLocks, ids *wire.IDs) dlock.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	cl := c.client
	if cl == nil || s.state == wire.StateReady || !cl.reinit {
		return dlock.ErrGeneric
	}
	if m == nil {
		return dlock.ErrInval
	}
	ids.N = m.N
	for i := 0; i < m.N; i++ {
		it := &m.Items[i]
		ids.IDs[i] = s.locks.Merge(cl.id, it.Desc, dlock.LockType(it.Type), it.ID, it.Lease,
			dlock.LockState(it.State), lockcore.Hold(it.Hold), it.Token)
	}
	cl.uploaded = true
	return dlock.Success
}

// becomeReady ends recovery. Called with mu held.
func (s *serverState) becomeReady() {
	s.state = wire.StateReady
	s.recovery = 0
	s.locks.EndRecovery()
	s.srv.cfg.Logger.Info("recovery complete: server ready", "clients", len(s.clients), "locks", s.locks.Len())
}

// recoveryDeadline ends recovery with the clients that came back. Called
// with mu held.
func (s *serverState) recoveryDeadline() {
	if s.state == wire.StateReady {
		return
	}
	var unfinished []int32
	for id, cl := range s.clients {
		if cl.reinit {
			unfinished = append(unfinished, id)
		}
	}
	s.srv.cfg.Logger.Warn("recovery deadline passed: becoming ready with the clients that returned",
		"expected", s.srv.cfg.RecoveryClients, "missing", s.recovery, "returned", len(s.clients),
		"unfinished_clients", unfinished)
	s.becomeReady()
}

// connLost forgets connection c, which closed: its queued requests are
// dropped (their grants would reach nobody; what that lets through goes to
// out), and its client, if c was its connection, becomes abnormal. It
// returns that client, or nil. Called with mu held.
func (s *serverState) connLost(at instant, c *conn, out *outbox) *client {
	s.dropConnWaiters(at, c, out)
	cl := c.client
	if cl == nil || cl.conn != c {
		return nil
	}
	s.stats.Inc(dlock.StatClientDisconnect)
	cl.conn = nil
	cl.lostGen++
	return cl
}
