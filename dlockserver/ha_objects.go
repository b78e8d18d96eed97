package dlockserver

import (
	"context"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/umo"
	"github.com/dlock-io/dlock/internal/wire"
)

// Durable atomic64 objects (Promotion.DurableObjects).
//
// By default a new primary starts without objects: clients are told their
// objects were lost (dlock.RecoveryReport.LostObjects). With durable
// objects, every change to an object is committed to the cluster's store
// before the client hears of it, and a new primary starts with the objects
// of the store. An object request is applied to the table at once, under
// the server's lock, as always; its reply, instead of being queued on the
// connection, waits in the current batch. One goroutine commits batch after
// batch, each as the latest records of the objects it changed (absolute
// values, so a retried commit is harmless), and then releases the batch's
// replies: requests that arrive while a commit is in flight share the next
// one (group commit). Lock requests never wait for it. Reads (Load) wait
// for the batch they arrived in too, so that no client sees a value that a
// failover could undo.
//
// A commit that cannot be made within the fence (etcd unreachable, the
// leader key gone) makes the server step down without sending the batch's
// replies: their clients see the connection fail and do not know whether
// their request was applied; the next primary has it or not, never twice
// (the client library does not resend an object request).

// ObjectRecord is the durable state of one atomic64 object. Leases are
// kept as the time they had left when the record was made.
type ObjectRecord struct {
	ID        int32
	Desc      string
	Value     uint64
	Owner     int32 // creator's client id, 0 once orphaned
	Destroyed bool
	// LeaseLeft is what remained of the object's lease (the latest
	// deadline given to any client), in seconds.
	LeaseLeft uint32
	// Getters are the clients that have the object open, with the seconds
	// left of each one's lease.
	Getters map[int32]uint32
}

// ObjectStore is what a Coordinator implements to keep objects durable.
type ObjectStore interface {
	// CommitObjects writes put and deletes the records of del, only while
	// this server is the primary of the cluster; an error means they may or
	// may not have been written.
	CommitObjects(ctx context.Context, put []ObjectRecord, del []int32) error
}

// objCommit is the durable-objects state of one primary term. Its fields,
// but quit, are guarded by Server.mu.
type objCommit struct {
	store   ObjectStore
	epoch   uint64
	dirty   map[int32]struct{} // objects changed since the last cut
	replies []objReply         // replies waiting for the next commit
	kick    chan struct{}      // a batch is waiting
	quit    chan struct{}      // closed when the term ends
}

// objReply is a reply held until its batch is committed.
type objReply struct {
	c     *conn
	frame []byte
}

// startObjects starts the committer of a new primary term with the objects
// of the store. Called with mu held, after resetState.
func (s *Server) startObjects(p Promotion) {
	store, ok := s.ha.coord.(ObjectStore)
	if !p.DurableObjects || !ok {
		if p.DurableObjects {
			s.cfg.Logger.Error("durable objects asked for, but the coordinator cannot store them")
		}
		return
	}
	oc := &objCommit{store: store, epoch: p.Epoch, dirty: make(map[int32]struct{}),
		kick: make(chan struct{}, 1), quit: make(chan struct{})}
	s.ha.objs = oc
	now := s.now()
	left := func(d uint32) uint32 {
		if d > ^uint32(0)-now {
			return ^uint32(0)
		}
		return now + d
	}
	gone := make(map[int32]bool)
	loaded := 0
	for _, r := range p.Objects {
		rec := umo.Record{ID: r.ID, Desc: r.Desc, Value: r.Value, Owner: r.Owner, Destroyed: r.Destroyed,
			MaxLease: left(r.LeaseLeft)}
		if len(r.Getters) > 0 {
			rec.Getters = make(map[int32]uint32, len(r.Getters))
			for c, d := range r.Getters {
				rec.Getters[c] = left(d)
			}
		}
		if !s.objs.Import(rec) {
			s.cfg.Logger.Error("durable object not loaded: unusable or duplicate record", "object", r.ID)
			continue
		}
		loaded++
		for c := range r.Getters {
			gone[c] = !s.ha.known[c]
		}
		if r.Owner != 0 {
			gone[r.Owner] = !s.ha.known[r.Owner]
		}
	}
	// Clients that are not registered any more (they left or were removed
	// while the record stayed behind) lose their references now, as the
	// previous primary would have done.
	for c, g := range gone {
		if g {
			s.haObjectsTouched(c)
			s.objs.RemoveClient(now, c)
		}
	}
	s.wg.Add(1)
	go s.commitLoop(oc)
	if len(oc.dirty) > 0 {
		s.kickObjects(oc)
	}
	s.cfg.Logger.Info("primary: durable objects loaded", "objects", loaded)
}

// stopObjects ends the committer of the current term, dropping the replies
// it holds (their connections are being closed). Called with mu held.
func (s *Server) stopObjects() {
	if oc := s.ha.objs; oc != nil {
		close(oc.quit)
		s.ha.objs = nil
	}
}

