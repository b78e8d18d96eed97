package lockcore

import "github.com/dlock-io/dlock"

// RW (SEMANTICS.md §5.2): owner (exclusive holder), rcount (shared holders),
// timeout (first acquisition of the holding period); no expiry.
//
// Stricter than upstream: the lock tracks which clients hold it shared, and
// a SHARED_UNLOCK from a client that holds no shared hold fails
// (RW_UNLOCK_SH_FAIL) instead of decrementing rcount on someone else's
// behalf.

// rwCanGrant reports whether a request in mode m would be granted now.
func (l *Lock) rwCanGrant(m dlock.Mode) bool {
	if m == dlock.Shared {
		return l.owner == 0
	}
	return l.owner == 0 && l.rcount == 0
}

// rwGrant grants mode m to client; rwCanGrant(m) must hold.
func (l *Lock) rwGrant(now uint32, client int32, m dlock.Mode) Reply {
	if m == dlock.Shared {
		l.rcount++
		if l.timeout == 0 {
			l.timeout = now
		}
		l.addShared(client)
	} else {
		l.owner, l.timeout, l.rcount = client, now, 0
	}
	return Reply{Status: dlock.Success, State: l.State(), Token: l.tokens.Next()}
}

// rwSharedRelease is the effect of one shared unlock.
func (l *Lock) rwSharedRelease() {
	if l.rcount > 0 {
		l.rcount--
	}
	if l.rcount == 0 {
		l.timeout = 0
	}
}

func (l *Lock) execRW(now uint32, client int32, cmd dlock.Cmd, arg dlock.LockState, st *dlock.Stats) (Reply, bool) {
	a := arg.RW()
	switch cmd {
	case dlock.CmdExclusiveTrylock, dlock.CmdExclusiveUnlock:
		if a.Owner != client {
			st.Inc(dlock.StatClientIDVerifyFail)
			return Reply{Status: dlock.ErrFail, State: arg}, false
		}
	case dlock.CmdSharedTrylock, dlock.CmdSharedUnlock:
		if a.Owner != 0 {
			st.Inc(dlock.StatClientIDVerifyFail)
			return Reply{Status: dlock.ErrFail, State: arg}, false
		}
	case dlock.CmdExclusiveExtend, dlock.CmdSharedExtend:
		// Upstream counts the refused time conversion, then the missing
		// handler.
		st.Inc(dlock.StatEInvalLockType)
		return invalid(arg, st)
	default:
		return invalid(arg, st)
	}
	switch cmd {
	case dlock.CmdExclusiveTrylock:
		if !l.rwCanGrant(dlock.Exclusive) {
			st.Inc(dlock.StatRWTrylockExFail)
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		return l.rwGrant(now, client, dlock.Exclusive), false
	case dlock.CmdExclusiveUnlock:
		if l.owner != client {
			st.Inc(dlock.StatRWUnlockExFail)
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		l.owner, l.timeout, l.rcount = 0, 0, 0
		return Reply{Status: dlock.Success}, true
	case dlock.CmdSharedTrylock:
		if !l.rwCanGrant(dlock.Shared) {
			st.Inc(dlock.StatRWTrylockShFail)
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		return l.rwGrant(now, client, dlock.Shared), false
	default: // shared unlock
		if l.owner != 0 || l.rcount == 0 || !l.removeShared(client) {
			st.Inc(dlock.StatRWUnlockShFail)
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		l.rwSharedRelease()
		return Reply{Status: dlock.Success, State: l.State()}, true
	}
}
