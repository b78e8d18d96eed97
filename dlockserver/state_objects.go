package dlockserver

import (
	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/wire"
)

// The requests on atomic64 objects, as transitions of the server's state.
// They hold a stripe and objMu (state.go), never the whole server. Each
// writes its reply to rep and returns its status, and whether the reply is
// deferred: with durable objects in a cluster, the cluster code queues it
// once the change is committed (haObjReply).

// objOp runs fetch-and-add, compare-and-swap or load (t) on object m.ID:
// the object hot path. Like upstream's one-sided atomics these work during
// recovery.
func (s *serverState) objOp(c *conn, t wire.Type, reqID uint32, m *wire.ObjOp, rep *wire.ObjReply) (st dlock.Status, deferred bool) {
	*rep = wire.ObjReply{ID: m.ID}
	sp := s.stripeOf(m.ID)
	s.opLock(sp)
	s.objMu.Lock()
	switch t {
	case wire.TObjLoad:
		rep.Value, st = s.objs.Load(m.ID)
		sp.obs.ops[OpLoad][statusSlot(st)]++
	case wire.TObjFAA:
		rep.Value, st = s.objs.FetchAndAdd(m.ID, m.A)
		sp.obs.ops[OpFetchAndAdd][statusSlot(st)]++
	default:
		st = s.objs.CompareAndSwap(m.ID, m.A, m.B)
		sp.obs.ops[OpCompareAndSwap][statusSlot(st)]++
	}
	// With durable objects the reply waits for the change to be committed
	// (in a cluster opLock holds g, which serialises that bookkeeping).
	deferred = s.srv.ha != nil && s.srv.haObjReply(c, t, reqID, rep, st, rep.ID)
	s.objMu.Unlock()
	s.opUnlock(sp)
	return st, deferred
}

// objLifecycle creates or gets (t; obj) or releases or destroys (t; id) an
// object for c's client at at. obj or id is nil when the request did not
// decode. These hold one stripe (which keeps the server-wide state still)
// and objMu.
func (s *serverState) objLifecycle(at instant, c *conn, t wire.Type, reqID uint32, obj *wire.Object, id *wire.ID, rep *wire.ObjReply) (st dlock.Status, how objAnswer) {
	*rep = wire.ObjReply{}
	home := s.stripeOf(int32(c.seq))
	s.opLock(home)
	defer s.opUnlock(home)
	s.objMu.Lock()
	defer s.objMu.Unlock()
	if st := s.opGate(c); st != dlock.Success {
		return st, objStatus
	}
	client, now := c.client.id, at.sec
	switch t {
	case wire.TObjCreate, wire.TObjGet:
		if obj == nil {
			return dlock.ErrInval, objStatus
		}
		if t == wire.TObjCreate {
			rep.ID, st = s.objs.Create(now, client, obj.Desc, obj.Preferred, obj.Lease, obj.Init)
		} else {
			rep.ID, st = s.objs.Get(now, client, obj.Desc, obj.Lease)
		}
	default:
		if id == nil {
			return dlock.ErrInval, objStatus
		}
		rep.ID = id.ID
		if t == wire.TObjRelease {
			st = s.objs.Release(now, client, id.ID)
		} else {
			st = s.objs.Destroy(now, client, id.ID)
		}
	}
	if s.srv.ha != nil && s.srv.haObjReply(c, t, reqID, rep, st, c.objTouched(t, rep.ID)) {
		return st, objDeferred
	}
	return st, objWithReply
}

// How an object request is answered.
type objAnswer uint8

const (
	objStatus    objAnswer = iota // with the status alone
	objWithReply                  // with the reply and the status
	objDeferred                   // later, by the cluster code
)
