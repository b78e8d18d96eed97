package main

/*
#include "dlock_types.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"
	"time"

	"github.com/dlock-io/dlock"
)

// A client instance of a sharded cluster. client_init may name any member
// of the cluster: the library learns the slot map from it and keeps one Go
// Client per shard (a dlock.Router). Calls by name (get_lock,
// batch_get_lock, umo_atomic64_create, umo_atomic64_get) go to the shard
// that owns the name; calls by id go to the shard of the handle the id
// stands for. Each shard's server numbers its locks and objects on its own,
// so two shards may give the same id: the library hands C ids that are
// unique in the instance — the server's id when no other shard's lock (or
// object) of the instance has it, else the next free one — and keeps the
// mapping. The recovery calls (client_reinit, update_all_locks,
// client_reinit_done) apply to every shard's session. When a slot moves, the
// Router hands each lock handle of the slot (with its hold) over to the new
// shard's Client: the handle, hence its C id, stays the same.
//
// Against a server that is not part of a sharded cluster nothing of this
// applies: the instance is one Client and C sees the server's ids.

const maxMoves = 4 // map refreshes of one routed call

// objRef is an object of a sharded instance: its shard's Client and the id
// that shard's server gave.
type objRef struct {
	c  *dlock.Client
	id int32
}

// shardedState is what a sharded instance keeps beyond an instance's
// fields. It is guarded by instance.mu.
type shardedState struct {
	r    *dlock.Router
	rev  map[*dlock.Lock]int32 // C id of each lock handle in locks
	objs map[int32]objRef      // every object id handed to C
}

// dialSharded connects to the sharded cluster that addr belongs to. It
// returns a nil router and no error when addr does not answer with a slot
// map (a server outside a sharded cluster, or one that cannot be reached:
// client_init then connects to it as to a single server, and says why not).
func dialSharded(ctx context.Context, addr string, cfg *dlock.Config) (*dlock.Router, error) {
	if _, err := dlock.FetchShardMap(ctx, addr, cfg); err != nil {
		return nil, nil
	}
	rc := *cfg
	rc.Addrs = []string{addr}
	r, err := dlock.DialRouter(ctx, &rc)
	if err != nil {
		return nil, err
	}
	// Connect every shard now, as client_init connects to its server; a
	// shard that does not answer is connected on first use.
	dialShards(r, ctx)
	if _, cs, _ := routerShards(r); len(cs) == 0 {
		r.Close()
		return nil, fmt.Errorf("dlock: no shard of the cluster answered: %w", dlock.ErrShardUnavailable)
	}
	return r, nil
}

// newShardedInstance makes the instance of router r; its id is the id that
// the shard of the member named in client_init gave (or, failing that,
// another shard's), or the next one this process does not use. Called with
// clientLib.mu held.
func newShardedInstance(r *dlock.Router, addr string) *instance {
	names, cs, addrs := routerShards(r)
	c := cs[0]
	for i := range names {
		for _, a := range addrs[i] {
			if a == addr {
				c = cs[i]
			}
		}
	}
	id := c.ID()
	for n := 0; n < maxClientInstances+1 && clientLib.clients[id] != nil; n++ {
		id = nextID(id)
	}
	return &instance{
		id:    id,
		locks: make(map[int32]*dlock.Lock),
		got:   make(map[int32]*dlock.Atomic64),
		sh:    &shardedState{r: r, rev: make(map[*dlock.Lock]int32), objs: make(map[int32]objRef)},
	}
}

// nextID is the id after id among the positive int32s.
func nextID(id int32) int32 {
	if id >= 1<<31-1 || id < 1 {
		return 1
	}
	return id + 1
}

// clients returns the instance's Go Clients: the one, or every connected
// shard's.
func (in *instance) clients() []*dlock.Client {
	if in.sh == nil {
		return []*dlock.Client{in.c}
	}
	_, cs, _ := routerShards(in.sh.r)
	return cs
}

// eachClient runs f on every Client of the instance, the shards in
// parallel, and returns the first error in shard order.
func (in *instance) eachClient(f func(c *dlock.Client) error) error {
	cs := in.clients()
	if len(cs) == 1 {
		return f(cs[0])
	}
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(c)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// routed runs call on the Client that serves name: the instance's Client,
// or the Client of the shard that owns name, fetching the map again and
// retrying (a bounded number of times) when the server answers that the
// name moved.
func (in *instance) routed(ctx context.Context, name string, call func(c *dlock.Client) error) error {
	if in.sh == nil {
		return call(in.c)
	}
	for try := 0; ; try++ {
		c, err := in.sh.r.Client(ctx, name)
		if err != nil {
			return err
		}
		err = call(c)
		if !errors.Is(err, dlock.ErrMoved) || try+1 >= maxMoves {
			return err
		}
		if err := routerRefresh(in.sh.r, ctx, nil); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(try) * 50 * time.Millisecond):
		}
	}
}

// addLock records a lock handle got by C and returns its C id; dup reports
// that the instance has got it already (id is then its C id). in.mu must be
// held.
func (in *instance) addLock(l *dlock.Lock) (id int32, dup bool) {
	if in.sh == nil {
		id = l.ID()
		if in.locks[id] != nil {
			return id, true
		}
		in.locks[id] = l
		return id, false
	}
	if id, ok := in.sh.rev[l]; ok {
		return id, true
	}
	id = l.ID()
	for n := 0; in.locks[id] != nil && n <= len(in.locks); n++ {
		id = nextID(id)
	}
	in.locks[id] = l
	in.sh.rev[l] = id
	return id, false
}

// dropLock forgets the lock of C id id. in.mu must be held.
func (in *instance) dropLock(id int32) {
	if in.sh != nil {
		if l := in.locks[id]; l != nil {
			delete(in.sh.rev, l)
		}
	}
	delete(in.locks, id)
}

// addObject records object id sid of Client c and returns its C id (the one
// it has if C has seen it already). in.mu must be held.
func (in *instance) addObject(c *dlock.Client, sid int32) int32 {
	if in.sh == nil {
		return sid
	}
	ref := objRef{c: c, id: sid}
	for id, r := range in.sh.objs {
		if r == ref {
			return id
		}
	}
	id := sid
	for n := 0; n <= len(in.sh.objs); n++ {
		if _, used := in.sh.objs[id]; !used {
			break
		}
		id = nextID(id)
	}
	in.sh.objs[id] = ref
	return id
}

// batchOpen opens a batch of locks, of any shards: each shard's entries in
// one round trip, the shards in parallel; ids[i] receives the server's id
// for entry i or a negative value, locks[i] the handle or nil. An entry
// whose shard cannot be asked gets -1. The error is returned when no entry
// was answered.
func (in *instance) batchOpen(ctx context.Context, names []string, opts []dlock.LockOptions, locks []*dlock.Lock, ids []int32) error {
	if in.sh == nil {
		return batchOpenLocks(in.c, ctx, names, opts, locks, ids)
	}
	type part struct {
		c   *dlock.Client
		idx []int
		err error
	}
	for i := range ids {
		ids[i], locks[i] = -1, nil
	}
	pending := make([]int, len(names))
	for i := range pending {
		pending[i] = i
	}
	answered := false
	var firstErr error
	for try := 0; len(pending) > 0 && try < maxMoves; try++ {
		var parts []*part
		for _, i := range pending {
			c, err := in.sh.r.Client(ctx, names[i])
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			var p *part
			for _, x := range parts {
				if x.c == c {
					p = x
				}
			}
			if p == nil {
				p = &part{c: c}
				parts = append(parts, p)
			}
			p.idx = append(p.idx, i)
		}
		var wg sync.WaitGroup
		for _, p := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n := len(p.idx)
				pn, po := make([]string, n), make([]dlock.LockOptions, n)
				pl, pi := make([]*dlock.Lock, n), make([]int32, n)
				for j, i := range p.idx {
					pn[j], po[j] = names[i], opts[i]
				}
				if p.err = batchOpenLocks(p.c, ctx, pn, po, pl, pi); p.err == nil {
					for j, i := range p.idx {
						locks[i], ids[i] = pl[j], pi[j]
					}
				}
			}()
		}
		wg.Wait()
		pending = pending[:0]
		for _, p := range parts {
			switch {
			case p.err == nil:
				answered = true
			case errors.Is(p.err, dlock.ErrMoved) && try+1 < maxMoves:
				pending = append(pending, p.idx...)
			case firstErr == nil:
				firstErr = p.err
			}
		}
		if len(pending) > 0 {
			if err := routerRefresh(in.sh.r, ctx, nil); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				break
			}
		}
	}
	if answered {
		return nil
	}
	return firstErr
}

// batchRelease releases locks of any shards.
func (in *instance) batchRelease(ctx context.Context, locks []*dlock.Lock) error {
	if in.sh == nil {
		return in.c.BatchRelease(ctx, locks)
	}
	return in.sh.r.BatchRelease(ctx, locks)
}

// batchTryLock, batchUnlock and batchExtend run a batch of lock commands on
// locks of any shards: split by shard, the parts in parallel, the results
// in the caller's order.
func (in *instance) batchTryLock(ctx context.Context, reqs []dlock.LockRequest, out []dlock.Result) {
	if in.sh == nil {
		in.c.BatchTryLock(ctx, reqs, out)
		return
	}
	in.sh.r.BatchTryLock(ctx, reqs, out)
}

func (in *instance) batchUnlock(ctx context.Context, locks []*dlock.Lock, out []dlock.Result) {
	if in.sh == nil {
		in.c.BatchUnlock(ctx, locks, out)
		return
	}
	in.sh.r.BatchUnlock(ctx, locks, out)
}

func (in *instance) batchExtend(ctx context.Context, reqs []dlock.LockRequest, out []dlock.Result) {
	if in.sh == nil {
		in.c.BatchExtend(ctx, reqs, out)
		return
	}
	in.sh.r.BatchExtend(ctx, reqs, out)
}

// reinitShards is client_reinit of a sharded instance: the map is fetched
// again from addr, then every shard's session re-registers at its shard's
// member that addr names, else at the shard's primary in the map.
func (in *instance) reinitShards(ctx context.Context, addr string) error {
	if err := routerRefresh(in.sh.r, ctx, []string{addr}); err != nil {
		return err
	}
	names, cs, addrs := routerShards(in.sh.r)
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		to := addr
		if len(addrs[i]) > 0 {
			to = addrs[i][0]
			for _, a := range addrs[i] {
				if a == addr {
					to = a
				}
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Reinit(ctx, to)
			switch {
			case err == nil:
			case errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF):
				// A failover in progress: a standby's redirect led to
				// the old primary as it died. The program retries, as
				// on a refused connection.
				errs[i] = fmt.Errorf("shard %s: %w: %w", names[i], dlock.ErrNotReady, err)
			default:
				errs[i] = fmt.Errorf("shard %s: %w", names[i], err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
