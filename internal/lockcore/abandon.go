package lockcore

import "github.com/dlock-io/dlock"

// Abandon gives up a FAIR ticket that a client took with a non-blocking
// trylock answered EAGAIN and no longer wants (its unlock in the ticketed
// state). Upstream DLock abandons such a ticket only in the client's cache,
// so when its turn comes the lock stays reserved for the 2-second hand-over
// window for nobody; here the ticket becomes a ghost that is retired at
// once, like a cancelled blocking waiter's. ticket is the ticket as the
// client stores it (its Mx and Ms are the ticket numbers). A ticket that is
// not outstanding, or that is abandoned already or belongs to a queued
// waiter, is ignored: a ticket can be retired only once.
func (l *Lock) Abandon(now uint32, ticket dlock.FairState, shared bool, wake []Grant) []Grant {
	if l.typ != dlock.Fair {
		return wake
	}
	wake = l.evaluate(now, wake)
	f := &l.f
	tx, ts := ticket.Mx, ticket.Ms
	outstanding := tx-f.nx < f.mx-f.nx
	if shared {
		outstanding = ts-f.ns < f.ms-f.ns && !passed(tx, f.nx)
	}
	if !outstanding {
		return wake
	}
	g := ghost{tx: tx, ts: ts, shared: shared}
	for _, o := range l.ghosts {
		if o == g {
			return wake
		}
	}
	for i := 0; i < l.q.len(); i++ {
		w := l.q.at(i)
		if w.tx == tx && w.ts == ts && (w.Mode == dlock.Shared) == shared {
			return wake
		}
	}
	l.ghosts = append(l.ghosts, g)
	return l.evaluate(now, wake)
}
