package dlock

import (
	"fmt"
	"testing"
)

const (
	testSelf   int32  = 7
	testExpire uint32 = 30
	noStat            = Counter(255)
)

var (
	cachedAtomic = AtomicState{Owner: testSelf, Timeout: 1000}.State()
	cachedRW     = RWState{Timeout: 900, Owner: testSelf}.State()
	cachedFair   = FairState{Nx: 3, Ns: 4, Mx: 5, Ms: 6, Timeout: 1000, RMs: 2, RFlag: true, RCnt: 1}.State()
	replyValue   = LockState{0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 9, 10, 11, 12, 13, 14, 15, 16}
)

func cachedValue(t LockType) LockState {
	switch t {
	case Atomic:
		return cachedAtomic
	case RW:
		return cachedRW
	}
	return cachedFair
}

func atomicArg(expire uint32) LockState {
	return AtomicState{Owner: testSelf, Timeout: expire}.State()
}

func rwArg(owner int32, expire uint32) LockState {
	return RWState{Timeout: expire, Owner: owner}.State()
}

func fairArg(expire uint32) LockState {
	return FairState{Nx: 3, Ns: 4, Mx: 5, Ms: 6, Timeout: expire}.State()
}

// checkStats asserts that counter c is one and every other counter zero
// (c == noStat: all zero).
func checkStats(t testing.TB, st *Stats, c Counter) {
	t.Helper()
	for i, n := range st {
		want := uint64(0)
		if Counter(i) == c {
			want = 1
		}
		if n != want {
			t.Errorf("counter %v = %d, want %d", Counter(i), n, want)
		}
	}
}

// checkEntry asserts the entry's state, ref, cached value and token.
func checkEntry(t testing.TB, e *lockEntry, state localState, ref uint32, value LockState, token uint64) {
	t.Helper()
	if e.state != state || e.ref != ref || e.value != value || e.token != token {
		t.Errorf("entry = {%v ref %d value %x token %d}, want {%v ref %d value %x token %d}",
			e.state, e.ref, e.value, e.token, state, ref, value, token)
	}
}

// mapOut is the expected outcome of begin.
type mapOut struct {
	local     bool
	status    Status
	fill      bool
	cmd       Cmd
	arg       LockState
	reentrant bool
}

func answered(s Status, fill bool) mapOut        { return mapOut{local: true, status: s, fill: fill} }
func sends(c Cmd, arg LockState) mapOut          { return mapOut{cmd: c, arg: arg} }
func sendsReentrant(c Cmd, arg LockState) mapOut { return mapOut{cmd: c, arg: arg, reentrant: true} }

var (
	inval      = answered(ErrInval, false)
	alreadyUnl = answered(ErrAlreadyUnlocked, false)
	alreadyLck = answered(ErrAlreadyLocked, false)
)

