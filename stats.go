package dlock

import "strconv"

// Counter names one of the 45 debug-statistics counters (C enum
// debug_stats_code). The value is the index into [Stats].
type Counter uint8

// The debug counters, in ABI order. SEMANTICS.md §11 says which side
// increments each and when.
const (
	StatEAgain Counter = iota
	StatNoURMABuf
	StatENoMem
	StatETimeout
	StatEInvalLockOp
	StatEInvalLockType
	StatEInvalLockOffset
	StatEInvalLockRet
	StatETicket
	StatEAsync
	StatClientNotInit
	StatLockNotGet
	StatAlreadyLocked
	StatAlreadyUnlocked
	StatAtomicTrylockFail
	StatAtomicUnlockFail
	StatAtomicExtendFail
	StatRWTrylockExFail
	StatRWUnlockExFail
	StatRWTrylockShFail
	StatRWUnlockShFail
	StatFairQueueLimit
	StatFairUnlockExFail
	StatFairUnlockShFail
	StatFairExTicketPassed
	StatFairShTicketPassed
	StatInvalidLockState
	StatTicketToUnlock
	StatNetworkFail
	StatSendFail
	StatBadResponse
	StatClientDisconnect
	StatFail
	StatClientMgrNotInit
	StatNotReady
	StatNoAsync
	StatAsyncAgain
	StatReplicaInitFail
	StatServerNotInit
	StatEncryptFail
	StatDecryptFail
	StatClientIDVerifyFail
	StatBadRequest
	StatObjectNotGet
	StatObjectCASFailed

	// NumCounters is DEBUG_STATS_MAX, the number of counters.
	NumCounters = int(iota)
)

var counterNames = [NumCounters]string{
	"EAGAIN", "NO_URMA_BUF", "ENOMEM", "ETIMEOUT", "EINVAL_LOCK_OP", "EINVAL_LOCK_TYPE",
	"EINVAL_LOCK_OFFSET", "EINVAL_LOCK_RET", "ETICKET", "EASYNC", "CLIENT_NOT_INIT",
	"LOCK_NOT_GET", "ALREADY_LOCKED", "ALREADY_UNLOCKED", "ATOMIC_TRYLOCK_FAIL",
	"ATOMIC_UNLOCK_FAIL", "ATOMIC_EXTEND_FAIL", "RW_TRYLOCK_EX_FAIL", "RW_UNLOCK_EX_FAIL",
	"RW_TRYLOCK_SH_FAIL", "RW_UNLOCK_SH_FAIL", "FAIR_QUEUE_LIMIT", "FAIR_UNLOCK_EX_FAIL",
	"FAIR_UNLOCK_SH_FAIL", "FAIR_EX_TICKET_PASSED", "FAIR_SH_TICKET_PASSED",
	"INVALID_LOCK_STATE", "TICKET_TO_UNLOCK", "NETWORK_FAIL", "SEND_FAIL", "BAD_RESPONSE",
	"CLIENT_DISCONNECT", "FAIL", "CLIENTMGR_NOT_INIT", "NOT_READY", "NO_ASYNC", "ASYNC_AGAIN",
	"REPLICA_INIT_FAIL", "SERVER_NOT_INIT", "ENCRYPT_FAIL", "DECRYPT_FAIL",
	"CLIENT_ID_VERIFY_FAIL", "BAD_REQUEST", "OBJECT_NOT_GET", "OBJECT_CAS_FAILED",
}

// String returns the counter's C name without the DEBUG_STATS_ prefix.
func (c Counter) String() string {
	if int(c) < NumCounters {
		return counterNames[c]
	}
	return "Counter(" + strconv.Itoa(int(c)) + ")"
}

// Stats is a set of debug counters (C struct debug_stats), indexed by
// [Counter]: st[dlock.StatEAgain].
type Stats [NumCounters]uint64

// Inc adds one to counter c. It is a no-op on a nil *Stats, so pure code can
// take an optional sink.
func (s *Stats) Inc(c Counter) {
	if s != nil {
		s[c]++
	}
}
