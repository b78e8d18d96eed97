package lockcore

import "github.com/dlock-io/dlock"

// ATOMIC (SEMANTICS.md §5.1): owner and absolute timeout; held while
// owner != 0 && now <= timeout. Expiry is lazy for non-blocking commands; a
// queued waiter takes the lock at timeout+1 (NextEvent).

func (l *Lock) atomicFree(now uint32) bool { return l.owner == 0 || now > l.timeout }

// atomicGrant gives the lock to client for e seconds.
func (l *Lock) atomicGrant(now uint32, client int32, e uint32) Reply {
	l.owner = client
	l.timeout = expireAt(now, e)
	return Reply{Status: dlock.Success, State: l.State(), Token: l.tokens.Next()}
}

func (l *Lock) execAtomic(now uint32, client int32, cmd dlock.Cmd, arg dlock.LockState, st *dlock.Stats) (Reply, bool) {
	switch cmd {
	case dlock.CmdExclusiveTrylock, dlock.CmdExclusiveUnlock, dlock.CmdExclusiveExtend:
	default:
		return invalid(arg, st)
	}
	a := arg.Atomic()
	if a.Owner != client {
		st.Inc(dlock.StatClientIDVerifyFail)
		return Reply{Status: dlock.ErrFail, State: arg}, false
	}
	switch cmd {
	case dlock.CmdExclusiveTrylock:
		if !l.atomicFree(now) {
			st.Inc(dlock.StatAtomicTrylockFail)
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		return l.atomicGrant(now, client, a.Timeout), false
	case dlock.CmdExclusiveUnlock:
		if l.owner != client {
			st.Inc(dlock.StatAtomicUnlockFail)
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		l.owner, l.timeout = 0, 0
		return Reply{Status: dlock.Success}, true
	default: // extend
		if l.owner != client {
			st.Inc(dlock.StatAtomicExtendFail)
			return Reply{Status: dlock.ErrFail, State: l.State()}, false
		}
		if t := extendAt(now, a.Timeout); t > l.timeout {
			l.timeout = t
		}
		return Reply{Status: dlock.Success, State: l.State()}, false
	}
}
