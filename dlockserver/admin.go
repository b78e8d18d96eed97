package dlockserver

import (
	"cmp"
	"crypto/tls"
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/lockcore"
	"github.com/dlock-io/dlock/internal/wire"
)

// Admin requests: lock listing, top contended locks, force-release. Their
// bodies are JSON (PROTOCOL.md, "Administration"); they hold the server's
// mutex while they read the lock table, for a time that grows with the
// number of locks.

const (
	maxListPage    = 256 // locks per page of a listing
	maxListWaiters = 100 // waiters listed per lock
	defaultTop     = 10
	maxTop         = 100
)

// admin handles TAdminLocks, TAdminTop and TAdminRelease.
func (c *conn) admin(h *wire.Header, body []byte) bool {
	s := c.s
	t := h.Type()
	if !s.adminAllowed(c) {
		s.mu.Lock()
		id := c.client.id
		s.mu.Unlock()
		s.cfg.Logger.Warn("refusing an admin request: the client certificate is not an administrator's",
			"client", id, "remote", c.remote(), "type", t)
		c.reply(t, h.ID(), dlock.ErrGeneric)
		return true
	}
	var rep any
	var st dlock.Status
	switch t {
	case wire.TAdminLocks:
		var req struct {
			Prefix string `json:"prefix"`
			After  string `json:"after"`
			Limit  int    `json:"limit"`
		}
		if json.Unmarshal(body, &req) != nil {
			return c.malformed(h)
		}
		rep, st = s.listLocks(req.Prefix, req.After, req.Limit)
	case wire.TAdminTop:
		var req struct {
			N int `json:"n"`
		}
		if json.Unmarshal(body, &req) != nil {
			return c.malformed(h)
		}
		rep, st = s.topLocks(req.N)
	case wire.TAdminRelease:
		var req struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(body, &req) != nil {
			return c.malformed(h)
		}
		rep, st = s.forceRelease(s.instant(), req.Name, c, &c.ob)
		c.ob.send()
	}
	if st != dlock.Success {
		c.reply(t, h.ID(), st)
		return true
	}
	out, err := json.Marshal(rep)
	if err != nil || len(out) > wire.MaxAdminReply {
		c.reply(t, h.ID(), dlock.ErrGeneric)
		return true
	}
	c.outMu.Lock()
	c.out = wire.AppendFrame(c.out, t.Reply(), h.ID(), 0, out)
	c.outMu.Unlock()
	return true
}

// adminAllowed says whether c may make admin requests: every registered
// client when clients are not authenticated by certificate (plaintext, or
// TLS without client authentication: the network is the boundary), else
// only those whose certificate's subject common name is in
// Config.AdminNames.
func (s *Server) adminAllowed(c *conn) bool {
	if s.tls == nil || s.cfg.TLSNoClientAuth {
		return true
	}
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return false
	}
	cs := tc.ConnectionState()
	if len(cs.PeerCertificates) == 0 {
		return false
	}
	return slices.Contains(s.cfg.AdminNames, cs.PeerCertificates[0].Subject.CommonName)
}

func modeName(shared bool) string {
	if shared {
		return "shared"
	}
	return "exclusive"
}

// leaseEnd returns when a hold of l with lease second sec runs out: the
// lease covers its whole last second.
func leaseEnd(sec uint32) time.Time { return time.Unix(int64(sec)+1, 0).UTC() }

