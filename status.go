package dlock

import "strconv"

// Status is a DLock status code (C enum dlock_status). The numbers are those of
// the C ABI, so a Status can cross the wire and the C boundary unchanged.
//
// Every non-success Status is an error. Returning one as an error never
// allocates: use [Status.Err], which hands out a pre-boxed value, the way
// syscall.Errno does. errors.Is(err, dlock.ErrNotReady) works for any error
// that wraps a Status.
type Status int32

// Status values, one per dlock_status_t value, plus [ErrGeneric] for the
// plain -1 that many C calls return.
const (
	Success Status = 0x0 // DLOCK_SUCCESS
	Done    Status = 0x1 // DLOCK_DONE (internal; never returned by the public API)

	ErrAgain   Status = 0x1000 // DLOCK_EAGAIN: fair lock queued, or stats rate limit hit
	ErrNoMem   Status = 0x1001 // DLOCK_ENOMEM
	ErrTimeout Status = 0x1002 // DLOCK_ETIMEOUT
	ErrInval   Status = 0x1003 // DLOCK_EINVAL
	ErrTicket  Status = 0x1004 // DLOCK_ETICKET: operation does not match the fair ticket held
	ErrAsync   Status = 0x1005 // DLOCK_EASYNC: an async operation is outstanding

	ErrClientNotInit          Status = 0x2000 // DLOCK_CLIENT_NOT_INIT
	ErrLockNotGet             Status = 0x2001 // DLOCK_LOCK_NOT_GET
	ErrAlreadyLocked          Status = 0x2002 // DLOCK_ALREADY_LOCKED
	ErrAlreadyUnlocked        Status = 0x2003 // DLOCK_ALREADY_UNLOCKED
	ErrTicketToUnlock         Status = 0x2004 // DLOCK_TICKET_TO_UNLOCK
	ErrBadResponse            Status = 0x2005 // DLOCK_BAD_RESPONSE
	ErrFail                   Status = 0x2006 // DLOCK_FAIL
	ErrClientMgrNotInit       Status = 0x2007 // DLOCK_CLIENTMGR_NOT_INIT
	ErrNotReady               Status = 0x2008 // DLOCK_NOT_READY
	ErrNoAsync                Status = 0x2009 // DLOCK_NO_ASYNC
	ErrAsyncAgain             Status = 0x200A // DLOCK_ASYNC_AGAIN
	ErrReplicaInitFail        Status = 0x200B // DLOCK_REPLICA_INIT_FAIL (never returned)
	ErrServerNotInit          Status = 0x200C // DLOCK_SERVER_NOT_INIT (never returned)
	ErrClientRemovedByServer  Status = 0x200D // DLOCK_CLIENT_REMOVED_BY_SERVER
	ErrProtoNegotiationFail   Status = 0x200E // DLOCK_PROTO_VERSION_NEGOTIATION_FAIL
	ErrServerNoResource       Status = 0x200F // DLOCK_SERVER_NO_RESOURCE
	ErrObjectAlreadyExisted   Status = 0x3000 // DLOCK_OBJECT_ALREADY_EXISTED
	ErrObjectAlreadyCreated   Status = 0x3001 // DLOCK_OBJECT_ALREADY_CREATED
	ErrObjectNotCreate        Status = 0x3002 // DLOCK_OBJECT_NOT_CREATE
	ErrObjectInvalidOwner     Status = 0x3003 // DLOCK_OBJECT_INVALID_OWNER
	ErrObjectNotGet           Status = 0x3004 // DLOCK_OBJECT_NOT_GET
	ErrObjectAlreadyDestroyed Status = 0x3005 // DLOCK_OBJECT_ALREADY_DESTROYED
	ErrObjectTooMany          Status = 0x3006 // DLOCK_OBJECT_TOO_MANY
	ErrObjectCASFailed        Status = 0x3007 // DLOCK_OBJECT_CAS_FAILED

	// ErrMoved is dlock's own (no DLock code): a server of a sharded
	// cluster refused a by-name request because the name's slot belongs to
	// another shard. A Router follows it; a Client returns it.
	ErrMoved Status = 0x2011 // DLOCK_MOVED

	// ErrGeneric is the plain -1 that the C API returns for many failures
	// (unknown client, type mismatch, a request refused in the server's state).
	ErrGeneric Status = -1
)

type statusInfo struct {
	s    Status
	name string
	text string
}

