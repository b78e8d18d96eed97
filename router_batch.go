package dlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// Batches across shards: each batch is split by the shard that serves its
// entries, the parts are sent in parallel, one per shard, and the results
// merged back in the caller's order. Batches have no all-or-nothing
// semantics on one server either, so splitting loses nothing: each entry is
// answered on its own.

// group is the entries of a batch that one Client serves, in the caller's
// order.
type group struct {
	c   *Client
	idx []int
	err error
}

// groupBy groups n entries by owner, in the order of first appearance.
func groupBy(n int, owner func(i int) (*Client, error)) ([]*group, error) {
	var gs []*group
	for i := 0; i < n; i++ {
		c, err := owner(i)
		if err != nil {
			return nil, fmt.Errorf("dlock: batch entry %d: %w", i, err)
		}
		var g *group
		for _, x := range gs {
			if x.c == c {
				g = x
				break
			}
		}
		if g == nil {
			g = &group{c: c}
			gs = append(gs, g)
		}
		g.idx = append(g.idx, i)
	}
	return gs, nil
}

// runGroups runs each group (in parallel when there are several) and
// returns the first group's error in the caller's order.
func runGroups(gs []*group, run func(g *group) error) error {
	if len(gs) == 1 {
		gs[0].err = run(gs[0])
	} else {
		var wg sync.WaitGroup
		for _, g := range gs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.err = run(g)
			}()
		}
		wg.Wait()
	}
	for _, g := range gs {
		if g.err != nil {
			return g.err
		}
	}
	return nil
}

// lockOwner is the Client of a batch entry's Lock.
func lockOwner(l *Lock) (*Client, error) {
	if l == nil {
		return nil, errNilLock
	}
	return l.cl(), nil
}