// lockInfo describes l, whose queued requests are waits. Called with mu
// held.
func (s *Server) lockInfo(id int32, l *lockcore.Lock, waits []*waiter, now uint32) dlock.LockInfo {
	info := dlock.LockInfo{Name: l.Descriptor(), ID: id, Type: l.Type().String(), Refs: l.Refs(),
		Holders: []dlock.HolderInfo{}, Waiters: []dlock.WaiterInfo{}}
	var lease uint32
	hasLease := false
	switch l.Type() {
	case dlock.Atomic:
		lease, hasLease = l.State().Atomic().Timeout, true
	case dlock.Fair:
		lease, hasLease = l.State().Fair().Timeout, true
	}
	if hasLease && now > lease {
		// The lease ran out: whoever is recorded no longer holds it.
		hasLease = false
		lease = 0
	}
	holder := func(client int32, shared bool) *dlock.HolderInfo {
		for i := range info.Holders {
			if h := &info.Holders[i]; h.Client == client && h.Mode == modeName(shared) {
				h.Holds = max(h.Holds, 1) + 1
				return nil
			}
		}
		h := dlock.HolderInfo{Client: client, Mode: modeName(shared)}
		if rec := s.stripeOf(id).obs.holds[holdKey{id, client}]; rec != nil && rec.active {
			h.Since, h.Token = s.clk.wall(rec.since).UTC(), rec.token
		}
		if hasLease {
			h.LeaseExpiry = leaseEnd(lease)
		}
		if cl := s.clients[client]; cl != nil {
			h.Remote, h.Connected = cl.addr, cl.conn != nil
		}
		info.Holders = append(info.Holders, h)
		return &info.Holders[len(info.Holders)-1]
	}
	var buf [dlock.MaxFairShared]int32
	ex, shared := l.Holders(buf[:0])
	expired := (l.Type() == dlock.Atomic || l.Type() == dlock.Fair) && !hasLease
	if ex != 0 && !expired {
		holder(ex, false)
	}
	if !expired {
		for _, cl := range shared {
			holder(cl, true)
		}
	}
	for _, w := range waits {
		wi := dlock.WaiterInfo{Client: w.client, Mode: modeName(w.shared), Since: s.clk.wall(w.since).UTC()}
		if cl := s.clients[w.client]; cl != nil {
			wi.Remote = cl.addr
		}
		info.Waiters = append(info.Waiters, wi)
	}
	slices.SortFunc(info.Waiters, func(a, b dlock.WaiterInfo) int { return a.Since.Compare(b.Since) })
	if len(info.Waiters) > maxListWaiters {
		info.MoreWaiters = len(info.Waiters) - maxListWaiters
		info.Waiters = info.Waiters[:maxListWaiters]
	}
	return info
}

type locksPage struct {
	Locks []dlock.LockInfo `json:"locks"`
	More  bool             `json:"more"`
}

// listLocks answers TAdminLocks: the locks named prefix… after the name
// after, in name order, as many as fit in a reply.
func (s *Server) listLocks(prefix, after string, limit int) (any, dlock.Status) {
	if limit <= 0 || limit > maxListPage {
		limit = maxListPage
	}
	s.mu.Lock()
	s.obs.admin++
	if s.state != wire.StateReady {
		s.mu.Unlock()
		return nil, dlock.ErrNotReady
	}
	type named struct {
		name string
		id   int32
		l    *lockcore.Lock
	}
	var match []named
	s.locks.Range(func(id int32, l *lockcore.Lock) bool {
		if n := l.Descriptor(); strings.HasPrefix(n, prefix) && n > after {
			match = append(match, named{n, id, l})
		}
		return true
	})
	slices.SortFunc(match, func(a, b named) int { return strings.Compare(a.name, b.name) })
	page := locksPage{Locks: []dlock.LockInfo{}, More: len(match) > limit}
	match = match[:min(len(match), limit)]
	now := s.instant().sec
	for _, m := range match {
		var waits []*waiter
		if m.l.Waiters() > 0 {
			for _, w := range s.stripeOf(m.id).waits { // the requests queued in the lock's stripe
				if w.lockID == m.id {
					waits = append(waits, w)
				}
			}
		}
		page.Locks = append(page.Locks, s.lockInfo(m.id, m.l, waits, now))
	}
	s.mu.Unlock()
	// Keep the reply within a frame: drop locks from the end (the client
	// asks for the rest).
	size := 64
	for i := range page.Locks {
		b, _ := json.Marshal(&page.Locks[i])
		size += len(b) + 1
		if size > wire.MaxAdminReply {
			page.Locks, page.More = page.Locks[:i], true
			break
		}
	}
	return &page, dlock.Success
}

