package lockcore

import "github.com/dlock-io/dlock"

// FAIR (SEMANTICS.md §5.3): a ticket lock with 16-bit counters, a lease, a
// 2-second hand-over window and timeout grabs.
//
// Deviations from upstream, all stricter, all invisible to a well-behaved
// client:
//   - The lock tracks its holders (owner for exclusive, a list for shared).
//     EXCLUSIVE_UNLOCK needs owner == client: upstream also accepts owner == 0,
//     which only matters for locks rebuilt by recovery (owner not restored);
//     accepting it here would let any client advance Nx past a reader or past
//     Mx and wedge the lock.
//   - SHARED_UNLOCK needs the client to hold a shared hold (upstream
//     decrements Rcnt for anyone whose cached Nx matches).
//   - EXCLUSIVE/SHARED_LOCK_EXTEND need the client to hold the lock (owner,
//     or a shared hold when there is no owner).
//   - EXCLUSIVE_TICKET_TRYLOCK is not granted beside readers (Rcnt > 0): for
//     a ticket the server issued, tx == Nx && ts == Ns already implies
//     Rcnt == 0; the check keeps a forged ticket from breaking exclusion.
//   - Rcnt saturates at 0 (upstream can wrap it to 63 after a grab);
//     now+E saturates (upstream wraps).
//   - A timeout grab makes every previous holder stale: they are forgotten.

// fairCounters is the FAIR state besides owner and timeout.
type fairCounters struct {
	nx, ns, mx, ms uint16
	rms            uint16
	rflag          bool
	rcnt           uint8
}

// passed reports whether ticket value t lies behind counter n (d(t,n) > 0x7FFF).
func passed(t, n uint16) bool { return t-n > dlock.MaxFairQueue }

func (l *Lock) fairState() dlock.FairState {
	f := &l.f
	return dlock.FairState{Nx: f.nx, Ns: f.ns, Mx: f.mx, Ms: f.ms, Timeout: l.timeout,
		RMs: f.rms, RFlag: f.rflag, RCnt: f.rcnt}
}

// ticketState is the ticket reply for w: the current state with Mx, Ms the
// ticket's numbers and time_out its obtain time.
func (l *Lock) ticketState(w *waiter) dlock.LockState {
	s := l.fairState()
	s.Mx, s.Ms, s.Timeout = w.tx, w.ts, w.obtained
	return s.State()
}

func (l *Lock) fairQueueFull() bool {
	return l.f.mx-l.f.nx >= dlock.MaxFairQueue || l.f.ms-l.f.ns >= dlock.MaxFairQueue
}

func (l *Lock) fairExtendTimeout(t uint32) {
	if t > l.timeout {
		l.timeout = t
	}
}

// fairTake is EXCLUSIVE_TRYLOCK / SHARED_TRYLOCK: grant at once or issue a
// ticket. It returns Success (with token), ErrAgain (ticket issued: tx, ts)
// or ErrFail (queue limit).
func (l *Lock) fairTake(now uint32, client int32, shared bool, e uint32, st *dlock.Stats) (status dlock.Status, tx, ts uint16, tok uint64) {
	f := &l.f
	if l.fairQueueFull() {
		st.Inc(dlock.StatFairQueueLimit)
		return dlock.ErrFail, 0, 0, 0
	}
	tx, ts = f.mx, f.ms
	if !shared {
		f.mx++
		if l.owner == 0 && f.nx == tx && f.ns == f.ms {
			l.timeout = expireAt(now, e)
			l.owner = client
			return dlock.Success, tx, ts, l.tokens.Next()
		}
		return dlock.ErrAgain, tx, ts, 0
	}
	f.ms++
	if l.owner == 0 && f.nx == f.mx && f.rcnt < dlock.MaxFairShared {
		l.fairExtendTimeout(expireAt(now, e))
		f.rcnt++
		l.addShared(client)
		return dlock.Success, tx, ts, l.tokens.Next()
	}
	return dlock.ErrAgain, tx, ts, 0
}