// TestCacheMapping covers every cell of SEMANTICS.md §6.2's three tables (sync
// path, expire_time != 0).
func TestLockEntryMapping(t *testing.T) {
	const (
		ini = stateInitialized
		unl = stateUnlocked
		ex  = stateExclusiveLocked
		sh  = stateSharedLocked
		ext = stateExclusiveTicketed
		sht = stateSharedTicketed
	)
	tests := []struct {
		typ   LockType
		state localState
		ref   uint32
		op    Op
		want  mapOut
		// entry afterwards
		state2 localState
		ref2   uint32
		zeroed bool // cached value zeroed (an unlock sent)
		stat   Counter
	}{
		// ATOMIC
		{Atomic, ini, 0, OpLockExclusive, sends(CmdExclusiveTrylock, atomicArg(testExpire)), ini, 0, false, noStat},
		{Atomic, unl, 0, OpLockExclusive, sends(CmdExclusiveTrylock, atomicArg(testExpire)), unl, 0, false, noStat},
		{Atomic, ex, 1, OpLockExclusive, sendsReentrant(CmdExclusiveExtend, atomicArg(testExpire)), ex, 2, false, noStat},
		{Atomic, ini, 0, OpLockShared, inval, ini, 0, false, StatEInvalLockOp},
		{Atomic, ex, 1, OpLockShared, inval, ex, 1, false, StatEInvalLockOp},
		{Atomic, ini, 0, OpUnlock, alreadyUnl, ini, 0, false, StatAlreadyUnlocked},
		{Atomic, unl, 0, OpUnlock, alreadyUnl, unl, 0, false, StatAlreadyUnlocked},
		{Atomic, ex, 2, OpUnlock, alreadyLck, ex, 1, false, StatAlreadyLocked},
		{Atomic, ex, 1, OpUnlock, sends(CmdExclusiveUnlock, atomicArg(0)), ex, 0, true, noStat},
		{Atomic, ini, 0, OpExtendExclusive, inval, ini, 0, false, StatEInvalLockOp},
		{Atomic, unl, 0, OpExtendExclusive, inval, unl, 0, false, StatEInvalLockOp},
		{Atomic, ex, 1, OpExtendExclusive, sends(CmdExclusiveExtend, atomicArg(testExpire)), ex, 1, false, noStat},
		{Atomic, ini, 0, OpExtendShared, inval, ini, 0, false, StatEInvalLockOp},
		{Atomic, unl, 0, OpExtendShared, inval, unl, 0, false, StatEInvalLockOp},
		{Atomic, ex, 1, OpExtendShared, inval, ex, 1, false, StatEInvalLockOp},

		// RW
		{RW, ini, 0, OpLockExclusive, sends(CmdExclusiveTrylock, rwArg(testSelf, testExpire)), ini, 0, false, noStat},
		{RW, unl, 0, OpLockExclusive, sends(CmdExclusiveTrylock, rwArg(testSelf, testExpire)), unl, 0, false, noStat},
		{RW, ex, 1, OpLockExclusive, answered(ErrAlreadyLocked, true), ex, 2, false, StatAlreadyLocked},
		{RW, sh, 1, OpLockExclusive, inval, sh, 1, false, StatEInvalLockOp},
		{RW, ini, 0, OpLockShared, sends(CmdSharedTrylock, rwArg(0, testExpire)), ini, 0, false, noStat},
		{RW, unl, 0, OpLockShared, sends(CmdSharedTrylock, rwArg(0, testExpire)), unl, 0, false, noStat},
		{RW, ex, 1, OpLockShared, inval, ex, 1, false, StatEInvalLockOp},
		{RW, sh, 1, OpLockShared, answered(ErrAlreadyLocked, true), sh, 2, false, StatAlreadyLocked},
		{RW, ini, 0, OpUnlock, alreadyUnl, ini, 0, false, StatAlreadyUnlocked},
		{RW, unl, 0, OpUnlock, alreadyUnl, unl, 0, false, StatAlreadyUnlocked},
		{RW, ex, 2, OpUnlock, alreadyLck, ex, 1, false, StatAlreadyLocked},
		{RW, ex, 1, OpUnlock, sends(CmdExclusiveUnlock, rwArg(testSelf, 0)), ex, 0, true, noStat},
		{RW, sh, 3, OpUnlock, alreadyLck, sh, 2, false, StatAlreadyLocked},
		{RW, sh, 1, OpUnlock, sends(CmdSharedUnlock, rwArg(0, 0)), sh, 0, true, noStat},
		{RW, ini, 0, OpExtendExclusive, inval, ini, 0, false, StatEInvalLockOp},
		{RW, ex, 1, OpExtendExclusive, inval, ex, 1, false, StatEInvalLockOp},
		{RW, sh, 1, OpExtendExclusive, inval, sh, 1, false, StatEInvalLockOp},
		{RW, unl, 0, OpExtendShared, inval, unl, 0, false, StatEInvalLockOp},
		{RW, ex, 1, OpExtendShared, inval, ex, 1, false, StatEInvalLockOp},
		{RW, sh, 1, OpExtendShared, inval, sh, 1, false, StatEInvalLockOp},

		// FAIR
		{Fair, ini, 0, OpLockExclusive, sends(CmdExclusiveTrylock, fairArg(testExpire)), ini, 0, false, noStat},
		{Fair, unl, 0, OpLockExclusive, sends(CmdExclusiveTrylock, fairArg(testExpire)), unl, 0, false, noStat},
		{Fair, ex, 1, OpLockExclusive, sendsReentrant(CmdExclusiveExtend, fairArg(testExpire)), ex, 2, false, StatAlreadyLocked},
		{Fair, sh, 1, OpLockExclusive, inval, sh, 1, false, StatEInvalLockOp},
		{Fair, ext, 0, OpLockExclusive, sends(CmdExclusiveTicketTrylock, fairArg(testExpire)), ext, 0, false, noStat},
		{Fair, sht, 0, OpLockExclusive, answered(ErrTicket, false), sht, 0, false, StatETicket},

		{Fair, ini, 0, OpLockShared, sends(CmdSharedTrylock, fairArg(testExpire)), ini, 0, false, noStat},
		{Fair, unl, 0, OpLockShared, sends(CmdSharedTrylock, fairArg(testExpire)), unl, 0, false, noStat},
		{Fair, ex, 1, OpLockShared, inval, ex, 1, false, StatEInvalLockOp},
		{Fair, sh, 1, OpLockShared, sendsReentrant(CmdSharedExtend, fairArg(testExpire)), sh, 2, false, StatAlreadyLocked},
		{Fair, ext, 0, OpLockShared, answered(ErrTicket, false), ext, 0, false, StatETicket},
		{Fair, sht, 0, OpLockShared, sends(CmdSharedTicketTrylock, fairArg(testExpire)), sht, 0, false, noStat},

		{Fair, ini, 0, OpUnlock, alreadyUnl, ini, 0, false, StatAlreadyUnlocked},
		{Fair, unl, 0, OpUnlock, alreadyUnl, unl, 0, false, StatAlreadyUnlocked},
		{Fair, ex, 2, OpUnlock, alreadyLck, ex, 1, false, StatAlreadyLocked},
		{Fair, ex, 1, OpUnlock, sends(CmdExclusiveUnlock, fairArg(0)), ex, 0, true, noStat},
		{Fair, sh, 2, OpUnlock, alreadyLck, sh, 1, false, StatAlreadyLocked},
		{Fair, sh, 1, OpUnlock, sends(CmdSharedUnlock, fairArg(0)), sh, 0, true, noStat},
		{Fair, ext, 0, OpUnlock, answered(Success, false), ini, 0, false, noStat},
		{Fair, sht, 0, OpUnlock, answered(Success, false), ini, 0, false, noStat},

		{Fair, ini, 0, OpExtendExclusive, inval, ini, 0, false, StatEInvalLockOp},
		{Fair, unl, 0, OpExtendExclusive, inval, unl, 0, false, StatEInvalLockOp},
		{Fair, ex, 1, OpExtendExclusive, sends(CmdExclusiveExtend, fairArg(testExpire)), ex, 1, false, noStat},
		{Fair, sh, 1, OpExtendExclusive, inval, sh, 1, false, StatEInvalLockOp},
		{Fair, ext, 0, OpExtendExclusive, inval, ext, 0, false, StatEInvalLockOp},
		{Fair, sht, 0, OpExtendExclusive, inval, sht, 0, false, StatEInvalLockOp},

		{Fair, ini, 0, OpExtendShared, inval, ini, 0, false, StatEInvalLockOp},
		{Fair, unl, 0, OpExtendShared, inval, unl, 0, false, StatEInvalLockOp},
		{Fair, ex, 1, OpExtendShared, inval, ex, 1, false, StatEInvalLockOp},
		{Fair, sh, 1, OpExtendShared, sends(CmdSharedExtend, fairArg(testExpire)), sh, 1, false, noStat},
		{Fair, ext, 0, OpExtendShared, inval, ext, 0, false, StatEInvalLockOp},
		{Fair, sht, 0, OpExtendShared, inval, sht, 0, false, StatEInvalLockOp},
	}
	for _, tt := range tests {
		for _, via := range []callKind{callSync, callBatch} {
			name := fmt.Sprintf("%v/%v/ref%d/%v/via%d", tt.typ, tt.state, tt.ref, tt.op, via)
			t.Run(name, func(t *testing.T) {
				cached := cachedValue(tt.typ)
				e := &lockEntry{typ: tt.typ, state: tt.state, ref: tt.ref, value: cached, token: 99}
				var st Stats
				s := e.begin(tt.op, testExpire, testSelf, via, &st)
				got := mapOut{local: s.local, status: s.status, fill: s.fill, reentrant: s.reentrant}
				if !s.local {
					got.cmd, got.arg = s.cmd, s.arg
				}
				if got != tt.want {
					t.Errorf("begin = %+v, want %+v", got, tt.want)
				}
				if s.fill && s.result != cached {
					t.Errorf("result = %x, want the cached value %x", s.result, cached)
				}
				value, token := cached, uint64(99)
				if tt.zeroed {
					value, token = LockState{}, 0
				}
				checkEntry(t, e, tt.state2, tt.ref2, value, token)
				checkStats(t, &st, tt.stat)
				if s.local {
					// finish and abort leave a local step alone.
					if got := e.finish(&s, ErrFail, replyValue, 1, &st); got != tt.want.status {
						t.Errorf("finish(local) = %v, want %v", got, tt.want.status)
					}
					e.abort(&s)
					checkEntry(t, e, tt.state2, tt.ref2, value, token)
				}
			})
		}
	}
}

