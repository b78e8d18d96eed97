package dlock_test

import (
	"context"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/cshim"
)

// The C API's operations, reached as capi reaches them (see internal/cshim).
var (
	lockDo = cshim.LockDo.(func(*dlock.Lock, context.Context, dlock.Op, uint32, bool) (dlock.Status, dlock.LockState, bool, error))

	lockStart = cshim.LockStart.(func(*dlock.Lock, dlock.Op, uint32) (dlock.Status, dlock.LockState, bool, func(context.Context) (dlock.Status, dlock.LockState, bool, error)))

	batchOpenLocks = cshim.BatchOpenLocks.(func(*dlock.Client, context.Context, []string, []dlock.LockOptions, []*dlock.Lock, []int32) error)

	atomic64ByID = cshim.Atomic64ByID.(func(*dlock.Client, int32) *dlock.Atomic64)
)
