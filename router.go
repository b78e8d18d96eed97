package dlock

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// Sharded clusters: the client side.
//
// A sharded cluster cuts the lock namespace into NumSlots slots by a hash of
// the name (SlotOf) and gives each slot to one shard: a primary and its
// standbys. A Router is a client of such a cluster. It needs only some
// members' addresses (Config.Addrs, seeds): it asks one of them for the slot
// map (no etcd client is involved), keeps one Client — one connection, one
// registered session — per shard it uses, and sends every by-name call
// (opening a lock, creating or opening an atomic64 object) to the shard that
// owns the name. The Lock and Atomic64 handles it returns belong to that
// shard's Client, so their operations go there directly. Batches are split
// by shard, the parts sent in parallel, and the results merged back in the
// caller's order.
//
// A server that does not own a name's slot answers ErrMoved with its map
// version without executing the request; the Router then fetches the map
// again and retries at the owner. When a slot moves, the handles of its
// locks, and their holds, follow it to the new shard (router_move.go).
// Against a server that is not part of a sharded cluster, a Router is a
// single Client.

// NumSlots is the number of slots of a sharded cluster.
const NumSlots = wire.NumSlots

// SlotOf returns the slot of a lock or object name. A hash tag, the text
// between the first '{' and the next '}' when it is not empty, stands for
// the whole name: "{orders}/1" and "{orders}/2" share a slot, hence a
// shard.
func SlotOf(name string) int { return wire.Slot([]byte(name)) }

// ErrShardUnavailable is returned (wrapped, with the cause) when the shard
// that owns a name cannot be reached: no member is known, or none answers.
// The other shards keep serving.
var ErrShardUnavailable = errors.New("shard unavailable")

// ErrNotSharded is returned (wrapped) by FetchShardMap from a server that is
// not a member of a sharded cluster.
var ErrNotSharded = errors.New("server is not part of a sharded cluster")

// maxMoves bounds the map refreshes of one by-name call.
const maxMoves = 4

// ShardMap is a sharded cluster's slot map as a client learns it.
type ShardMap struct {
	// Version increases with every change of the slot assignment.
	Version uint64
	// Shards are the cluster's shards: each one's name and its members'
	// addresses, the primary first when one is elected.
	Shards []ShardInfo
	// Slots[i] is the index in Shards of slot i's owner, -1 for none.
	Slots [NumSlots]int
}

// ShardInfo is one shard of a ShardMap.
type ShardInfo struct {
	Name  string
	Addrs []string
}

// Router is a client of a sharded cluster (or of a single server). Make one
// with DialRouter. It is safe for concurrent use.
type Router struct {
	cfg Config

	mu      sync.Mutex
	m       *ShardMap // nil: not a sharded cluster
	single  *Client   // the one Client when not sharded
	shards  map[string]*shardClient
	retired []*Client // broken Clients replaced by new ones
	closed  bool
	orphans []orphan   // source unlocks of hand-overs not answered yet (router_move.go)
	fetchMu sync.Mutex // one map fetch at a time

	stop func()         // stops watchMoves
	wg   sync.WaitGroup // watchMoves
}

// shardClient is the Client of one shard, dialled on first use.
type shardClient struct {
	mu sync.Mutex // held while dialling
	c  *Client
}

// DialRouter connects to the cluster whose members include cfg.Addrs
// (seeds, tried in order) and learns its slot map. Shards are connected on
// first use. Every Client it makes has cfg's settings, with Addrs set to
// its shard's members.
func DialRouter(ctx context.Context, cfg *Config) (*Router, error) {
	if cfg == nil || len(cfg.Addrs) == 0 {
		return nil, fmt.Errorf("dlock: dial router: Config.Addrs lists no server: %w", ErrInval)
	}
	r := &Router{cfg: *cfg, shards: make(map[string]*shardClient)}
	if r.cfg.DialTimeout <= 0 {
		r.cfg.DialTimeout = 10 * time.Second
	}
	m, err := r.fetch(ctx, r.cfg.Addrs)
	if errors.Is(err, ErrNotSharded) {
		c, err := Dial(ctx, r.cfg.Addrs[0], &r.cfg)
		if err != nil {
			return nil, err
		}
		r.single = c
		return r, nil
	}
	if err != nil {
		return nil, err
	}
	r.m = m
	wctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.wg.Add(1)
	go r.watchMoves(wctx)
	return r, nil
}