// TestCachePeek: trylock/lock with expire_time 0 fills the result from the
// cache and succeeds without the server, whatever the state; async
// refuses it (SEMANTICS.md §6.2). ATOMIC+SHARED is refused first.
func TestLockEntryPeek(t *testing.T) {
	for _, typ := range []LockType{Atomic, RW, Fair} {
		for state := stateInitialized; state <= stateSharedTicketed; state++ {
			for _, op := range []Op{OpLockExclusive, OpLockShared} {
				for _, via := range []callKind{callSync, callBatch, callAsync} {
					e := &lockEntry{typ: typ, state: state, ref: 1, value: replyValue}
					var st Stats
					s := e.begin(op, 0, testSelf, via, &st)
					want, fill, stat := Success, true, noStat
					switch {
					case via == callAsync:
						want, fill = ErrInval, false
					case typ == Atomic && op == OpLockShared:
						want, fill, stat = ErrInval, false, StatEInvalLockOp
					}
					if !s.local || s.status != want || s.fill != fill || (fill && s.result != replyValue) {
						t.Errorf("%v %v %v via %d: begin = local %v %v fill %v %x, want %v fill %v",
							typ, state, op, via, s.local, s.status, s.fill, s.result, want, fill)
					}
					checkEntry(t, e, state, 1, replyValue, 0)
					checkStats(t, &st, stat)
				}
			}
		}
	}
}

// TestCacheBeginInvalid covers ops and types outside the enums.
func TestLockEntryBeginInvalid(t *testing.T) {
	var st Stats
	e := &lockEntry{typ: Fair}
	if s := e.begin(Op(5), testExpire, testSelf, callSync, &st); !s.local || s.status != ErrInval {
		t.Errorf("begin(Op(5)) = %+v, want local EINVAL", s)
	}
	checkStats(t, &st, noStat)
	e = &lockEntry{typ: LockType(3)}
	if s := e.begin(OpLockExclusive, testExpire, testSelf, callSync, &st); !s.local || s.status != ErrInval {
		t.Errorf("begin on a bad type = %+v, want local EINVAL", s)
	}
	checkStats(t, &st, StatEInvalLockType)
	if got := localState(9).String(); got != "localState(?)" {
		t.Errorf("localState(9).String() = %q", got)
	}
}

// TestCacheAsyncBegin: the async path maps like sync but counts a reentrant
// hold only on success and keeps ref during an unlock in flight (SEMANTICS.md §6.3).
func TestLockEntryAsyncBegin(t *testing.T) {
	var st Stats
	e := &lockEntry{typ: Atomic, state: stateExclusiveLocked, ref: 1, value: cachedAtomic, token: 5}
	s := e.begin(OpLockExclusive, testExpire, testSelf, callAsync, &st)
	if s.local || s.cmd != CmdExclusiveExtend || !s.reentrant || s.arg != atomicArg(testExpire) {
		t.Errorf("async reentrant begin = %+v", s)
	}
	checkEntry(t, e, stateExclusiveLocked, 1, cachedAtomic, 5)

	s = e.begin(OpUnlock, 0, testSelf, callAsync, &st)
	if s.local || s.cmd != CmdExclusiveUnlock || s.arg != atomicArg(0) {
		t.Errorf("async unlock begin = %+v", s)
	}
	checkEntry(t, e, stateExclusiveLocked, 1, LockState{}, 0)
	checkStats(t, &st, noStat)
}

// reply is one server answer fed to finish.
type reply struct {
	ret   Status
	val   LockState
	token uint64
}

var (
	ticketFair = FairState{Nx: 3, Ns: 4, Mx: 5, Ms: 6, Timeout: 1000}.State() // a stored ticket
	serverFair = FairState{Nx: 1, Ns: 2, Mx: 8, Ms: 9, Timeout: 2000, RCnt: 3}.State()
	mixedFair  = FairState{Nx: 1, Ns: 2, Mx: 5, Ms: 6, Timeout: 1000, RCnt: 3}.State()
)

