package dlock

// This file is the client's lock state machine, the lock entry: what a
// client instance knows about one lock it has opened (the lock cache), and
// how a lock operation on it is decided locally or turned into a command
// for the server and back (SEMANTICS.md §6, which also says where it
// differs from DLock). It is pure logic — no I/O, no goroutines, no clock —
// shared by the Go client and the C ABI layer.
//
// An operation runs in two or three calls on the same *lockEntry, under the
// caller's lock:
//
//	s := e.begin(op, expire, self, callSync, st)
//	if s.local {
//		// answered: s.status, and s.result if s.fill
//	}
//	// send s.cmd with payload s.arg; then either
//	status := e.finish(&s, reply.Status, reply.State, reply.Token, st) // and s.result if s.fill
//	// or, if the exchange failed (no reply, send failure, bad frame):
//	e.abort(&s)
//
// begin may change the entry before anything is sent (a reentrant hold is
// counted, an unlock zeroes the cached value); finish and abort settle it.
// lockop.go drives these steps for the client, once for every API.

// localState is the client-local state of a lock (C enum dlock_state; the
// numbers are DLock's). stateInitialized and stateUnlocked behave the
// same for every decision.
type localState uint8

const (
	stateInitialized       localState = 0 // LOCK_INITIALIZED
	stateExclusiveLocked   localState = 1 // EXCLUSIVE_LOCKED
	stateSharedLocked      localState = 2 // SHARED_LOCKED
	stateUnlocked          localState = 3 // UNLOCKED
	stateExclusiveTicketed localState = 4 // EXCLUSIVE_TICKETED (FAIR only)
	stateSharedTicketed    localState = 5 // SHARED_TICKETED (FAIR only)
)

var localStateNames = [...]string{"initialized", "exclusive-locked", "shared-locked",
	"unlocked", "exclusive-ticketed", "shared-ticketed"}

func (s localState) String() string {
	if int(s) < len(localStateNames) {
		return localStateNames[s]
	}
	return "localState(?)"
}

// callKind says through which API an operation came. The mapping (SEMANTICS.md §6.2) is the
// same for all three; they differ in a few reply details (see finish).
type callKind uint8

const (
	callSync  callKind = iota // trylock, lock, unlock, lock_extend
	callBatch                 // one entry of batch_trylock, batch_unlock, batch_lock_extend
	callAsync                 // lock_request_async + lock_result_check
)

// lockEntry is one client instance's local entry for one lock (SEMANTICS.md §6.1): created
// by get_lock in stateInitialized with ref 0 and a zero cached value.
type lockEntry struct {
	id    int32
	typ   LockType
	lease uint32
	desc  []byte

	state localState
	ref   uint32    // hold recursion count (reentrant holds)
	value LockState // last lock value or FAIR ticket received from the server
	token uint64    // fencing token of the current hold, 0 when none
}

// step is one operation on an entry: either answered locally (local) or a
// command to send and whose reply finish applies.
type step struct {
	op  Op
	via callKind

	local  bool   // answered without the server: status is the answer
	status Status // the local answer

	// fill says the caller's result buffer receives result. It is set by begin
	// for local answers and by finish for replies.
	fill   bool
	result LockState

	cmd       Cmd       // command to send when !local
	arg       LockState // its payload
	reentrant bool      // an extend implementing a reentrant lock
	// retiresTicket marks a blocking FAIR request sent without
	// FlagKeepTicket: when it times out (or is withdrawn) the server retires
	// its ticket, so the entry must forget it. The caller sets it after begin.
	retiresTicket bool

	// The entry as it was before begin changed it, for finish and abort to
	// restore.
	savedRef   uint32
	savedValue LockState
	savedToken uint64
}

func isLockOp(op Op) bool { return op == OpLockExclusive || op == OpLockShared }

// held reports whether the entry is in a locked state.
func (e *lockEntry) held() bool {
	return e.state == stateExclusiveLocked || e.state == stateSharedLocked
}