// fairTicket is EXCLUSIVE_TICKET_TRYLOCK / SHARED_TICKET_TRYLOCK for ticket
// (tx, ts): Success (with token; possibly a timeout grab), ErrAgain, or
// ErrFail when the ticket was passed. Counters go to st (nil: none).
func (l *Lock) fairTicket(now uint32, client int32, shared bool, tx, ts uint16, e uint32, st *dlock.Stats) (dlock.Status, uint64) {
	f := &l.f
	if !shared {
		if passed(tx, f.nx) || passed(ts, f.ns) {
			st.Inc(dlock.StatFairExTicketPassed)
			return dlock.ErrFail, 0
		}
		switch {
		case l.owner == 0 && f.rcnt == 0 && tx == f.nx && ts == f.ns:
		case now > l.timeout: // timeout grab
			l.grabs++
			f.nx, f.ns = tx, ts
			f.rflag, f.rcnt, f.rms = true, 0, ts
			l.shared = l.shared[:0]
		default:
			st.Inc(dlock.StatEAgain)
			return dlock.ErrAgain, 0
		}
		l.timeout = expireAt(now, e)
		l.owner = client
		return dlock.Success, l.tokens.Next()
	}
	if passed(tx, f.nx) || (f.rflag && passed(ts, f.rms)) {
		st.Inc(dlock.StatFairShTicketPassed)
		return dlock.ErrFail, 0
	}
	switch {
	case l.owner == 0 && tx == f.nx && f.rcnt < dlock.MaxFairShared:
		l.fairExtendTimeout(expireAt(now, e))
		f.rcnt++
	case now > l.timeout: // timeout grab
		l.grabs++
		f.nx, f.ns = tx, ts
		f.rflag, f.rcnt, f.rms = true, 1, ts
		l.timeout = expireAt(now, e)
		l.owner = 0
		l.shared = l.shared[:0]
	default:
		st.Inc(dlock.StatEAgain)
		return dlock.ErrAgain, 0
	}
	l.addShared(client)
	return dlock.Success, l.tokens.Next()
}

// fairExclusiveRelease is the effect of a successful EXCLUSIVE_UNLOCK.
func (l *Lock) fairExclusiveRelease(now uint32) {
	l.f.nx++
	l.timeout = expireAt(now, dlock.FairHandOverSeconds)
	l.f.rflag = false
	l.owner = 0
}

// fairSharedRelease is the effect of a successful SHARED_UNLOCK (the holder
// is already removed from the list).
func (l *Lock) fairSharedRelease(now uint32) {
	f := &l.f
	f.ns++
	if f.rcnt > 0 { // saturate
		f.rcnt--
	}
	if f.rcnt == 0 {
		l.timeout = expireAt(now, dlock.FairHandOverSeconds)
	}
	f.rflag = f.rflag && f.ns-f.rms < dlock.FairResetThreshold
}