// TestCacheReply covers every reply branch of SEMANTICS.md §6.3 (lock,
// unlock, extend, async).
func TestLockEntryReply(t *testing.T) {
	const (
		ini = stateInitialized
		unl = stateUnlocked
		ex  = stateExclusiveLocked
		sh  = stateSharedLocked
		ext = stateExclusiveTicketed
		sht = stateSharedTicketed
	)
	var zero LockState
	tests := []struct {
		name  string
		typ   LockType
		state localState
		ref   uint32
		op    Op
		via   callKind
		r     reply
		// want
		status Status
		result *LockState // nil: not filled
		state2 localState
		ref2   uint32
		value2 LockState
		token2 uint64
		stat   Counter
	}{
		// ATOMIC/RW first trylock.
		{"atomic trylock success", Atomic, ini, 0, OpLockExclusive, callSync, reply{Success, replyValue, 42},
			Success, &replyValue, ex, 1, replyValue, 42, noStat},
		{"atomic trylock fail", Atomic, unl, 0, OpLockExclusive, callSync, reply{ErrFail, replyValue, 0},
			ErrFail, nil, unl, 0, cachedAtomic, 9, StatEInvalLockRet},
		{"atomic trylock not ready", Atomic, ini, 0, OpLockExclusive, callSync, reply{ErrNotReady, replyValue, 0},
			ErrNotReady, nil, ini, 0, cachedAtomic, 9, StatEInvalLockRet},
		{"atomic trylock einval", Atomic, ini, 0, OpLockExclusive, callBatch, reply{ErrInval, replyValue, 0},
			ErrInval, nil, ini, 0, cachedAtomic, 9, StatEInvalLockRet},
		{"rw ex trylock success", RW, ini, 0, OpLockExclusive, callSync, reply{Success, replyValue, 42},
			Success, &replyValue, ex, 1, replyValue, 42, noStat},
		{"rw sh trylock success", RW, unl, 0, OpLockShared, callBatch, reply{Success, replyValue, 42},
			Success, &replyValue, sh, 1, replyValue, 42, noStat},
		{"rw sh trylock fail", RW, ini, 0, OpLockShared, callSync, reply{ErrFail, replyValue, 0},
			ErrFail, nil, ini, 0, cachedRW, 9, StatEInvalLockRet},
		{"rw trylock eagain", RW, ini, 0, OpLockShared, callSync, reply{ErrAgain, replyValue, 0},
			ErrAgain, nil, ini, 0, cachedRW, 9, StatEInvalLockRet},

		// Reentrant extend.
		{"atomic reentrant success", Atomic, ex, 1, OpLockExclusive, callSync, reply{Success, replyValue, 77},
			ErrAlreadyLocked, &replyValue, ex, 2, replyValue, 9, noStat},
		{"atomic reentrant fail", Atomic, ex, 1, OpLockExclusive, callSync, reply{ErrFail, replyValue, 0},
			ErrFail, nil, ini, 0, cachedAtomic, 0, noStat},
		{"atomic reentrant not ready", Atomic, ex, 1, OpLockExclusive, callSync, reply{ErrNotReady, replyValue, 0},
			ErrNotReady, nil, ex, 1, cachedAtomic, 9, noStat},
		{"atomic reentrant einval", Atomic, ex, 1, OpLockExclusive, callSync, reply{ErrInval, replyValue, 0},
			ErrInval, nil, ex, 1, cachedAtomic, 9, StatEInvalLockRet},
		{"batch reentrant not ready undoes ref", Atomic, ex, 1, OpLockExclusive, callBatch, reply{ErrNotReady, replyValue, 0},
			ErrNotReady, nil, ex, 1, cachedAtomic, 9, noStat},
		{"batch reentrant success", Atomic, ex, 1, OpLockExclusive, callBatch, reply{Success, replyValue, 0},
			ErrAlreadyLocked, &replyValue, ex, 2, replyValue, 9, noStat},
		{"fair reentrant success", Fair, sh, 1, OpLockShared, callSync, reply{Success, serverFair, 0},
			ErrAlreadyLocked, &serverFair, sh, 2, serverFair, 9, StatAlreadyLocked},
		{"fair reentrant fail", Fair, ex, 1, OpLockExclusive, callSync, reply{ErrFail, serverFair, 0},
			ErrFail, nil, ini, 0, cachedFair, 0, StatAlreadyLocked},
		{"fair reentrant not ready", Fair, ex, 2, OpLockExclusive, callSync, reply{ErrNotReady, serverFair, 0},
			ErrNotReady, nil, ex, 2, cachedFair, 9, StatAlreadyLocked},
		{"fair reentrant eagain is unexpected", Fair, ex, 1, OpLockExclusive, callSync, reply{ErrAgain, serverFair, 0},
			ErrAgain, nil, ex, 1, cachedFair, 9, StatAlreadyLocked}, // plus EINVAL_LOCK_RET, checked below

		// FAIR first trylock and ticket trylock.
		{"fair ex trylock success", Fair, ini, 0, OpLockExclusive, callSync, reply{Success, serverFair, 42},
			Success, &serverFair, ex, 1, serverFair, 42, noStat},
		{"fair sh trylock success", Fair, unl, 0, OpLockShared, callSync, reply{Success, serverFair, 42},
			Success, &serverFair, sh, 1, serverFair, 42, noStat},
		{"fair ex trylock queued", Fair, ini, 0, OpLockExclusive, callSync, reply{ErrAgain, ticketFair, 0},
			ErrAgain, &ticketFair, ext, 0, ticketFair, 9, noStat},
		{"fair sh trylock queued", Fair, unl, 0, OpLockShared, callBatch, reply{ErrAgain, ticketFair, 0},
			ErrAgain, &ticketFair, sht, 0, ticketFair, 9, noStat},
		{"fair trylock queue full", Fair, unl, 0, OpLockShared, callSync, reply{ErrFail, serverFair, 0},
			ErrFail, nil, ini, 0, cachedFair, 0, noStat},
		{"fair trylock not ready", Fair, ini, 0, OpLockExclusive, callSync, reply{ErrNotReady, serverFair, 0},
			ErrNotReady, nil, ini, 0, cachedFair, 9, StatEInvalLockRet},
		{"fair ex ticket success", Fair, ext, 0, OpLockExclusive, callSync, reply{Success, serverFair, 43},
			Success, &serverFair, ex, 1, serverFair, 43, noStat},
		{"fair sh ticket success", Fair, sht, 0, OpLockShared, callBatch, reply{Success, serverFair, 43},
			Success, &serverFair, sh, 1, serverFair, 43, noStat},
		{"fair ex ticket still queued", Fair, ext, 0, OpLockExclusive, callSync, reply{ErrAgain, serverFair, 0},
			ErrAgain, &mixedFair, ext, 0, cachedFair, 9, noStat},
		{"fair sh ticket still queued", Fair, sht, 0, OpLockShared, callSync, reply{ErrAgain, serverFair, 0},
			ErrAgain, &mixedFair, sht, 0, cachedFair, 9, noStat},
		{"fair ticket passed", Fair, ext, 0, OpLockExclusive, callSync, reply{ErrFail, serverFair, 0},
			ErrFail, nil, ini, 0, cachedFair, 0, noStat},
		{"fair ticket not ready", Fair, sht, 0, OpLockShared, callSync, reply{ErrNotReady, serverFair, 0},
			ErrNotReady, nil, sht, 0, cachedFair, 9, StatEInvalLockRet},
		{"fair ticket einval", Fair, sht, 0, OpLockShared, callSync, reply{ErrInval, serverFair, 0},
			ErrInval, nil, sht, 0, cachedFair, 9, StatEInvalLockRet},

		// Unlock.
		{"atomic unlock success", Atomic, ex, 1, OpUnlock, callSync, reply{Success, zero, 0},
			Success, &zero, unl, 0, zero, 0, noStat},
		{"atomic unlock not ready", Atomic, ex, 1, OpUnlock, callSync, reply{ErrNotReady, zero, 0},
			ErrNotReady, nil, ex, 1, cachedAtomic, 9, StatNotReady},
		{"atomic unlock fail", Atomic, ex, 1, OpUnlock, callSync, reply{ErrFail, replyValue, 0},
			ErrFail, nil, ini, 0, zero, 0, StatEInvalLockRet},
		{"atomic unlock einval", Atomic, ex, 1, OpUnlock, callSync, reply{ErrInval, replyValue, 0},
			ErrFail, nil, ini, 0, zero, 0, StatEInvalLockRet},
		{"rw sh unlock success", RW, sh, 1, OpUnlock, callSync, reply{Success, replyValue, 0},
			Success, &replyValue, unl, 0, replyValue, 0, noStat},
		{"rw ex unlock fail", RW, ex, 1, OpUnlock, callSync, reply{ErrFail, replyValue, 0},
			ErrFail, nil, ini, 0, zero, 0, StatEInvalLockRet},
		{"fair unlock success", Fair, ex, 1, OpUnlock, callSync, reply{Success, serverFair, 0},
			Success, &serverFair, unl, 0, serverFair, 0, noStat},
		{"fair unlock fail", Fair, sh, 1, OpUnlock, callSync, reply{ErrFail, serverFair, 0},
			ErrFail, nil, ini, 0, zero, 0, noStat},
		{"fair unlock not ready", Fair, sh, 1, OpUnlock, callSync, reply{ErrNotReady, serverFair, 0},
			ErrNotReady, nil, sh, 1, cachedFair, 9, StatNotReady},
		{"fair unlock einval", Fair, ex, 1, OpUnlock, callSync, reply{ErrInval, serverFair, 0},
			ErrInval, nil, ex, 1, cachedFair, 9, StatEInvalLockRet},
		{"batch unlock success", RW, ex, 1, OpUnlock, callBatch, reply{Success, replyValue, 0},
			Success, &replyValue, unl, 0, replyValue, 0, noStat},
		{"batch unlock not ready", Atomic, ex, 1, OpUnlock, callBatch, reply{ErrNotReady, zero, 0},
			ErrNotReady, nil, ex, 1, cachedAtomic, 9, noStat},
		{"batch unlock fail resets", Atomic, ex, 1, OpUnlock, callBatch, reply{ErrFail, zero, 0},
			ErrFail, nil, ini, 0, zero, 0, StatEInvalLockRet},

		// Extend.
		{"atomic extend success", Atomic, ex, 1, OpExtendExclusive, callSync, reply{Success, replyValue, 0},
			Success, &replyValue, ex, 1, replyValue, 9, noStat},
		{"atomic extend not ready", Atomic, ex, 1, OpExtendExclusive, callSync, reply{ErrNotReady, replyValue, 0},
			ErrNotReady, nil, ex, 1, cachedAtomic, 9, StatNotReady},
		{"atomic extend fail", Atomic, ex, 1, OpExtendExclusive, callSync, reply{ErrFail, replyValue, 0},
			ErrFail, nil, ini, 0, cachedAtomic, 0, noStat},
		{"atomic extend einval", Atomic, ex, 3, OpExtendExclusive, callSync, reply{ErrInval, replyValue, 0},
			ErrInval, nil, ini, 0, cachedAtomic, 0, noStat},
		{"fair extend success", Fair, sh, 1, OpExtendShared, callSync, reply{Success, serverFair, 0},
			Success, &serverFair, sh, 1, serverFair, 9, noStat},
		{"fair extend fail", Fair, ex, 2, OpExtendExclusive, callSync, reply{ErrFail, serverFair, 0},
			ErrFail, nil, ini, 0, cachedFair, 0, noStat},
		{"fair extend not ready", Fair, ex, 1, OpExtendExclusive, callSync, reply{ErrNotReady, serverFair, 0},
			ErrNotReady, nil, ex, 1, cachedFair, 9, StatNotReady},
		{"fair extend einval", Fair, ex, 1, OpExtendExclusive, callSync, reply{ErrInval, serverFair, 0},
			ErrInval, nil, ex, 1, cachedFair, 9, StatEInvalLockRet},
		{"batch extend not ready", Fair, ex, 1, OpExtendExclusive, callBatch, reply{ErrNotReady, serverFair, 0},
			ErrNotReady, nil, ex, 1, cachedFair, 9, noStat},
		{"batch extend fail resets", Atomic, ex, 1, OpExtendExclusive, callBatch, reply{ErrFail, replyValue, 0},
			ErrFail, nil, ini, 0, cachedAtomic, 0, noStat},

		// Async results.
		{"async trylock success", Atomic, ini, 0, OpLockExclusive, callAsync, reply{Success, replyValue, 42},
			Success, &replyValue, ex, 1, replyValue, 42, noStat},
		{"async trylock fail", Atomic, unl, 0, OpLockExclusive, callAsync, reply{ErrFail, replyValue, 0},
			ErrFail, nil, ini, 0, cachedAtomic, 0, noStat},
		{"async trylock not ready", RW, unl, 0, OpLockShared, callAsync, reply{ErrNotReady, replyValue, 0},
			ErrNotReady, nil, unl, 0, cachedRW, 9, noStat},
		{"async fair queued", Fair, ini, 0, OpLockShared, callAsync, reply{ErrAgain, ticketFair, 0},
			ErrAgain, &ticketFair, sht, 0, ticketFair, 9, noStat},
		{"async fair ticket still queued", Fair, ext, 0, OpLockExclusive, callAsync, reply{ErrAgain, serverFair, 0},
			ErrAgain, &mixedFair, ext, 0, cachedFair, 9, noStat},
		{"async reentrant success", Atomic, ex, 1, OpLockExclusive, callAsync, reply{Success, replyValue, 0},
			ErrAlreadyLocked, &replyValue, ex, 2, replyValue, 9, noStat},
		{"async reentrant not ready", Fair, ex, 1, OpLockExclusive, callAsync, reply{ErrNotReady, serverFair, 0},
			ErrNotReady, nil, ex, 1, cachedFair, 9, StatAlreadyLocked},
		{"async reentrant fail", Fair, sh, 1, OpLockShared, callAsync, reply{ErrFail, serverFair, 0},
			ErrFail, nil, ini, 0, cachedFair, 0, StatAlreadyLocked},
		{"async unlock success", RW, ex, 1, OpUnlock, callAsync, reply{Success, replyValue, 0},
			Success, &replyValue, unl, 0, replyValue, 0, noStat},
		{"async unlock not ready", Atomic, ex, 1, OpUnlock, callAsync, reply{ErrNotReady, replyValue, 0},
			ErrNotReady, nil, ex, 1, cachedAtomic, 9, noStat},
		{"async unlock einval", Atomic, ex, 1, OpUnlock, callAsync, reply{ErrInval, replyValue, 0},
			ErrInval, nil, ex, 1, cachedAtomic, 9, noStat},
		{"async unlock fail", Atomic, ex, 1, OpUnlock, callAsync, reply{ErrFail, replyValue, 0},
			ErrFail, nil, ini, 0, zero, 0, noStat},
		{"async extend success", Fair, ex, 1, OpExtendExclusive, callAsync, reply{Success, serverFair, 0},
			Success, &serverFair, ex, 1, serverFair, 9, noStat},
		{"async extend einval", Atomic, ex, 1, OpExtendExclusive, callAsync, reply{ErrInval, replyValue, 0},
			ErrInval, nil, ex, 1, cachedAtomic, 9, noStat},
		{"async extend fail", Atomic, ex, 1, OpExtendExclusive, callAsync, reply{ErrFail, replyValue, 0},
			ErrFail, nil, ini, 0, cachedAtomic, 0, noStat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := cachedValue(tt.typ)
			if tt.state == stateExclusiveTicketed || tt.state == stateSharedTicketed {
				value = ticketFair
			}
			e := &lockEntry{typ: tt.typ, state: tt.state, ref: tt.ref, value: value, token: 9}
			var st Stats
			s := e.begin(tt.op, testExpire, testSelf, tt.via, &st)
			if s.local {
				t.Fatalf("begin answered locally: %v", s.status)
			}
			got := e.finish(&s, tt.r.ret, tt.r.val, tt.r.token, &st)
			if got != tt.status {
				t.Errorf("finish = %v, want %v", got, tt.status)
			}
			switch {
			case tt.result == nil && s.fill:
				t.Errorf("result filled with %x, want untouched", s.result)
			case tt.result != nil && !s.fill:
				t.Errorf("result not filled, want %x", *tt.result)
			case tt.result != nil && s.result != *tt.result:
				t.Errorf("result = %x, want %x", s.result, *tt.result)
			}
			value2 := tt.value2
			if value2 == cachedFair && value == ticketFair {
				value2 = ticketFair
			}
			checkEntry(t, e, tt.state2, tt.ref2, value2, tt.token2)
			if tt.name == "fair reentrant eagain is unexpected" {
				if st[StatEInvalLockRet] != 1 {
					t.Errorf("EINVAL_LOCK_RET = %d, want 1", st[StatEInvalLockRet])
				}
				st[StatEInvalLockRet] = 0
			}
			checkStats(t, &st, tt.stat)
		})
	}
}

