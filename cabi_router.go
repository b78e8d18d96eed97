package dlock

// The C ABI layer against a sharded cluster: what capi needs of a Router
// beyond its Go API, reached through internal/cshim like the rest of
// cabi.go. The C library does its own routing by name (it keeps its own
// ids), and applies the recovery calls to every shard's session.

import (
	"context"
	"fmt"
	"sort"

	"github.com/dlock-io/dlock/internal/cshim"
)

func init() {
	cshim.RouterShards = (*Router).cShards
	cshim.RouterRefresh = (*Router).cRefresh
	cshim.RouterDialShards = (*Router).cDialShards
	cshim.ClientNewPrimary = (*Client).cNewPrimary
}

// cNewPrimary reports whether the client's last Reinit found a new primary
// in recovery, which waits for the client's locks (UpdateAllLocks).
func (c *Client) cNewPrimary() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.newPrimary
}

// cShards returns the shards whose Client is connected: their names, their
// Clients and their members' addresses in the router's map (the primary
// first), in name order. Outside a sharded cluster it is the one Client,
// named "".
func (r *Router) cShards() (names []string, cs []*Client, addrs [][]string) {
	r.mu.Lock()
	if r.single != nil {
		c := r.single
		r.mu.Unlock()
		return []string{""}, []*Client{c}, [][]string{c.cfg.Addrs}
	}
	members := map[string][]string{}
	if r.m != nil {
		for _, s := range r.m.Shards {
			members[s.Name] = s.Addrs
		}
	}
	scs := make(map[string]*shardClient, len(r.shards))
	for name, sc := range r.shards {
		scs[name] = sc
		names = append(names, name)
	}
	r.mu.Unlock()
	sort.Strings(names)
	kept := names[:0]
	for _, name := range names {
		sc := scs[name]
		sc.mu.Lock()
		c := sc.c
		sc.mu.Unlock()
		if c != nil {
			kept = append(kept, name)
			cs = append(cs, c)
			addrs = append(addrs, members[name])
		}
	}
	return kept, cs, addrs
}

// cRefresh fetches the slot map again, asking seeds first, then the
// members the map names and the router's seeds; it keeps the map if it is
// not older than the one known.
func (r *Router) cRefresh(ctx context.Context, seeds []string) error {
	if len(seeds) > 0 {
		r.fetchMu.Lock()
		m, err := r.fetch(ctx, seeds)
		r.fetchMu.Unlock()
		if err == nil {
			r.mu.Lock()
			if r.m == nil || m.Version >= r.m.Version {
				r.m = m
			}
			r.mu.Unlock()
			return nil
		}
	}
	return r.refresh(ctx)
}

// cDialShards connects the Client of every shard of the map that has none
// yet, and returns the first error (the shards that answered are
// connected).
func (r *Router) cDialShards(ctx context.Context) error {
	r.mu.Lock()
	if r.single != nil || r.m == nil {
		r.mu.Unlock()
		return nil
	}
	// One slot of each shard: routing a name of that slot reaches it.
	first := make(map[int]int)
	for slot, o := range r.m.Slots {
		if _, ok := first[o]; !ok && o >= 0 {
			first[o] = slot
		}
	}
	r.mu.Unlock()
	var firstErr error
	for _, slot := range first {
		if _, err := r.client(ctx, slotName(slot)); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// slotName returns a name whose slot is slot: a hash tag found by search
// (a few thousand tries in practice: CRC-32 spreads short tags evenly).
func slotName(slot int) string {
	for i := 0; i < 1<<20; i++ {
		n := fmt.Sprintf("{%d}", i)
		if SlotOf(n) == slot {
			return n
		}
	}
	return ""
}
