package lockcore

import (
	"testing"

	"github.com/dlock-io/dlock"
)

// fairTry sends a first FAIR trylock and returns the reply (the ticket on
// EAGAIN).
func fairTry(t *testing.T, l *Lock, now uint32, client int32, shared bool) Reply {
	t.Helper()
	cmd := dlock.CmdExclusiveTrylock
	if shared {
		cmd = dlock.CmdSharedTrylock
	}
	r, _ := l.Exec(now, client, cmd, dlock.FairState{Timeout: 30}.State(), nil, nil)
	return r
}

func ticketTry(l *Lock, now uint32, client int32, ticket dlock.LockState, shared bool) Reply {
	cmd := dlock.CmdExclusiveTicketTrylock
	if shared {
		cmd = dlock.CmdSharedTicketTrylock
	}
	f := ticket.Fair()
	f.Timeout = 30
	r, _ := l.Exec(now, client, cmd, f.State(), nil, nil)
	return r
}

func TestAbandonTicket(t *testing.T) {
	for _, shared := range []bool{false, true} {
		l := NewLock(dlock.Fair, nil)
		const now = 100
		hold := fairTry(t, l, now, 1, false)
		if hold.Status != dlock.Success {
			t.Fatal(hold.Status)
		}
		t1 := fairTry(t, l, now, 2, shared)
		t2 := fairTry(t, l, now, 3, false)
		if t1.Status != dlock.ErrAgain || t2.Status != dlock.ErrAgain {
			t.Fatalf("tickets: %v %v", t1.Status, t2.Status)
		}
		// Client 2 gives its ticket up; twice, which must not skip anyone else.
		l.Abandon(now, t1.State.Fair(), shared, nil)
		l.Abandon(now, t1.State.Fair(), shared, nil)
		f := hold.State.Fair()
		f.Timeout = 0
		if r, _ := l.Exec(now, 1, dlock.CmdExclusiveUnlock, f.State(), nil, nil); r.Status != dlock.Success {
			t.Fatalf("unlock: %v", r.Status)
		}
		// Client 3 is served at once, not after the 2-second window.
		if r := ticketTry(l, now, 3, t2.State, false); r.Status != dlock.Success {
			t.Fatalf("shared=%v: next ticket after an abandoned one: %v, want SUCCESS without waiting", shared, r.Status)
		}
		// The abandoned ticket is not served any more. (An exclusive one is
		// detected as passed; DLock detects a passed shared ticket only after
		// a grab, so it just keeps waiting.)
		r := ticketTry(l, now, 2, t1.State, shared)
		if r.Status == dlock.Success || (!shared && r.Status != dlock.ErrFail) {
			t.Fatalf("shared=%v: abandoned ticket presented again: %v", shared, r.Status)
		}
	}
}

func TestAbandonIgnoresBadTickets(t *testing.T) {
	l := NewLock(dlock.Fair, nil)
	hold := fairTry(t, l, 100, 1, false)
	before := l.State()
	// A ticket never issued, and the holder's own position, are ignored.
	l.Abandon(100, dlock.FairState{Mx: 9, Ms: 9}, false, nil)
	l.Abandon(100, hold.State.Fair(), true, nil)
	if l.State() != before || len(l.ghosts) != 0 {
		t.Fatalf("state changed by bogus abandons: %+v ghosts %v", l.State().Fair(), l.ghosts)
	}
	// Not a fair lock: nothing happens.
	a := NewLock(dlock.Atomic, nil)
	if w := a.Abandon(100, dlock.FairState{}, false, nil); len(w) != 0 {
		t.Fatal(w)
	}
}