// TestCacheAbort: a failed exchange undoes what begin changed, an unlock's
// cleared value included (SEMANTICS.md §6.3, Failed exchanges).
func TestLockEntryAbort(t *testing.T) {
	tests := []struct {
		name  string
		typ   LockType
		state localState
		ref   uint32
		op    Op
		via   callKind
	}{
		{"reentrant", Atomic, stateExclusiveLocked, 1, OpLockExclusive, callSync},
		{"batch reentrant", Fair, stateSharedLocked, 1, OpLockShared, callBatch},
		{"async reentrant", Fair, stateExclusiveLocked, 1, OpLockExclusive, callAsync},
		{"unlock", Fair, stateExclusiveLocked, 1, OpUnlock, callSync},
		{"batch unlock", RW, stateSharedLocked, 1, OpUnlock, callBatch},
		{"async unlock", Atomic, stateExclusiveLocked, 1, OpUnlock, callAsync},
		{"trylock", Atomic, stateUnlocked, 0, OpLockExclusive, callSync},
		{"ticket trylock", Fair, stateExclusiveTicketed, 0, OpLockExclusive, callSync},
		{"extend", Atomic, stateExclusiveLocked, 2, OpExtendExclusive, callSync},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := cachedValue(tt.typ)
			e := &lockEntry{typ: tt.typ, state: tt.state, ref: tt.ref, value: value, token: 9}
			s := e.begin(tt.op, testExpire, testSelf, tt.via, nil)
			if s.local {
				t.Fatalf("begin answered locally: %v", s.status)
			}
			e.abort(&s)
			checkEntry(t, e, tt.state, tt.ref, value, 9)
		})
	}
}