// FetchShardMap asks the server at addr for its slot map (no registration
// needed); a server outside a sharded cluster answers ErrNotSharded. cfg
// may be nil; its TLS, DialContext and DialTimeout apply.
func FetchShardMap(ctx context.Context, addr string, cfg *Config) (*ShardMap, error) {
	c := &Client{}
	if cfg != nil {
		c.cfg = *cfg
	}
	if c.cfg.DialTimeout <= 0 {
		c.cfg.DialTimeout = 10 * time.Second
	}
	return fetchMap(ctx, c, addr)
}

// fetchMap sends TShardMap to addr, following a standby's redirect.
func fetchMap(ctx context.Context, c *Client, addr string) (*ShardMap, error) {
	for hop := 0; ; hop++ {
		nc, err := c.dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		h, body, err := c.rawExchange(ctx, nc, wire.AppendFrame(nil, wire.TShardMap, 1, 0, nil))
		nc.Close()
		if err != nil {
			return nil, err
		}
		switch {
		case h.Type() == wire.TUnknownReply || h.Status() == int32(ErrGeneric):
			// (An unsharded server answers an unregistered connection's
			// request -1, a registered one's unknown type 0xFF.)
			return nil, fmt.Errorf("dlock: %s: %w", addr, ErrNotSharded)
		case h.Type() != wire.TShardMap.Reply() || h.ID() != 1:
			return nil, fmt.Errorf("dlock: %s: shard map: %w", addr, ErrBadResponse)
		case h.Status() == wire.StatusRedirect:
			var rd wire.Redirect
			if rd.Decode(body) != nil || rd.Addr == "" || rd.Addr == addr || hop >= maxRedirects {
				return nil, fmt.Errorf("dlock: %s: no shard map yet: %w", addr, ErrNotReady)
			}
			addr = rd.Addr
			continue
		case h.Status() != 0:
			return nil, fmt.Errorf("dlock: %s: shard map: %w", addr, passThrough(Status(h.Status())))
		}
		m, err := decodeShardMap(body)
		if err != nil {
			return nil, fmt.Errorf("dlock: %s: %w", addr, err)
		}
		return m, nil
	}
}

// decodeShardMap decodes the body of a TShardMap reply.
func decodeShardMap(body []byte) (*ShardMap, error) {
	var wm wire.ShardMap
	if wm.Decode(body) != nil {
		return nil, fmt.Errorf("malformed shard map: %w", ErrBadResponse)
	}
	m := &ShardMap{Version: wm.Version}
	for _, s := range wm.Shards {
		m.Shards = append(m.Shards, ShardInfo{Name: s.Name, Addrs: s.Addrs})
	}
	for i, o := range wm.Slots {
		m.Slots[i] = int(o)
		if o == wire.NoShard {
			m.Slots[i] = -1
		}
	}
	return m, nil
}