// reset forgets the hold or ticket after the server said it was lost
// (DLOCK_FAIL): state LOCK_INITIALIZED, ref 0. The cached value is kept, as
// upstream does; nothing reads it in that state except a peek.
func (e *lockEntry) reset() {
	e.state = stateInitialized
	e.ref = 0
	e.token = 0
}

// restore undoes what begin changed on the entry.
func (e *lockEntry) restore(s *step) {
	e.ref = s.savedRef
	e.value = s.savedValue
	e.token = s.savedToken
}

// answer ends s locally with status, filling the result from the cache when
// fill is set.
func (e *lockEntry) answer(s *step, status Status, fill bool) {
	s.local = true
	s.status = status
	if fill {
		s.fill = true
		s.result = e.value
	}
}

// payload builds the command payload (SEMANTICS.md §6.2): ATOMIC {self, expire}; RW
// {owner self (exclusive) or 0 (shared), time_out expire}; FAIR the cached
// Nx, Ns, Mx, Ms with time_out expire.
func (e *lockEntry) payload(cmd Cmd, expire uint32, self int32) LockState {
	switch e.typ {
	case Atomic:
		return AtomicState{Owner: self, Timeout: expire}.State()
	case RW:
		if cmd.Shared() {
			self = 0
		}
		return RWState{Timeout: expire, Owner: self}.State()
	}
	f := e.value.Fair()
	return FairState{Nx: f.Nx, Ns: f.Ns, Mx: f.Mx, Ms: f.Ms, Timeout: expire}.State()
}

// begin decides op (any of the five; the API layer has already refused the
// ops its call does not accept) on the entry for the client self, with
// expire_time expire (relative seconds; unused by unlock). Counters the
// mapping increments go to st (may be nil).
//
// The returned step is either local (s.status is the answer; s.fill says
// whether the result buffer gets s.result) or carries the command s.cmd with
// payload s.arg to send. Then call finish with the reply, or abort if the
// exchange failed. For a reentrant lock (s.reentrant) in a sync or batch call
// the hold is already counted (ref++); for an unlock the cached value and the
// token are already cleared and, in a sync or batch call, ref decremented.
func (e *lockEntry) begin(op Op, expire uint32, self int32, via callKind, st *Stats) step {
	var s step
	e.beginInto(&s, op, expire, self, via, st)
	return s
}

// beginInto is begin writing the step to s (a batch begins its entries in
// place).
func (e *lockEntry) beginInto(s *step, op Op, expire uint32, self int32, via callKind, st *Stats) {
	*s = step{op: op, via: via, savedRef: e.ref, savedValue: e.value, savedToken: e.token}
	if !op.Valid() {
		e.answer(s, ErrInval, false)
		return
	}
	if !e.typ.Valid() {
		st.Inc(StatEInvalLockType)
		e.answer(s, ErrInval, false)
		return
	}
	switch {
	case isLockOp(op):
		if via == callAsync && expire == 0 {
			e.answer(s, ErrInval, false) // no peek in async
			return
		}
		if e.typ == Atomic && op == OpLockShared {
			st.Inc(StatEInvalLockOp)
			e.answer(s, ErrInval, false)
			return
		}
		if expire == 0 {
			e.answer(s, Success, true) // peek
			return
		}
		e.beginLock(s, expire, self, st)
		return
	case op == OpUnlock:
		e.beginUnlock(s, self, st)
		return
	}
	e.beginExtend(s, expire, self, st)
}