// TestLockEntryMoved: a reply "moved" (the lock's slot belongs to another
// shard now: nothing was executed) leaves the entry as it was, whatever the
// operation — an Atomic extend included, whose other failures lose the
// hold.
func TestLockEntryMoved(t *testing.T) {
	tests := []struct {
		name  string
		typ   LockType
		state localState
		ref   uint32
		op    Op
		via   callKind
	}{
		{"extend", Atomic, stateExclusiveLocked, 1, OpExtendExclusive, callSync},
		{"batch extend", Fair, stateSharedLocked, 1, OpExtendShared, callBatch},
		{"reentrant", Atomic, stateExclusiveLocked, 1, OpLockExclusive, callSync},
		{"trylock", RW, stateUnlocked, 0, OpLockExclusive, callSync},
		{"async trylock", Atomic, stateInitialized, 0, OpLockExclusive, callAsync},
		{"ticket trylock", Fair, stateExclusiveTicketed, 0, OpLockExclusive, callSync},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			value := cachedValue(tt.typ)
			e := &lockEntry{typ: tt.typ, state: tt.state, ref: tt.ref, value: value, token: 9}
			var st Stats
			s := e.begin(tt.op, testExpire, testSelf, tt.via, &st)
			if s.local {
				t.Fatalf("begin answered locally: %v", s.status)
			}
			if got := e.finish(&s, ErrMoved, LockState{}, 0, &st); got != ErrMoved {
				t.Fatalf("finish: %v, want ErrMoved", got)
			}
			checkEntry(t, e, tt.state, tt.ref, value, 9)
		})
	}
}

// TestCacheReport: the value uploaded during recovery (SEMANTICS.md §6.4).
func TestLockEntryReport(t *testing.T) {
	heldFair := FairState{Nx: 3, Ns: 4, Mx: 5, Ms: 6, Timeout: 1000, RMs: 2, RFlag: true}
	sharedFair := heldFair
	sharedFair.RCnt = 1
	exTicket := heldFair
	exTicket.Mx = 6
	shTicket := heldFair
	shTicket.Ms = 7
	var zero LockState
	tests := []struct {
		typ   LockType
		state localState
		value LockState
		want  LockState
	}{
		{Atomic, stateInitialized, cachedAtomic, zero},
		{Atomic, stateUnlocked, cachedAtomic, zero},
		{Atomic, stateExclusiveLocked, cachedAtomic, cachedAtomic},
		{Atomic, stateExclusiveLocked, zero, zero}, // unlock in flight
		{RW, stateExclusiveLocked, cachedRW, cachedRW},
		{RW, stateSharedLocked, cachedRW, cachedRW},
		{RW, stateUnlocked, cachedRW, zero},
		{Fair, stateInitialized, cachedFair, zero},
		{Fair, stateUnlocked, cachedFair, zero},
		{Fair, stateExclusiveLocked, cachedFair, heldFair.State()},
		{Fair, stateSharedLocked, cachedFair, sharedFair.State()},
		{Fair, stateSharedLocked, zero, zero}, // unlock in flight
		{Fair, stateExclusiveTicketed, cachedFair, exTicket.State()},
		{Fair, stateSharedTicketed, cachedFair, shTicket.State()},
	}
	for _, tt := range tests {
		e := &lockEntry{typ: tt.typ, state: tt.state, ref: 1, value: tt.value}
		if got := e.report(); got != tt.want {
			t.Errorf("%v %v report() = %x, want %x", tt.typ, tt.state, got, tt.want)
		}
	}
}

// client is one client's entry in a scenario.
type scenarioClient struct {
	id int32
	e  lockEntry
}

// scenarioStep is one call of a scenario: the op and expire the client's
// caller passes, the command the cache must send (or none: local), the reply
// the test feeds back, and the status the caller must see.
type scenarioStep struct {
	c      int // client index
	op     Op
	expire uint32
	cmd    Cmd       // when !local
	arg    LockState // when !local
	local  bool
	r      reply
	want   Status
}