// topLocks answers TAdminTop: the n most contended locks of the current
// and previous windows.
func (s *Server) topLocks(n int) (any, dlock.Status) {
	if n <= 0 {
		n = defaultTop
	}
	n = min(n, maxTop)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obs.admin++
	ns := s.clk.nanos(s.clk.now())
	epoch := ns / int64(contentionWindow)
	span := (contentionWindow + time.Duration(ns%int64(contentionWindow))).Seconds()
	out := struct {
		Locks []dlock.LockContention `json:"locks"`
	}{Locks: []dlock.LockContention{}}
	for i := range s.stripes {
		s.stripes[i].top(epoch, span, &out.Locks)
	}
	slices.SortFunc(out.Locks, func(a, b dlock.LockContention) int {
		return cmp.Or(cmp.Compare(b.WaitSeconds, a.WaitSeconds), cmp.Compare(b.Waiters, a.Waiters),
			cmp.Compare(b.Handovers, a.Handovers), strings.Compare(a.Name, b.Name))
	})
	out.Locks = out.Locks[:min(len(out.Locks), n)]
	return &out, dlock.Success
}

// top appends the contended locks of the stripe to dst and forgets those
// that are gone or quiet. Called with mu held.
func (st *stripe) top(epoch int64, span float64, dst *[]dlock.LockContention) {
	for id, c := range st.obs.contended {
		l := st.s.locks.Lock(id)
		if l == nil || l.Descriptor() != c.name {
			delete(st.obs.contended, id) // the lock is gone
			continue
		}
		c.roll(epoch)
		w := window{
			waits:     c.cur.waits + c.prev.waits,
			handovers: c.cur.handovers + c.prev.handovers,
			waitNs:    c.cur.waitNs + c.prev.waitNs,
			maxDepth:  max(c.cur.maxDepth, c.prev.maxDepth),
		}
		if w.waits == 0 && w.handovers == 0 && l.Waiters() == 0 {
			if epoch-c.epoch > 1 || (c.prev == window{} && c.cur == window{}) {
				delete(st.obs.contended, id) // quiet for two windows
			}
			continue
		}
		*dst = append(*dst, dlock.LockContention{Name: c.name, Type: c.typ.String(), Waiters: l.Waiters(),
			Queued: w.waits, Handovers: w.handovers, WaitSeconds: float64(w.waitNs) / 1e9,
			MaxQueue: max(w.maxDepth, l.Waiters()), WindowSeconds: span})
	}
}

// forceRelease answers TAdminRelease: every holder of the lock named name
// loses it, as if it had unlocked; the next in line is granted.
func (s *Server) forceRelease(at instant, name string, by *conn, out *outbox) (any, dlock.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.obs.admin++
	if s.state != wire.StateReady {
		return nil, dlock.ErrNotReady
	}
	l := s.locks.Named(name)
	if l == nil {
		return nil, dlock.ErrInval
	}
	id := l.ID()
	now := at.sec
	st := s.stripeOf(id)
	var buf [dlock.MaxFairShared]int32
	ex, shared := l.Holders(buf[:0])
	var victims []int32
	if ex != 0 && holding(l, ex, now) {
		victims = append(victims, ex)
	}
	for _, cl := range shared {
		if !slices.Contains(victims, cl) && holding(l, cl, now) {
			victims = append(victims, cl)
		}
	}
	for _, cl := range victims {
		s.cancelWaitersOn(at, cl, id, out)
		st.endHold(id, l.Type(), cl, at.ns)
		st.deliver(at, l.Drop(now, cl, st.wake[:0]), out)
		s.obs.forced++
	}
	st.schedule(id, l)
	s.cfg.Logger.Warn("lock force-released", "lock", name, "holders", victims, "by_client", by.client.id, "remote", by.remote())
	return &struct {
		Released []int32 `json:"released"`
	}{Released: append([]int32{}, victims...)}, dlock.Success
}
