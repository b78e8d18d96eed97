package lockcore

import (
	"slices"

	"github.com/dlock-io/dlock"
)

// Hold is what a client reports having of a lock during failure recovery.
type Hold uint8

// Hold kinds (the values of wire.UpdateLock.Hold).
const (
	HoldNone        Hold = 0
	HoldExclusive   Hold = 1
	HoldShared      Hold = 2
	TicketExclusive Hold = 3 // a FAIR ticket not yet served
	TicketShared    Hold = 4
)

// fairReport is a FAIR hold reported during recovery, kept until the table
// ends recovery so that holder tracking can follow the merged counters
// whatever order the reports arrive in.
type fairReport struct {
	client int32
	shared bool
	nx, ns uint16
}

// Merge folds one client's recovery report for one lock into the table
// (SEMANTICS.md §9): the lock is found by descriptor or created (preferred
// id first), the reported value v is merged by the rules of its type, the
// client gets a reference, and tokens continue above token. It returns the
// lock id, or -1 when the entry is rejected: a lock of another type exists
// (upstream merges it anyway), the descriptor or type is invalid, or the
// table is full.
//
// Beyond upstream, the holder the merge accepts is tracked (upstream leaves
// a FAIR lock's owner at 0), so the recovered holder can unlock and a
// removed client's recovered holds are released. A report naming another
// client as the owner is ignored. A client may report the same lock again
// (it re-registered after its connection dropped during recovery): merging
// the same report twice changes nothing.
func (t *Table) Merge(client int32, desc []byte, typ dlock.LockType, preferred int32, lease uint32, v dlock.LockState, hold Hold, token uint64) int32 {
	id, st := t.Get(client, desc, typ, preferred, lease)
	if st != dlock.Success {
		return -1
	}
	t.tokens.Raise(token)
	l := t.byID[id]
	switch typ {
	case dlock.Atomic:
		l.mergeAtomic(client, v.Atomic(), hold)
	case dlock.RW:
		l.mergeRW(client, v.RW(), hold)
	case dlock.Fair:
		l.mergeFair(client, v.Fair(), hold)
	}
	return id
}

// EndRecovery forgets the per-lock recovery reports once the server is
// ready.
func (t *Table) EndRecovery() {
	for _, l := range t.byID {
		l.reports = nil
	}
}

// mergeAtomic: the latest expiry wins.
func (l *Lock) mergeAtomic(client int32, a dlock.AtomicState, hold Hold) {
	if hold != HoldExclusive || a.Owner != client || a.Timeout == 0 {
		return
	}
	if l.timeout < a.Timeout {
		l.owner, l.timeout = a.Owner, a.Timeout
	}
}

// mergeRW: a later exclusive report replaces the state; shared reports add
// up unless a later exclusive one holds the lock.
func (l *Lock) mergeRW(client int32, r dlock.RWState, hold Hold) {
	if r.Timeout == 0 {
		return
	}
	switch hold {
	case HoldExclusive:
		if r.Owner != client || r.Timeout <= l.timeout {
			return
		}
		l.owner, l.timeout, l.rcount = client, r.Timeout, 0
		l.shared = l.shared[:0]
	case HoldShared:
		if slices.Contains(l.shared, client) {
			// The client uploads again (its connection dropped mid-recovery).
			l.timeout = max(l.timeout, r.Timeout)
			return
		}
		if l.owner != 0 {
			if r.Timeout <= l.timeout {
				return
			}
			l.owner, l.timeout, l.rcount = 0, r.Timeout, 1
			l.shared = append(l.shared[:0], client)
			return
		}
		l.timeout = max(l.timeout, r.Timeout)
		l.rcount++
		l.shared = append(l.shared, client)
	}
}

// mergeFair applies the FAIR merge rules to the counters, then derives the
// holders from the reports that match the merged position.
func (l *Lock) mergeFair(client int32, r dlock.FairState, hold Hold) {
	if r.Timeout == 0 {
		return
	}
	f := &l.f
	sharedHold := hold == HoldShared
	switch {
	case l.timeout == 0:
		f.nx, f.ns, f.mx, f.ms = r.Nx, r.Ns, r.Mx, r.Ms
		l.timeout, f.rms, f.rflag = r.Timeout, r.RMs, r.RFlag
	case r.Timeout == l.timeout:
		if !passed(r.Ns, f.ns) {
			f.ns = r.Ns
		}
		if !passed(r.Nx, f.nx) {
			f.nx = r.Nx
		}
	case r.Timeout > l.timeout:
		f.nx, f.ns, l.timeout, f.rms, f.rflag = r.Nx, r.Ns, r.Timeout, r.RMs, r.RFlag
	}
	if !passed(r.Mx, f.mx) {
		f.mx = r.Mx
	}
	if !passed(r.Ms, f.ms) {
		f.ms = r.Ms
	}
	// A client's new report (it uploads again after a dropped connection)
	// replaces its earlier one.
	l.reports = slices.DeleteFunc(l.reports, func(rep fairReport) bool { return rep.client == client })
	if hold == HoldExclusive || sharedHold {
		l.reports = append(l.reports, fairReport{client: client, shared: sharedHold, nx: r.Nx, ns: r.Ns})
	}
	// Holders: the reports whose position is the merged one. An exclusive
	// hold is at (Nx, Ns); shared holds at Nx. The latest exclusive report
	// that matches wins over shared ones.
	l.owner = 0
	l.shared = l.shared[:0]
	for _, rep := range l.reports {
		switch {
		case !rep.shared && rep.nx == f.nx && rep.ns == f.ns:
			l.owner = rep.client
		case rep.shared && rep.nx == f.nx && !slices.Contains(l.shared, rep.client):
			l.shared = append(l.shared, rep.client)
		}
	}
	if l.owner != 0 {
		l.shared = l.shared[:0]
	}
	f.rcnt = uint8(min(len(l.shared), dlock.MaxFairShared))
}