func runScenario(t *testing.T, typ LockType, steps []scenarioStep) []scenarioClient {
	t.Helper()
	cs := make([]scenarioClient, 3)
	for i := range cs {
		cs[i] = scenarioClient{id: int32(i + 1), e: lockEntry{id: 1, typ: typ}}
	}
	for i, sp := range steps {
		c := &cs[sp.c]
		s := c.e.begin(sp.op, sp.expire, c.id, callSync, nil)
		got := s.status
		switch {
		case s.local != sp.local:
			t.Fatalf("step %d: c%d %v: local = %v (status %v, cmd %v), want %v",
				i, sp.c, sp.op, s.local, s.status, s.cmd, sp.local)
		case !s.local:
			if s.cmd != sp.cmd || s.arg != sp.arg {
				t.Fatalf("step %d: c%d %v: sends %v %x, want %v %x", i, sp.c, sp.op, s.cmd, s.arg, sp.cmd, sp.arg)
			}
			got = c.e.finish(&s, sp.r.ret, sp.r.val, sp.r.token, nil)
		}
		if got != sp.want {
			t.Fatalf("step %d: c%d %v: status %v, want %v", i, sp.c, sp.op, got, sp.want)
		}
	}
	return cs
}

func fs(nx, ns, mx, ms uint16, timeout uint32) LockState {
	return FairState{Nx: nx, Ns: ns, Mx: mx, Ms: ms, Timeout: timeout}.State()
}

// TestCacheScenarioFair1 is the client side of SEMANTICS.md §5.7 sequence
// 1 (E = 5, the server's clock at 1000).
func TestLockEntryScenarioFair1(t *testing.T) {
	held := fs(0, 0, 1, 0, 1005)
	cs := runScenario(t, Fair, []scenarioStep{
		{c: 0, op: OpLockExclusive, expire: 5, cmd: CmdExclusiveTrylock, arg: fs(0, 0, 0, 0, 5),
			r: reply{Success, held, 1}, want: Success},
		{c: 0, op: OpLockExclusive, expire: 5, cmd: CmdExclusiveExtend, arg: fs(0, 0, 1, 0, 5),
			r: reply{Success, held, 0}, want: ErrAlreadyLocked},
		{c: 0, op: OpLockExclusive, expire: 0, local: true, want: Success}, // peek
		{c: 0, op: OpExtendShared, expire: 5, local: true, want: ErrInval},
		{c: 0, op: OpExtendExclusive, expire: 70, cmd: CmdExclusiveExtend, arg: fs(0, 0, 1, 0, 70),
			r: reply{Success, fs(0, 0, 1, 0, 1070), 0}, want: Success},
		{c: 0, op: OpExtendExclusive, expire: 0, cmd: CmdExclusiveExtend, arg: fs(0, 0, 1, 0, 0),
			r: reply{Success, fs(0, 0, 1, 0, 1070), 0}, want: Success},
		{c: 0, op: OpLockShared, expire: 5, local: true, want: ErrInval},
		{c: 1, op: OpLockShared, expire: 5, cmd: CmdSharedTrylock, arg: fs(0, 0, 0, 0, 5),
			r: reply{ErrAgain, fs(0, 0, 1, 0, 1001), 0}, want: ErrAgain},
		{c: 2, op: OpLockExclusive, expire: 5, cmd: CmdExclusiveTrylock, arg: fs(0, 0, 0, 0, 5),
			r: reply{ErrAgain, fs(0, 0, 1, 1, 1001), 0}, want: ErrAgain},
		{c: 0, op: OpUnlock, local: true, want: ErrAlreadyLocked},
		{c: 0, op: OpUnlock, cmd: CmdExclusiveUnlock, arg: fs(0, 0, 1, 0, 0),
			r: reply{Success, fs(1, 0, 2, 1, 1004), 0}, want: Success},
		{c: 1, op: OpLockShared, expire: 5, cmd: CmdSharedTicketTrylock, arg: fs(0, 0, 1, 0, 5),
			r: reply{Success, fs(1, 0, 2, 1, 1007), 2}, want: Success},
		{c: 1, op: OpUnlock, cmd: CmdSharedUnlock, arg: fs(1, 0, 2, 1, 0),
			r: reply{Success, fs(1, 1, 2, 1, 1010), 0}, want: Success},
		{c: 2, op: OpUnlock, local: true, want: Success}, // ticket abandoned
	})
	checkEntry(t, &cs[0].e, stateUnlocked, 0, fs(1, 0, 2, 1, 1004), 0)
	checkEntry(t, &cs[1].e, stateUnlocked, 0, fs(1, 1, 2, 1, 1010), 0)
	checkEntry(t, &cs[2].e, stateInitialized, 0, fs(0, 0, 1, 1, 1001), 0)
}

// TestCacheScenarioFair2 is SEMANTICS.md §5.7 sequence 2 (E = 1): timeout grabs make
// the old holders' unlocks fail.
func TestLockEntryScenarioFair2(t *testing.T) {
	grabbed := FairState{Nx: 1, Ns: 0, Mx: 1, Ms: 1, Timeout: 1003, RFlag: true, RCnt: 1}.State()
	cs := runScenario(t, Fair, []scenarioStep{
		{c: 0, op: OpLockExclusive, expire: 1, cmd: CmdExclusiveTrylock, arg: fs(0, 0, 0, 0, 1),
			r: reply{Success, fs(0, 0, 1, 0, 1001), 1}, want: Success},
		{c: 1, op: OpLockShared, expire: 1, cmd: CmdSharedTrylock, arg: fs(0, 0, 0, 0, 1),
			r: reply{ErrAgain, fs(0, 0, 1, 0, 1000), 0}, want: ErrAgain},
		// 2 s later: c1's ticket grabs the lock.
		{c: 1, op: OpLockShared, expire: 1, cmd: CmdSharedTicketTrylock, arg: fs(0, 0, 1, 0, 1),
			r: reply{Success, grabbed, 2}, want: Success},
		{c: 0, op: OpUnlock, cmd: CmdExclusiveUnlock, arg: fs(0, 0, 1, 0, 0),
			r: reply{ErrFail, fs(0, 0, 1, 0, 0), 0}, want: ErrFail},
		{c: 0, op: OpLockExclusive, expire: 1, cmd: CmdExclusiveTrylock, arg: fs(0, 0, 0, 0, 1),
			r: reply{ErrAgain, fs(1, 0, 1, 1, 1002), 0}, want: ErrAgain},
		// 2 s later: c0's ticket grabs it back.
		{c: 0, op: OpLockExclusive, expire: 1, cmd: CmdExclusiveTicketTrylock, arg: fs(1, 0, 1, 1, 1),
			r: reply{Success, fs(1, 1, 2, 1, 1005), 3}, want: Success},
		{c: 1, op: OpUnlock, cmd: CmdSharedUnlock, arg: fs(1, 0, 1, 1, 0),
			r: reply{ErrFail, fs(1, 0, 1, 1, 0), 0}, want: ErrFail},
		{c: 0, op: OpUnlock, cmd: CmdExclusiveUnlock, arg: fs(1, 1, 2, 1, 0),
			r: reply{Success, fs(2, 1, 2, 1, 1006), 0}, want: Success},
	})
	checkEntry(t, &cs[0].e, stateUnlocked, 0, fs(2, 1, 2, 1, 1006), 0)
	checkEntry(t, &cs[1].e, stateInitialized, 0, LockState{}, 0)
}