func (l *Lock) execFair(now uint32, client int32, cmd dlock.Cmd, arg dlock.LockState, st *dlock.Stats) (Reply, bool) {
	a := arg.Fair()
	f := &l.f
	switch cmd {
	case dlock.CmdExclusiveTrylock, dlock.CmdSharedTrylock:
		status, tx, ts, tok := l.fairTake(now, client, cmd == dlock.CmdSharedTrylock, a.Timeout, st)
		switch status {
		case dlock.ErrFail:
			return Reply{Status: status, State: arg}, false
		case dlock.ErrAgain:
			st.Inc(dlock.StatEAgain)
			s := l.fairState()
			s.Mx, s.Ms, s.Timeout = tx, ts, now
			return Reply{Status: status, State: s.State()}, false
		}
		return Reply{Status: status, State: l.State(), Token: tok}, false
	case dlock.CmdExclusiveTicketTrylock, dlock.CmdSharedTicketTrylock:
		status, tok := l.fairTicket(now, client, cmd == dlock.CmdSharedTicketTrylock, a.Mx, a.Ms, a.Timeout, st)
		if status == dlock.ErrFail {
			return Reply{Status: status, State: arg}, false
		}
		// A shared grant (or grab) may let queued shared waiters in.
		return Reply{Status: status, State: l.State(), Token: tok}, status == dlock.Success
	case dlock.CmdExclusiveUnlock:
		if l.owner != client || f.nx != a.Nx || f.ns != a.Ns {
			st.Inc(dlock.StatFairUnlockExFail)
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		l.fairExclusiveRelease(now)
		return Reply{Status: dlock.Success, State: l.State()}, true
	case dlock.CmdSharedUnlock:
		stale := f.rflag && passed(a.Ns, f.rms)
		if l.owner != 0 || stale || f.nx != a.Nx || !l.removeShared(client) {
			st.Inc(dlock.StatFairUnlockShFail)
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		l.fairSharedRelease(now)
		return Reply{Status: dlock.Success, State: l.State()}, true
	case dlock.CmdExclusiveExtend, dlock.CmdSharedExtend:
		t := extendAt(now, a.Timeout)
		holder := l.owner == client || (l.owner == 0 && l.isShared(client))
		ok := holder && a.Nx == f.nx && !(f.rflag && passed(a.Ns, f.rms)) &&
			(cmd == dlock.CmdSharedExtend || a.Ns == f.ns)
		if !ok {
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		if t != 0 {
			l.fairExtendTimeout(t)
		}
		return Reply{Status: dlock.Success, State: l.State()}, false
	}
	return invalid(arg, st)
}

// fairAcquire takes or presents a ticket for a blocking request. queued
// reports that w was put in the queue (not yet evaluated).
func (l *Lock) fairAcquire(now uint32, w Waiter, st *dlock.Stats) (Reply, bool) {
	shared := w.Mode == dlock.Shared
	if w.HasTicket {
		tx, ts := w.Ticket.Mx, w.Ticket.Ms
		status, tok := l.fairTicket(now, w.Client, shared, tx, ts, w.Expire, nil)
		switch status {
		case dlock.ErrFail:
			if shared {
				st.Inc(dlock.StatFairShTicketPassed)
			} else {
				st.Inc(dlock.StatFairExTicketPassed)
			}
			return Reply{Status: status, State: w.Ticket.State()}, false
		case dlock.Success:
			return Reply{Status: status, State: l.State(), Token: tok}, false
		}
		nw := waiter{Waiter: w, tx: tx, ts: ts, obtained: w.Ticket.Timeout}
		// Insert in ticket order: older tickets have more tickets issued
		// after them.
		age := l.ticketAge(tx, ts)
		i := 0
		for ; i < l.q.len(); i++ {
			o := l.q.at(i)
			if l.ticketAge(o.tx, o.ts) < age {
				break
			}
		}
		l.q.insert(i, nw)
		return Reply{}, true
	}
	status, tx, ts, tok := l.fairTake(now, w.Client, shared, w.Expire, st)
	switch status {
	case dlock.ErrFail:
		return Reply{Status: status, State: l.State()}, false
	case dlock.Success:
		return Reply{Status: status, State: l.State(), Token: tok}, false
	}
	l.q.push(waiter{Waiter: w, tx: tx, ts: ts, obtained: now})
	return Reply{}, true
}

// ticketAge is the number of tickets issued at or after ticket (tx, ts).
func (l *Lock) ticketAge(tx, ts uint16) int {
	return int(l.f.mx-tx) + int(l.f.ms-ts)
}

// fairEvaluate retires abandoned tickets whose turn came and answers queued
// waiters in ticket order: each is tried as its ticket trylock would be
// (including the timeout grab); a passed ticket is answered ErrFail; the
// first waiter that would get EAGAIN stops the scan (nobody behind it can
// go before it).
func (l *Lock) fairEvaluate(now uint32, wake []Grant) []Grant {
	for {
		changed := l.fairGhosts()
		for l.q.len() > 0 {
			w := l.q.at(0)
			status, tok := l.fairTicket(now, w.Client, w.Mode == dlock.Shared, w.tx, w.ts, w.Expire, nil)
			if status == dlock.ErrAgain {
				break
			}
			ww := l.q.remove(0)
			if status == dlock.ErrFail {
				wake = append(wake, grantOf(&ww, status, l.ticketState(&ww), 0))
				continue
			}
			changed = true
			wake = append(wake, grantOf(&ww, status, l.State(), tok))
		}
		if !changed {
			return wake
		}
	}
}

// fairGhosts retires abandoned tickets: a passed one is dropped; one whose
// turn has come counts as granted and released (exclusive: Nx++ when
// Nx == tx && Ns == ts and nobody holds the lock; shared: Ns++ when
// Nx == tx). It reports whether the state changed.
func (l *Lock) fairGhosts() bool {
	f := &l.f
	changed := false
	for again := true; again; {
		again = false
		for i := 0; i < len(l.ghosts); {
			g := l.ghosts[i]
			switch {
			case !g.shared && (passed(g.tx, f.nx) || passed(g.ts, f.ns)),
				g.shared && (passed(g.tx, f.nx) || (f.rflag && passed(g.ts, f.rms))):
			case !g.shared && l.owner == 0 && f.rcnt == 0 && f.nx == g.tx && f.ns == g.ts:
				f.nx++
				f.rflag = false
				again = true
			case g.shared && l.owner == 0 && f.nx == g.tx:
				f.ns++
				f.rflag = f.rflag && f.ns-f.rms < dlock.FairResetThreshold
				again = true
			default:
				i++
				continue
			}
			last := len(l.ghosts) - 1
			copy(l.ghosts[i:], l.ghosts[i+1:])
			l.ghosts = l.ghosts[:last]
		}
		changed = changed || again
	}
	return changed
}