var statusTable = [...]statusInfo{
	{Success, "DLOCK_SUCCESS", "success"},
	{Done, "DLOCK_DONE", "done"},
	{ErrAgain, "DLOCK_EAGAIN", "try again (queued)"},
	{ErrNoMem, "DLOCK_ENOMEM", "out of memory"},
	{ErrTimeout, "DLOCK_ETIMEOUT", "timed out"},
	{ErrInval, "DLOCK_EINVAL", "invalid argument"},
	{ErrTicket, "DLOCK_ETICKET", "operation does not match the ticket held"},
	{ErrAsync, "DLOCK_EASYNC", "an async operation is outstanding"},
	{ErrClientNotInit, "DLOCK_CLIENT_NOT_INIT", "client not initialised"},
	{ErrLockNotGet, "DLOCK_LOCK_NOT_GET", "lock not opened by this client"},
	{ErrAlreadyLocked, "DLOCK_ALREADY_LOCKED", "already locked"},
	{ErrAlreadyUnlocked, "DLOCK_ALREADY_UNLOCKED", "already unlocked"},
	{ErrTicketToUnlock, "DLOCK_TICKET_TO_UNLOCK", "a fair ticket is held: unlock it first"},
	{ErrBadResponse, "DLOCK_BAD_RESPONSE", "bad or missing response"},
	{ErrFail, "DLOCK_FAIL", "failed"},
	{ErrClientMgrNotInit, "DLOCK_CLIENTMGR_NOT_INIT", "client library not initialised"},
	{ErrNotReady, "DLOCK_NOT_READY", "server not ready"},
	{ErrNoAsync, "DLOCK_NO_ASYNC", "no async operation outstanding"},
	{ErrAsyncAgain, "DLOCK_ASYNC_AGAIN", "async result not yet available"},
	{ErrReplicaInitFail, "DLOCK_REPLICA_INIT_FAIL", "replica init failed"},
	{ErrServerNotInit, "DLOCK_SERVER_NOT_INIT", "server not initialised"},
	{ErrClientRemovedByServer, "DLOCK_CLIENT_REMOVED_BY_SERVER", "client removed by server"},
	{ErrProtoNegotiationFail, "DLOCK_PROTO_VERSION_NEGOTIATION_FAIL", "protocol version negotiation failed"},
	{ErrServerNoResource, "DLOCK_SERVER_NO_RESOURCE", "server out of resources"},
	{ErrObjectAlreadyExisted, "DLOCK_OBJECT_ALREADY_EXISTED", "object already exists (owned by another client)"},
	{ErrObjectAlreadyCreated, "DLOCK_OBJECT_ALREADY_CREATED", "object already created"},
	{ErrObjectNotCreate, "DLOCK_OBJECT_NOT_CREATE", "object not created"},
	{ErrObjectInvalidOwner, "DLOCK_OBJECT_INVALID_OWNER", "not the object's owner"},
	{ErrObjectNotGet, "DLOCK_OBJECT_NOT_GET", "object not opened by this client"},
	{ErrObjectAlreadyDestroyed, "DLOCK_OBJECT_ALREADY_DESTROYED", "object already destroyed"},
	{ErrObjectTooMany, "DLOCK_OBJECT_TOO_MANY", "too many objects"},
	{ErrObjectCASFailed, "DLOCK_OBJECT_CAS_FAILED", "compare-and-swap failed"},
	{ErrMoved, "DLOCK_MOVED", "the name belongs to another shard (dial the cluster with DialRouter)"},
	{ErrGeneric, "-1", "failed"},
}

// boxed holds every known Status already converted to an error, so that
// Status.Err never allocates.
var boxed = func() map[Status]error {
	m := make(map[Status]error, len(statusTable))
	for _, e := range statusTable {
		m[e.s] = e.s
	}
	return m
}()

func (s Status) info() (statusInfo, bool) {
	for _, e := range statusTable {
		if e.s == s {
			return e, true
		}
	}
	return statusInfo{}, false
}

// Error returns a short description and the C name of the status, such as
// "server not ready (DLOCK_NOT_READY)". It carries no "dlock:" prefix: the
// client's methods wrap a status with the operation and the lock it is
// about ("dlock: unlock \"orders/42\": already unlocked (DLOCK_ALREADY_UNLOCKED)").
func (s Status) Error() string {
	if e, ok := s.info(); ok {
		return e.text + " (" + e.name + ")"
	}
	return "status " + strconv.Itoa(int(s))
}

// String returns the C name of the status (e.g. "DLOCK_NOT_READY").
func (s Status) String() string {
	if e, ok := s.info(); ok {
		return e.name
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// Known reports whether s is one of the defined status values.
func (s Status) Known() bool {
	_, ok := s.info()
	return ok
}

// Err returns nil for [Success] and s as an error otherwise. For known values
// it never allocates.
func (s Status) Err() error {
	if s == Success {
		return nil
	}
	if e, ok := boxed[s]; ok {
		return e
	}
	return s
}

// Timeout reports whether the status means that a deadline passed.
func (s Status) Timeout() bool {
	return s == ErrTimeout
}

// Temporary reports whether retrying the same call later may succeed: a
// queued fair request, a server in recovery, a pending async result.
func (s Status) Temporary() bool {
	switch s {
	case ErrAgain, ErrNotReady, ErrAsyncAgain, ErrTimeout:
		return true
	}
	return false
}