// TestCacheScenarioAtomic is SEMANTICS.md §5.7 sequence 3, atomic (E = 1).
func TestLockEntryScenarioAtomic(t *testing.T) {
	a := func(owner int32, timeout uint32) LockState {
		return AtomicState{Owner: owner, Timeout: timeout}.State()
	}
	cs := runScenario(t, Atomic, []scenarioStep{
		{c: 0, op: OpLockExclusive, expire: 1, cmd: CmdExclusiveTrylock, arg: a(1, 1),
			r: reply{Success, a(1, 1001), 1}, want: Success},
		// 2 s later c0's lease has run out.
		{c: 1, op: OpLockExclusive, expire: 1, cmd: CmdExclusiveTrylock, arg: a(2, 1),
			r: reply{Success, a(2, 1003), 2}, want: Success},
		{c: 0, op: OpUnlock, cmd: CmdExclusiveUnlock, arg: a(1, 0),
			r: reply{ErrFail, a(2, 1003), 0}, want: ErrFail},
		// 2 s later.
		{c: 0, op: OpLockExclusive, expire: 5, cmd: CmdExclusiveTrylock, arg: a(1, 5),
			r: reply{Success, a(1, 1010), 3}, want: Success},
		{c: 1, op: OpExtendExclusive, expire: 1, cmd: CmdExclusiveExtend, arg: a(2, 1),
			r: reply{ErrFail, a(1, 1010), 0}, want: ErrFail},
		{c: 1, op: OpUnlock, local: true, want: ErrAlreadyUnlocked},
	})
	checkEntry(t, &cs[0].e, stateExclusiveLocked, 1, a(1, 1010), 3)
	checkEntry(t, &cs[1].e, stateInitialized, 0, a(2, 1003), 0)
}

// TestCacheScenarioFairLockTimeout: a blocking fair lock keeps its ticket
// while it polls and after it gives up (C lock(), SEMANTICS.md §6.3); unlock abandons it.
func TestLockEntryScenarioFairLockTimeout(t *testing.T) {
	steps := []scenarioStep{
		{c: 0, op: OpLockExclusive, expire: 5, cmd: CmdExclusiveTrylock, arg: fs(0, 0, 0, 0, 5),
			r: reply{Success, fs(0, 0, 1, 0, 1005), 1}, want: Success},
		{c: 1, op: OpLockExclusive, expire: 5, cmd: CmdExclusiveTrylock, arg: fs(0, 0, 0, 0, 5),
			r: reply{ErrAgain, fs(0, 0, 1, 0, 1000), 0}, want: ErrAgain},
	}
	for i := range 3 { // lock() polls every 100 ms
		steps = append(steps, scenarioStep{c: 1, op: OpLockExclusive, expire: 5,
			cmd: CmdExclusiveTicketTrylock, arg: fs(0, 0, 1, 0, 5),
			r: reply{ErrAgain, fs(0, 0, 2, 0, 1005+uint32(i)), 0}, want: ErrAgain})
	}
	steps = append(steps,
		scenarioStep{c: 1, op: OpLockShared, expire: 5, local: true, want: ErrTicket},
		scenarioStep{c: 1, op: OpExtendExclusive, expire: 5, local: true, want: ErrInval})
	cs := runScenario(t, Fair, steps)
	checkEntry(t, &cs[1].e, stateExclusiveTicketed, 0, fs(0, 0, 1, 0, 1000), 0)
	if got, want := cs[1].e.report(), fs(0, 0, 2, 0, 1000); got != want {
		t.Errorf("report() = %x, want %x", got, want)
	}
	runScenarioOn(t, &cs[1], scenarioStep{c: 1, op: OpUnlock, local: true, want: Success})
	checkEntry(t, &cs[1].e, stateInitialized, 0, fs(0, 0, 1, 0, 1000), 0)
}

func runScenarioOn(t *testing.T, c *scenarioClient, sp scenarioStep) {
	t.Helper()
	s := c.e.begin(sp.op, sp.expire, c.id, callSync, nil)
	if !s.local || s.status != sp.want {
		t.Fatalf("%v: local %v status %v, want local %v", sp.op, s.local, s.status, sp.want)
	}
}

// TestCacheAllocs: trylock, unlock and extend through begin+finish do not
// allocate.
func TestLockEntryAllocs(t *testing.T) {
	var st Stats
	e := &lockEntry{id: 1, typ: Fair}
	held := fs(0, 0, 1, 0, 1005)
	n := testing.AllocsPerRun(100, func() {
		s := e.begin(OpLockExclusive, 5, testSelf, callSync, &st)
		e.finish(&s, Success, held, 1, &st)
		s = e.begin(OpExtendExclusive, 5, testSelf, callSync, &st)
		e.finish(&s, Success, held, 0, &st)
		s = e.begin(OpUnlock, 0, testSelf, callSync, &st)
		e.finish(&s, Success, held, 0, &st)
	})
	if n != 0 {
		t.Errorf("allocs per trylock+extend+unlock = %v, want 0", n)
	}
	if e.state != stateUnlocked {
		t.Errorf("state = %v, want unlocked", e.state)
	}
}

// TestCacheRetiredTicket: a blocking FAIR request sent without keeping its
// ticket that times out leaves no ticket in the entry (the server retired
// it); with the ticket kept (the C lock()), the entry keeps it.
func TestLockEntryRetiredTicket(t *testing.T) {
	for _, retires := range []bool{true, false} {
		t.Run(fmt.Sprint("retires=", retires), func(t *testing.T) {
			e := &lockEntry{typ: Fair, state: stateExclusiveTicketed, value: cachedFair}
			var st Stats
			s := e.begin(OpLockExclusive, testExpire, testSelf, callSync, &st)
			if s.local || s.cmd != CmdExclusiveTicketTrylock {
				t.Fatalf("begin = %+v, want a ticket trylock", s)
			}
			s.retiresTicket = retires
			if got := e.finish(&s, ErrTimeout, LockState{}, 0, &st); got != ErrTimeout {
				t.Fatalf("finish = %v, want ErrTimeout", got)
			}
			want := stateExclusiveTicketed
			if retires {
				want = stateInitialized
			}
			checkEntry(t, e, want, 0, cachedFair, 0)
			checkStats(t, &st, StatEInvalLockRet)
		})
	}
}