// objFlags are the InitReply flags about objects. Called with mu held.
func (s *Server) objFlags() uint8 {
	if s.ha != nil && s.ha.objs != nil {
		return wire.InitFlagDurableObjects
	}
	return 0
}

// haObjReply takes the reply to an object request whose change (to object
// id; 0 for none) must be committed first, and reports whether it did:
// false without durable objects, where the caller replies at once. Called
// with mu held, right after the request was applied.
func (s *Server) haObjReply(c *conn, t wire.Type, reqID uint32, rep *wire.ObjReply, st dlock.Status, id int32) bool {
	oc := s.ha.objs
	if oc == nil {
		return false
	}
	if id > 0 && t != wire.TObjLoad {
		oc.dirty[id] = struct{}{}
	}
	oc.replies = append(oc.replies, objReply{c: c, frame: rep.Append(nil, t, reqID, int32(st))})
	s.kickObjects(oc)
	return true
}

// objTouched is the object a lifecycle request of type t may have changed:
// the one its reply names (id), or for a create that failed, the one its
// descriptor names (a repeated create extends the lease). Called with mu
// held, while c.obj still holds the request.
func (c *conn) objTouched(t wire.Type, id int32) int32 {
	if id == 0 && t == wire.TObjCreate && c.s.ha.objs != nil {
		return c.s.objs.IDOf(c.obj.Desc)
	}
	return id
}

// haObjectsTouched marks dirty the objects that removing client changes.
// Called with mu held.
func (s *Server) haObjectsTouched(client int32) {
	if s.ha == nil || s.ha.objs == nil {
		return
	}
	for _, id := range s.objs.Touched(client) {
		s.ha.objs.dirty[id] = struct{}{}
	}
	s.kickObjects(s.ha.objs)
}

func (s *Server) kickObjects(oc *objCommit) {
	select {
	case oc.kick <- struct{}{}:
	default:
	}
}

// commitLoop commits batch after batch until the term ends.
func (s *Server) commitLoop(oc *objCommit) {
	defer s.wg.Done()
	for {
		select {
		case <-oc.kick:
		case <-oc.quit:
			return
		}
		for {
			replies, ok := s.commitBatch(oc)
			if !ok {
				return
			}
			if replies == nil {
				break
			}
			for _, r := range replies {
				r.c.outMu.Lock()
				r.c.out = append(r.c.out, r.frame...)
				r.c.outMu.Unlock()
				r.c.push()
			}
		}
	}
}

// commitBatch cuts the current batch, commits it and returns its replies
// (nil for an empty batch). It reports false when the term ended, or the
// commit failed and the server stepped down.
func (s *Server) commitBatch(oc *objCommit) ([]objReply, bool) {
	s.mu.Lock()
	if s.ha.objs != oc || s.closed {
		s.mu.Unlock()
		return nil, false
	}
	if len(oc.dirty) == 0 && len(oc.replies) == 0 {
		s.mu.Unlock()
		return nil, true
	}
	replies := oc.replies
	oc.replies = nil
	var put []ObjectRecord
	var del []int32
	now := s.now()
	left := func(d uint32) uint32 {
		if d <= now {
			return 0
		}
		return d - now
	}
	for id := range oc.dirty {
		r, ok := s.objs.Export(id)
		if !ok {
			del = append(del, id)
			continue
		}
		rec := ObjectRecord{ID: r.ID, Desc: r.Desc, Value: r.Value, Owner: r.Owner, Destroyed: r.Destroyed,
			LeaseLeft: left(r.MaxLease)}
		if len(r.Getters) > 0 {
			rec.Getters = make(map[int32]uint32, len(r.Getters))
			for c, d := range r.Getters {
				rec.Getters[c] = left(d)
			}
		}
		put = append(put, rec)
	}
	clear(oc.dirty)
	s.mu.Unlock()

	for attempt := 0; ; attempt++ {
		var err error
		if len(put) > 0 || len(del) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = oc.store.CommitObjects(ctx, put, del)
			cancel()
		}
		s.mu.Lock()
		if s.ha.objs != oc || s.closed {
			s.mu.Unlock()
			return nil, false
		}
		if err == nil && !s.ha.fenced() {
			s.mu.Unlock()
			return replies, true
		}
		// Past the fence the replies wait: a resume sends them, a step
		// down drops them. A failed commit is retried (it writes the same
		// records) until the server steps down.
		if s.ha.role != rolePrimary || (s.ha.fenced() && s.ha.pastStepDown()) {
			s.demote("durable objects not committed")
			s.mu.Unlock()
			return nil, false
		}
		s.mu.Unlock()
		if err != nil && attempt%10 == 0 {
			s.cfg.Logger.Warn("durable objects: commit failed, retrying", "err", err)
		}
		s.clk.sleep(20 * time.Millisecond)
	}
}