// beginLock maps LOCK_EXCLUSIVE / LOCK_SHARED.
func (e *lockEntry) beginLock(s *step, expire uint32, self int32, st *Stats) {
	excl := s.op == OpLockExclusive
	switch e.state {
	case stateInitialized, stateUnlocked:
		s.cmd = CmdSharedTrylock
		if excl {
			s.cmd = CmdExclusiveTrylock
		}
	case stateExclusiveLocked, stateSharedLocked:
		if excl != (e.state == stateExclusiveLocked) {
			st.Inc(StatEInvalLockOp)
			e.answer(s, ErrInval, false)
			return
		}
		if e.typ == RW {
			e.ref++ // local reentry
			st.Inc(StatAlreadyLocked)
			e.answer(s, ErrAlreadyLocked, true)
			return
		}
		s.cmd = CmdSharedExtend
		if excl {
			s.cmd = CmdExclusiveExtend
		}
		s.reentrant = true
		if e.typ == Fair {
			st.Inc(StatAlreadyLocked)
		}
		if s.via != callAsync {
			e.ref++ // async counts it on success only
		}
	default: // ticketed (FAIR only)
		if excl != (e.state == stateExclusiveTicketed) {
			st.Inc(StatETicket)
			e.answer(s, ErrTicket, false)
			return
		}
		s.cmd = CmdSharedTicketTrylock
		if excl {
			s.cmd = CmdExclusiveTicketTrylock
		}
	}
	s.arg = e.payload(s.cmd, expire, self)
}

// beginUnlock maps UNLOCK.
func (e *lockEntry) beginUnlock(s *step, self int32, st *Stats) {
	if e.ref > 1 {
		e.ref--
		st.Inc(StatAlreadyLocked)
		e.answer(s, ErrAlreadyLocked, false)
		return
	}
	switch {
	case e.state == stateExclusiveTicketed || e.state == stateSharedTicketed:
		e.state = stateInitialized // abandon the ticket, no message
		e.answer(s, Success, false)
		return
	case !e.held() || (e.ref == 0 && e.typ != Fair):
		st.Inc(StatAlreadyUnlocked)
		e.answer(s, ErrAlreadyUnlocked, false)
		return
	}
	s.cmd = CmdExclusiveUnlock
	if e.state == stateSharedLocked {
		s.cmd = CmdSharedUnlock
	}
	s.arg = e.payload(s.cmd, 0, self)
	// Zero the cache before sending, so that an unlock whose reply is lost
	// is not re-uploaded as a hold during recovery.
	e.value = LockState{}
	e.token = 0
	if s.via != callAsync {
		e.ref = 0
	}
}

// beginExtend maps EXTEND_LOCK_EXCLUSIVE / EXTEND_LOCK_SHARED.
func (e *lockEntry) beginExtend(s *step, expire uint32, self int32, st *Stats) {
	excl := s.op == OpExtendExclusive
	want := stateSharedLocked
	if excl {
		want = stateExclusiveLocked
	}
	if e.ref == 0 || e.typ == RW || e.state != want {
		st.Inc(StatEInvalLockOp)
		e.answer(s, ErrInval, false)
		return
	}
	s.cmd = CmdSharedExtend
	if excl {
		s.cmd = CmdExclusiveExtend
	}
	s.arg = e.payload(s.cmd, expire, self)
}

// abort settles s after a failed exchange (send failure, no reply, malformed
// reply, async timeout): everything begin changed is undone — a reentrant
// ref++, an unlock's ref-- and its zeroed cache and token (DLock
// leaves an unlock's cache zeroed). The caller returns the
// transport error. Call abort at most once, and never after finish.
func (e *lockEntry) abort(s *step) {
	if !s.local {
		e.restore(s)
	}
}