// fetch asks addrs in turn for the map. A server outside a sharded cluster
// ends the search with ErrNotSharded.
func (r *Router) fetch(ctx context.Context, addrs []string) (*ShardMap, error) {
	tmp := &Client{cfg: r.cfg}
	var first error
	for _, a := range addrs {
		m, err := fetchMap(ctx, tmp, a)
		if err == nil || errors.Is(err, ErrNotSharded) {
			return m, err
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// refresh fetches the map again from the members it names and the seeds,
// and keeps it if it is not older than the one known.
func (r *Router) refresh(ctx context.Context) error {
	r.fetchMu.Lock()
	defer r.fetchMu.Unlock()
	r.mu.Lock()
	var addrs []string
	seen := map[string]bool{}
	if r.m != nil {
		for _, s := range r.m.Shards {
			for _, a := range s.Addrs {
				if !seen[a] {
					seen[a] = true
					addrs = append(addrs, a)
				}
			}
		}
	}
	for _, a := range r.cfg.Addrs {
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	r.mu.Unlock()
	m, err := r.fetch(ctx, addrs)
	if err != nil {
		return err
	}
	r.mu.Lock()
	if r.m == nil || m.Version >= r.m.Version {
		r.m = m
	}
	r.mu.Unlock()
	r.updateAddrs()
	return nil
}

// updateAddrs gives each shard's Client the members the map names for its
// shard (a shard that gained standbys): automatic recovery tries them.
func (r *Router) updateAddrs() {
	r.mu.Lock()
	if r.m == nil {
		r.mu.Unlock()
		return
	}
	addrs := map[string][]string{}
	for _, s := range r.m.Shards {
		addrs[s.Name] = s.Addrs
	}
	scs := make(map[string]*shardClient, len(r.shards))
	for name, sc := range r.shards {
		scs[name] = sc
	}
	r.mu.Unlock()
	for name, sc := range scs {
		sc.mu.Lock()
		c := sc.c
		sc.mu.Unlock()
		if a := addrs[name]; c != nil && len(a) > 0 {
			c.setAddrs(a)
		}
	}
}

// Map returns a copy of the slot map the router uses (nil outside a sharded
// cluster).
func (r *Router) Map() *ShardMap {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		return nil
	}
	m := *r.m
	return &m
}

// ShardOf returns the name of the shard that owns name in the router's map
// ("" outside a sharded cluster or for a slot without owner).
func (r *Router) ShardOf(name string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		return ""
	}
	if o := r.m.Slots[SlotOf(name)]; o >= 0 {
		return r.m.Shards[o].Name
	}
	return ""
}

// Client returns the Client of the shard that owns name, connecting it if
// needed: for calls the Router does not route (Heartbeat, ServerStats, a
// lock by id). Outside a sharded cluster it is the one Client.
func (r *Router) Client(ctx context.Context, name string) (*Client, error) {
	c, err := r.client(ctx, name)
	if errors.Is(err, ErrShardUnavailable) && !errors.Is(err, ErrClosed) && ctx.Err() == nil {
		// The map may be older than the shard's members: ask again once.
		if r.refresh(ctx) == nil {
			c, err = r.client(ctx, name)
		}
	}
	return c, err
}

func (r *Router) client(ctx context.Context, name string) (*Client, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("dlock: router: %w", ErrClosed)
	}
	if r.single != nil {
		c := r.single
		r.mu.Unlock()
		return c, nil
	}
	slot := SlotOf(name)
	o := r.m.Slots[slot]
	if o < 0 {
		v := r.m.Version
		r.mu.Unlock()
		return nil, fmt.Errorf("dlock: %s: slot %d has no shard in map version %d: %w", quote(name), slot, v, ErrShardUnavailable)
	}
	info := r.m.Shards[o]
	sc := r.shards[info.Name]
	if sc == nil {
		sc = &shardClient{}
		r.shards[info.Name] = sc
	}
	r.mu.Unlock()

	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.c != nil {
		return sc.c, nil
	}
	if len(info.Addrs) == 0 {
		return nil, fmt.Errorf("dlock: shard %s has no member: %w", info.Name, ErrShardUnavailable)
	}
	cfg := r.cfg
	cfg.Addrs = append([]string(nil), info.Addrs...)
	if report := r.cfg.OnRecover; report != nil {
		shard := info.Name
		cfg.OnRecover = func(rep RecoveryReport) {
			rep.Shard = shard
			report(rep)
		}
	}
	c, err := Dial(ctx, info.Addrs[0], &cfg)
	if err != nil {
		return nil, fmt.Errorf("dlock: shard %s (%v): %w: %w", info.Name, info.Addrs, ErrShardUnavailable, err)
	}
	c.router = r
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		c.Close()
		return nil, fmt.Errorf("dlock: router: %w", ErrClosed)
	}
	sc.c = c
	return c, nil
}

// forget drops c as its shard's Client; it is closed with the Router (until
// then its handles report the lost connection).
func (r *Router) forget(c *Client) {
	r.mu.Lock()
	scs := make([]*shardClient, 0, len(r.shards))
	for _, sc := range r.shards {
		scs = append(scs, sc)
	}
	r.mu.Unlock()
	for _, sc := range scs {
		sc.mu.Lock()
		if sc.c == c {
			sc.c = nil
			r.mu.Lock()
			r.retired = append(r.retired, c)
			r.mu.Unlock()
		}
		sc.mu.Unlock()
	}
}

