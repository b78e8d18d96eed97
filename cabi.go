package dlock

// The C API's semantics. DLock's C API is written in terms of operations
// (Op) that the client maps, with its cached state, onto commands (Cmd) the
// server executes, and it returns raw status codes where the Go API returns
// (bool, error). The C ABI layer (capi) needs that exact behaviour; the Go
// API does not show it. The operations below are reached through the hooks
// of internal/cshim, which this file fills in; Op and Cmd stay exported as
// the vocabulary of those hooks, of the lock state machines and of the
// server's statistics.

import (
	"context"
	"strconv"

	"github.com/dlock-io/dlock/internal/cshim"
	"github.com/dlock-io/dlock/internal/wire"
)

// Op is a lock operation as a caller asks for it (C enum lock_ops).
type Op int32

const (
	OpLockExclusive   Op = 0 // LOCK_EXCLUSIVE
	OpLockShared      Op = 1 // LOCK_SHARED
	OpUnlock          Op = 2 // UNLOCK
	OpExtendExclusive Op = 3 // EXTEND_LOCK_EXCLUSIVE
	OpExtendShared    Op = 4 // EXTEND_LOCK_SHARED

	opMax Op = 5 // LOCK_OPS_MAX
)

// Valid reports whether o is one of the five operations.
func (o Op) Valid() bool { return o >= 0 && o < opMax }

func (o Op) String() string {
	switch o {
	case OpLockExclusive:
		return "lock-exclusive"
	case OpLockShared:
		return "lock-shared"
	case OpUnlock:
		return "unlock"
	case OpExtendExclusive:
		return "extend-exclusive"
	case OpExtendShared:
		return "extend-shared"
	}
	return "Op(" + strconv.Itoa(int(o)) + ")"
}

// Cmd is a lock command as the server executes it (the upstream data-plane
// op code, dlock_req_code). The client maps an [Op] and its local state to a
// Cmd (SEMANTICS.md §6.2).
type Cmd uint8

const (
	CmdExclusiveTrylock       Cmd = 0 // EXCLUSIVE_TRYLOCK
	CmdExclusiveUnlock        Cmd = 1 // EXCLUSIVE_UNLOCK
	CmdExclusiveExtend        Cmd = 2 // EXCLUSIVE_LOCK_EXTEND
	CmdExclusiveTicketTrylock Cmd = 3 // EXCLUSIVE_TICKET_TRYLOCK
	CmdSharedTrylock          Cmd = 4 // SHARED_TRYLOCK
	CmdSharedUnlock           Cmd = 5 // SHARED_UNLOCK
	CmdSharedExtend           Cmd = 6 // SHARED_LOCK_EXTEND
	CmdSharedTicketTrylock    Cmd = 7 // SHARED_TICKET_TRYLOCK

	CmdMax Cmd = 8 // OP_CODE_MAX: first invalid command
)

// Valid reports whether c is one of the eight lock commands.
func (c Cmd) Valid() bool { return c < CmdMax }

// Shared reports whether c is one of the shared commands.
func (c Cmd) Shared() bool { return c >= CmdSharedTrylock && c < CmdMax }

func (c Cmd) String() string {
	names := [...]string{"EXCLUSIVE_TRYLOCK", "EXCLUSIVE_UNLOCK", "EXCLUSIVE_LOCK_EXTEND",
		"EXCLUSIVE_TICKET_TRYLOCK", "SHARED_TRYLOCK", "SHARED_UNLOCK", "SHARED_LOCK_EXTEND",
		"SHARED_TICKET_TRYLOCK"}
	if int(c) < len(names) {
		return names[c]
	}
	return "Cmd(" + strconv.Itoa(int(c)) + ")"
}

func init() {
	cshim.LockDo = (*Lock).cDo
	cshim.LockStart = (*Lock).cStart
	cshim.BatchOpenLocks = (*Client).batchOpenLocks
	cshim.Atomic64ByID = (*Client).atomic64ByID
	cshim.SetTPMode = func(cfg *Config, mode uint8) { cfg.tpMode = mode }
}

// cDo runs one lock operation with the exact semantics of the C API
// (SEMANTICS.md §6): trylock for OpLockExclusive/OpLockShared (or, with block,
// the blocking lock: at most 5 s, answered DLOCK_EAGAIN with the ticket kept
// for a fair lock that was not granted in time), unlock, or extend; expire is
// the relative lease in seconds, and 0 is the C API's "peek" for a lock
// operation. It returns the raw DLock status (including local outcomes such
// as ErrAlreadyLocked), the lock value the C call would write to its result
// buffer, and whether it writes one. The methods TryLock, Lock, Unlock and
// Extend are the Go API over the same steps.
func (l *Lock) cDo(ctx context.Context, op Op, expire uint32, block bool) (st Status, result LockState, filled bool, err error) {
	if !op.Valid() {
		return ErrInval, LockState{}, false, nil
	}
	var flags uint8
	var wait uint32
	if block && isLockOp(op) {
		flags, wait = wire.FlagBlock|wire.FlagKeepTicket, 5000
	}
	return l.exec(ctx, op, expire, flags, wait)
}

// cStart begins one lock operation the way the C API's lock_request_async
// does (SEMANTICS.md §6.3, Async): the client's cache answers at once (wait is nil;
// st, result and filled are the answer), or the command is sent and wait
// collects the server's answer later. If wait's ctx ends first, the
// operation is forgotten — a late reply is dropped — and wait returns ctx's
// error. The C layer allows one such operation per client at a time.
func (l *Lock) cStart(op Op, expire uint32) (st Status, result LockState, filled bool, wait func(context.Context) (Status, LockState, bool, error)) {
	if !op.Valid() {
		return ErrInval, LockState{}, false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s, _ := l.begin(context.Background(), op, expire, callAsync) // no error without a round trip
	if s.local {
		return s.status, s.result, s.fill, nil
	}
	cl, err := l.post(&s, 0, 0)
	if err != nil {
		l.end(&s, 0, LockState{}, 0, err)
		c := l.cl()
		c.mu.Lock()
		c.stats.Inc(StatBadResponse)
		c.mu.Unlock()
		return ErrBadResponse, LockState{}, false, nil
	}
	return Success, LockState{}, false, func(ctx context.Context) (Status, LockState, bool, error) {
		status, res, err := l.cl().awaitLock(ctx, cl)
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.complete(ctx, &s, status, res, err)
	}
}

// atomic64ByID returns a handle for object id that this client has not
// opened, for Destroy and Release by id (the C API's calls take ids). Its
// value operations answer ErrObjectNotGet.
func (c *Client) atomic64ByID(id int32) *Atomic64 {
	return &Atomic64{c: c, id: id}
}
