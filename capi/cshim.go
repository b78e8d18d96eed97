package main

import (
	"context"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/cshim"
)

// The client's operations with the C API's exact semantics, which package
// dlock keeps out of its Go API (see internal/cshim). The types are
// asserted when this package is initialised, after dlock's initialisation
// filled the hooks in.
var (
	lockDo = cshim.LockDo.(func(*dlock.Lock, context.Context, dlock.Op, uint32, bool) (dlock.Status, dlock.LockState, bool, error))

	lockStart = cshim.LockStart.(func(*dlock.Lock, dlock.Op, uint32) (dlock.Status, dlock.LockState, bool, func(context.Context) (dlock.Status, dlock.LockState, bool, error)))

	batchOpenLocks = cshim.BatchOpenLocks.(func(*dlock.Client, context.Context, []string, []dlock.LockOptions, []*dlock.Lock, []int32) error)

	atomic64ByID = cshim.Atomic64ByID.(func(*dlock.Client, int32) *dlock.Atomic64)

	setTPMode = cshim.SetTPMode.(func(*dlock.Config, uint8))

	routerShards = cshim.RouterShards.(func(*dlock.Router) ([]string, []*dlock.Client, [][]string))

	routerRefresh = cshim.RouterRefresh.(func(*dlock.Router, context.Context, []string) error)

	dialShards = cshim.RouterDialShards.(func(*dlock.Router, context.Context) error)

	clientNewPrimary = cshim.ClientNewPrimary.(func(*dlock.Client) bool)
)