// byName runs call on the Client of name's shard, fetching the map again
// and retrying when the server answers that the name moved.
func byName[T any](ctx context.Context, r *Router, name string, call func(*Client) (T, error)) (T, error) {
	var zero T
	for try := 0; ; try++ {
		c, err := r.Client(ctx, name)
		if err != nil {
			return zero, err
		}
		v, err := call(c)
		if errors.Is(err, ErrConnLost) {
			// Without automatic recovery a Client whose connection broke
			// stays broken: forget it, so that a later call dials the
			// shard again (its handles keep failing: their holds are
			// unknown).
			if !r.cfg.AutoRecover {
				r.forget(c)
			}
			// Say which shard: the others keep serving.
			return v, fmt.Errorf("dlock: shard %s: %w: %w", r.ShardOf(name), ErrShardUnavailable, err)
		}
		if !errors.Is(err, ErrMoved) || try+1 >= maxMoves {
			return v, err
		}
		if err := r.refresh(ctx); err != nil {
			return zero, fmt.Errorf("dlock: %s moved; fetching the shard map: %w", quote(name), err)
		}
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-time.After(time.Duration(try) * 50 * time.Millisecond):
		}
	}
}

// OpenLock opens the lock called name on the shard that owns it (see
// Client.OpenLock).
func (r *Router) OpenLock(ctx context.Context, name string, opts LockOptions) (*Lock, error) {
	return byName(ctx, r, name, func(c *Client) (*Lock, error) { return c.OpenLock(ctx, name, opts) })
}

// OpenAndLock opens the lock called name on the shard that owns it and
// takes it exclusively, in one round trip (see Client.OpenAndLock).
func (r *Router) OpenAndLock(ctx context.Context, name string, opts LockOptions) (*Lock, error) {
	return byName(ctx, r, name, func(c *Client) (*Lock, error) {
		l, err := c.OpenAndLock(ctx, name, opts)
		return movedHandle(ctx, l, err)
	})
}

// OpenAndTryLock opens the lock called name on the shard that owns it and
// tries to take it exclusively, in one round trip (see
// Client.OpenAndTryLock).
func (r *Router) OpenAndTryLock(ctx context.Context, name string, opts LockOptions) (*Lock, bool, error) {
	var ok bool
	l, err := byName(ctx, r, name, func(c *Client) (*Lock, error) {
		l, got, err := c.OpenAndTryLock(ctx, name, opts)
		ok = got
		return movedHandle(ctx, l, err)
	})
	return l, ok && err == nil, err
}

// movedHandle lets go of a handle that was opened on a shard whose slot
// then moved (its lock request answered "moved"), so that the retry on the
// new owner leaves no reference behind.
func movedHandle(ctx context.Context, l *Lock, err error) (*Lock, error) {
	if l != nil && errors.Is(err, ErrMoved) {
		l.Release(ctx) // best effort: the request failed, nothing is held
		return nil, err
	}
	return l, err
}

// CreateAtomic64 creates and opens the object called name on the shard that
// owns it (see Client.CreateAtomic64).
func (r *Router) CreateAtomic64(ctx context.Context, name string, initial uint64, opts Atomic64Options) (*Atomic64, error) {
	return byName(ctx, r, name, func(c *Client) (*Atomic64, error) { return c.CreateAtomic64(ctx, name, initial, opts) })
}

// OpenAtomic64 opens the existing object called name on the shard that owns
// it (see Client.OpenAtomic64).
func (r *Router) OpenAtomic64(ctx context.Context, name string, opts Atomic64Options) (*Atomic64, error) {
	return byName(ctx, r, name, func(c *Client) (*Atomic64, error) { return c.OpenAtomic64(ctx, name, opts) })
}

// Close closes every shard's Client.
func (r *Router) Close() error {
	return r.each(func(c *Client) error { return c.Close() })
}

// Shutdown deregisters every shard's Client (see Client.Shutdown).
func (r *Router) Shutdown(ctx context.Context) error {
	return r.each(func(c *Client) error { return c.Shutdown(ctx) })
}

func (r *Router) each(f func(*Client) error) error {
	r.mu.Lock()
	r.closed = true
	stop := r.stop
	r.mu.Unlock()
	if stop != nil {
		stop()
		r.wg.Wait()
	}
	r.mu.Lock()
	retired := r.retired
	r.retired = nil
	var cs []*Client
	if r.single != nil {
		cs = append(cs, r.single)
	}
	scs := make([]*shardClient, 0, len(r.shards))
	for _, sc := range r.shards {
		scs = append(scs, sc)
	}
	r.mu.Unlock()
	for _, sc := range scs {
		sc.mu.Lock() // waits for a dial in progress
		if sc.c != nil {
			cs = append(cs, sc.c)
		}
		sc.mu.Unlock()
	}
	for _, c := range retired {
		c.Close() // broken already: nothing to deregister
	}
	var first error
	for _, c := range cs {
		if err := f(c); err != nil && first == nil {
			first = err
		}
	}
	return first
}