// finish applies the server's reply to s — its op_ret ret, the lock value
// val and the fencing token of a grant — and returns the operation's status
// (SEMANTICS.md §6.3). When s.fill is set afterwards the
// caller's result buffer receives s.result. For a local step it returns
// s.status and changes nothing.
//
// sync and batch entries are handled alike (DLock's batch differs); only
// sync counts NOT_READY. async: success and FAIR EAGAIN as
// sync, DLOCK_FAIL resets, every other code leaves the entry as before the
// request, and no reply counter is incremented.
func (e *lockEntry) finish(s *step, ret Status, val LockState, token uint64, st *Stats) Status {
	if s.local {
		return s.status
	}
	if ret == Success {
		return e.succeed(s, val, token)
	}
	if ret == ErrMoved {
		// Not executed: the lock's slot belongs to another shard now. The
		// entry stays as it was (a move loses no hold; a Router hands the
		// lock over to that shard).
		e.restore(s)
		return ret
	}
	async := s.via == callAsync
	switch s.cmd {
	case CmdExclusiveUnlock, CmdSharedUnlock:
		switch {
		case ret == ErrNotReady && !async:
			e.restore(s)
			if s.via == callSync {
				st.Inc(StatNotReady)
			}
			return ret
		case ret == ErrFail || (!async && e.typ != Fair):
			// ATOMIC/RW → reset and DLOCK_FAIL whatever the code.
			if e.typ != Fair && !async {
				st.Inc(StatEInvalLockRet)
			}
			e.reset()
			return ErrFail
		}
	case CmdExclusiveExtend, CmdSharedExtend:
		switch {
		case ret == ErrFail:
			e.reset()
			return ret
		case ret == ErrNotReady && !async:
			e.restore(s) // undoes a reentrant ref++
			if !s.reentrant && s.via == callSync {
				st.Inc(StatNotReady)
			}
			return ret
		case !async && e.typ == Atomic && !s.reentrant:
			e.reset() // ATOMIC: any other failure loses the hold
			return ret
		}
	default: // first trylock or ticket trylock
		switch {
		case ret == ErrAgain && e.typ == Fair:
			return e.queued(s, val)
		case ret == ErrTimeout && e.typ == Fair && s.retiresTicket:
			e.reset() // a later trylock must not present the retired ticket
			if !async {
				st.Inc(StatEInvalLockRet)
			}
			return ret
		case ret == ErrFail && (async || e.typ == Fair):
			e.reset()
			return ret
		}
	}
	// Any other code: returned unchanged, the entry as before the request.
	e.restore(s)
	if !async {
		st.Inc(StatEInvalLockRet)
	}
	return ret
}

// succeed applies a DLOCK_SUCCESS reply.
func (e *lockEntry) succeed(s *step, val LockState, token uint64) Status {
	e.value = val
	s.fill = true
	s.result = val
	switch s.cmd {
	case CmdExclusiveUnlock, CmdSharedUnlock:
		e.state = stateUnlocked
		e.ref = 0
		e.token = 0
		return Success
	case CmdExclusiveExtend, CmdSharedExtend:
		if !s.reentrant {
			return Success
		}
		if s.via == callAsync {
			e.ref++
		}
		return ErrAlreadyLocked
	}
	e.state = stateExclusiveLocked
	if s.cmd.Shared() {
		e.state = stateSharedLocked
	}
	e.ref++
	e.token = token
	return Success
}

// queued applies a FAIR DLOCK_EAGAIN reply to a trylock.
func (e *lockEntry) queued(s *step, val LockState) Status {
	s.fill = true
	switch s.cmd {
	case CmdExclusiveTrylock, CmdSharedTrylock:
		// The reply is the ticket.
		e.value = val
		e.state = stateExclusiveTicketed
		if s.cmd == CmdSharedTrylock {
			e.state = stateSharedTicketed
		}
		s.result = val
	default:
		// Still waiting: the server's value with the stored ticket in it.
		cur, t := val.Fair(), e.value.Fair()
		cur.Mx, cur.Ms, cur.Timeout = t.Mx, t.Ms, t.Timeout
		s.result = cur.State()
	}
	return ErrAgain
}

// report returns the lock value this entry uploads during failure recovery
// (SEMANTICS.md §6.4): zero when not held (or while an unlock is in flight); the
// cached value when held, for FAIR with the Rcnt field set to 1 for a shared
// hold and 0 otherwise; for a FAIR ticket the stored ticket with its ticket
// counter advanced by one (time_out is already the ticket's obtain time).
func (e *lockEntry) report() LockState {
	if e.value == (LockState{}) {
		return LockState{}
	}
	switch {
	case e.held() && e.typ != Fair:
		return e.value
	case e.typ != Fair:
		return LockState{}
	}
	f := e.value.Fair()
	f.RCnt = 0
	switch e.state {
	case stateExclusiveLocked:
	case stateSharedLocked:
		f.RCnt = 1
	case stateExclusiveTicketed:
		f.Mx++
	case stateSharedTicketed:
		f.Ms++
	default:
		return LockState{}
	}
	return f.State()
}