// batchLocks runs a batch of lock requests split by shard; call runs one
// part on its Client. Entries answered "moved" (their slot moved to another
// shard) have their handles handed over to that shard (router_move.go) and
// run again there.
func (r *Router) batchLocks(ctx context.Context, n, nres int, owner func(i int) *Lock, call func(c *Client, idx []int, res []Result) error, results []Result) error {
	if n == 0 || n > MaxBatch || nres < n {
		return fmt.Errorf("dlock: batch: %w", ErrBatchSize)
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	err := r.batchPart(all, owner, call, results)
	for try := 1; err == nil && try < maxMoves; try++ {
		var again []int
		for i := 0; i < n; i++ {
			if results[i].Status == ErrMoved {
				l := owner(i)
				l.mu.Lock()
				merr := r.moveLocked(ctx, l, try)
				l.mu.Unlock()
				if merr == nil {
					again = append(again, i)
				}
			}
		}
		if len(again) == 0 {
			break
		}
		err = r.batchPart(again, owner, call, results)
	}
	return err
}

// batchPart runs the entries idx of a batch (see batchLocks).
func (r *Router) batchPart(idx []int, owner func(i int) *Lock, call func(c *Client, idx []int, res []Result) error, results []Result) error {
	gs, err := groupBy(len(idx), func(j int) (*Client, error) { return lockOwner(owner(idx[j])) })
	if err != nil {
		return err
	}
	for _, g := range gs {
		for k, j := range g.idx {
			g.idx[k] = idx[j]
		}
	}
	return runGroups(gs, func(g *group) error {
		var part [MaxBatch]Result
		err := call(g.c, g.idx, part[:len(g.idx)])
		for j, i := range g.idx {
			results[i] = part[j]
		}
		return err
	})
}

// BatchTryLock tries up to 31 locks, of any shards, at once (see
// Client.BatchTryLock). results[i] receives entry i's outcome; the error is
// the first failed part's, in the caller's order.
func (r *Router) BatchTryLock(ctx context.Context, reqs []LockRequest, results []Result) error {
	return r.batchLocks(ctx, len(reqs), len(results), func(i int) *Lock { return reqs[i].Lock },
		func(c *Client, idx []int, res []Result) error {
			var part [MaxBatch]LockRequest
			for j, i := range idx {
				part[j] = reqs[i]
			}
			return c.BatchTryLock(ctx, part[:len(idx)], res)
		}, results)
}

// BatchUnlock unlocks up to 31 locks, of any shards, at once (see
// Client.BatchUnlock).
func (r *Router) BatchUnlock(ctx context.Context, locks []*Lock, results []Result) error {
	return r.batchLocks(ctx, len(locks), len(results), func(i int) *Lock { return locks[i] },
		func(c *Client, idx []int, res []Result) error {
			var part [MaxBatch]*Lock
			for j, i := range idx {
				part[j] = locks[i]
			}
			return c.BatchUnlock(ctx, part[:len(idx)], res)
		}, results)
}

// BatchExtend extends up to 31 holds, of any shards, at once (see
// Client.BatchExtend).
func (r *Router) BatchExtend(ctx context.Context, reqs []LockRequest, results []Result) error {
	return r.batchLocks(ctx, len(reqs), len(results), func(i int) *Lock { return reqs[i].Lock },
		func(c *Client, idx []int, res []Result) error {
			var part [MaxBatch]LockRequest
			for j, i := range idx {
				part[j] = reqs[i]
			}
			return c.BatchExtend(ctx, part[:len(idx)], res)
		}, results)
}

// BatchRelease releases up to 31 locks, of any shards (see
// Client.BatchRelease).
func (r *Router) BatchRelease(ctx context.Context, locks []*Lock) error {
	n := len(locks)
	if n == 0 || n > MaxBatch {
		return fmt.Errorf("dlock: batch release: %w", ErrBatchSize)
	}
	gs, err := groupBy(n, func(i int) (*Client, error) { return lockOwner(locks[i]) })
	if err != nil {
		return err
	}
	return runGroups(gs, func(g *group) error {
		var part [MaxBatch]*Lock
		for j, i := range g.idx {
			part[j] = locks[i]
		}
		return g.c.BatchRelease(ctx, part[:len(g.idx)])
	})
}

// BatchOpenLock opens up to 31 locks of the same options, of any shards,
// at once (see Client.BatchOpenLock): each shard's entries go in one round
// trip, the shards in parallel, and locks[i] receives the handle for
// names[i] or nil. An entry whose shard could not be asked (unreachable:
// the error says which) or that failed is left nil; the other entries are
// answered, and the first error is returned.
func (r *Router) BatchOpenLock(ctx context.Context, names []string, opts LockOptions, locks []*Lock) error {
	n := len(names)
	if n == 0 || n > MaxBatch || len(locks) < n {
		return fmt.Errorf("dlock: batch open: %w", ErrBatchSize)
	}
	for i := 0; i < n; i++ {
		locks[i] = nil
		if err := checkName(names[i]); err != nil {
			return fmt.Errorf("dlock: batch open entry %d (%s): %w", i, quote(names[i]), err)
		}
	}
	pending := make([]int, n)
	for i := range pending {
		pending[i] = i
	}
	var firstErr error
	for try := 0; len(pending) > 0; try++ {
		// Group the pending entries by the shard that owns them; a shard
		// that cannot be reached fails its entries only.
		var gs []*group
		for _, i := range pending {
			c, err := r.Client(ctx, names[i])
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("dlock: batch open entry %d (%s): %w", i, quote(names[i]), err)
				}
				continue
			}
			var g *group
			for _, x := range gs {
				if x.c == c {
					g = x
				}
			}
			if g == nil {
				g = &group{c: c}
				gs = append(gs, g)
			}
			g.idx = append(g.idx, i)
		}
		if len(gs) == 0 {
			break
		}
		runGroups(gs, func(g *group) error {
			var part [MaxBatch]string
			var pl [MaxBatch]*Lock
			for j, i := range g.idx {
				part[j] = names[i]
			}
			err := g.c.BatchOpenLock(ctx, part[:len(g.idx)], opts, pl[:len(g.idx)])
			for j, i := range g.idx {
				locks[i] = pl[j]
			}
			return err
		})
		pending = pending[:0]
		moved := false
		for _, g := range gs {
			switch {
			case g.err == nil:
			case errors.Is(g.err, ErrMoved) && try+1 < maxMoves:
				moved = true
				pending = append(pending, g.idx...)
			case firstErr == nil:
				firstErr = g.err
			}
		}
		if moved {
			if err := r.refresh(ctx); err != nil {
				return fmt.Errorf("dlock: batch open: entries moved; fetching the shard map: %w", err)
			}
		}
	}
	return firstErr
}
