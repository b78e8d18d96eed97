package dlock

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// Atomic64Options configures CreateAtomic64 and OpenAtomic64.
type Atomic64Options struct {
	// Lease is how long a destroyed object stays usable for the clients that
	// still have it open (umo_atomic64_desc.lease_time), rounded up to whole
	// seconds. Default 60 s.
	Lease time.Duration
	// CreateOnly makes CreateAtomic64 create the object without opening it
	// (exactly umo_atomic64_create): the handle can Destroy it but must be
	// opened with OpenAtomic64 before use.
	CreateOnly bool
}

// Atomic64 is a distributed 64-bit unsigned integer (umo_atomic64). All
// operations are atomic on the server.
type Atomic64 struct {
	c    *Client
	name string
	id   int32

	mu     sync.Mutex
	opened bool // the client holds a reference (umo_atomic64_get)
}

func (o Atomic64Options) leaseSeconds() uint32 {
	if o.Lease <= 0 {
		return 60
	}
	return ttlSeconds(o.Lease)
}

// CreateAtomic64 creates the object called name with value initial and opens
// it (umo_atomic64_create followed by umo_atomic64_get). The creator owns the
// object and may Destroy it. If the client created it before,
// ErrObjectAlreadyCreated; if another client did, ErrObjectAlreadyExisted.
func (c *Client) CreateAtomic64(ctx context.Context, name string, initial uint64, opts Atomic64Options) (*Atomic64, error) {
	id, err := c.objectCall(ctx, wire.TObjCreate, name, initial, opts)
	if err != nil {
		return nil, err
	}
	if opts.CreateOnly {
		return &Atomic64{c: c, name: name, id: id}, nil
	}
	if _, err := c.objectCall(ctx, wire.TObjGet, name, 0, opts); err != nil {
		return &Atomic64{c: c, name: name, id: id}, err
	}
	return c.trackObject(&Atomic64{c: c, name: name, id: id, opened: true}), nil
}

// trackObject remembers o so that a recovery against a new primary, where
// objects do not survive, can invalidate it.
func (c *Client) trackObject(o *Atomic64) *Atomic64 {
	c.mu.Lock()
	c.objects[o] = struct{}{}
	c.mu.Unlock()
	return o
}

// OpenAtomic64 opens an existing object (umo_atomic64_get):
// ErrObjectNotCreate if there is none, ErrObjectAlreadyDestroyed if it was
// destroyed.
func (c *Client) OpenAtomic64(ctx context.Context, name string, opts Atomic64Options) (*Atomic64, error) {
	id, err := c.objectCall(ctx, wire.TObjGet, name, 0, opts)
	if err != nil {
		return nil, err
	}
	return c.trackObject(&Atomic64{c: c, name: name, id: id, opened: true}), nil
}

func (c *Client) objectCall(ctx context.Context, t wire.Type, name string, initial uint64, opts Atomic64Options) (int32, error) {
	if err := checkName(name); err != nil {
		return 0, fmt.Errorf("dlock: object %s: %w", quote(name), err)
	}
	desc := []byte(name)
	m := wire.Object{Preferred: djb2(desc), Lease: opts.leaseSeconds(), Init: initial, Desc: desc}
	var rep wire.ObjReply
	st, err := c.objRoundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, t, id, c.id) }, &rep)
	if err != nil {
		return 0, fmt.Errorf("dlock: object %s: %w", quote(name), err)
	}
	if st != Success {
		return 0, fmt.Errorf("dlock: object %s: %w", quote(name), st)
	}
	if rep.ID <= 0 {
		return 0, fmt.Errorf("dlock: object %s: malformed reply: %w", quote(name), ErrBadResponse)
	}
	return rep.ID, nil
}

// objRoundTrip runs one object request and decodes its reply.
func (c *Client) objRoundTrip(ctx context.Context, encode func([]byte, uint32) []byte, rep *wire.ObjReply) (Status, error) {
	cl, err := c.m.roundTrip(ctx, encode)
	if err != nil {
		return 0, err
	}
	defer c.m.putCall(cl)
	st := Status(cl.status)
	if st == ErrObjectCASFailed {
		return st, nil // a valid outcome of CAS, not a pass-through error
	}
	st = passThrough(st)
	if st == ErrMoved {
		return st, nil // its body is the shard map's version
	}
	if len(cl.body) > 0 && rep.Decode(cl.body) != nil {
		return 0, fmt.Errorf("malformed reply: %w", ErrBadResponse)
	}
	return st, nil
}

// ID returns the object id.
func (o *Atomic64) ID() int32 { return o.id }

// Name returns the object's name.
func (o *Atomic64) Name() string { return o.name }

func (o *Atomic64) op(ctx context.Context, t wire.Type, a, b uint64) (uint64, Status, error) {
	o.mu.Lock()
	opened := o.opened
	o.mu.Unlock()
	c := o.c
	if !opened {
		c.mu.Lock()
		c.stats.Inc(StatObjectNotGet)
		c.mu.Unlock()
		return 0, ErrObjectNotGet, nil
	}
	var rep wire.ObjReply
	var st Status
	var err error
	if t == wire.TObjLoad {
		m := wire.ID{ID: o.id}
		st, err = c.objRoundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, t, id, c.id) }, &rep)
	} else {
		m := wire.ObjOp{ID: o.id, A: a, B: b}
		st, err = c.objRoundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, t, id, c.id) }, &rep)
	}
	if err != nil {
		c.mu.Lock()
		c.stats.Inc(StatNetworkFail)
		c.mu.Unlock()
	}
	return rep.Value, st, err
}

// FetchAndAdd adds delta (modulo 2^64) and returns the value before the
// addition (umo_atomic64_faa).
func (o *Atomic64) FetchAndAdd(ctx context.Context, delta uint64) (uint64, error) {
	v, st, err := o.op(ctx, wire.TObjFAA, delta, 0)
	if err != nil {
		return 0, o.wrap("fetch-and-add", err)
	}
	if st != Success {
		return 0, o.wrap("fetch-and-add", st)
	}
	return v, nil
}

// CompareAndSwap sets the value to new if it equals old and reports whether
// it did (umo_atomic64_cas).
func (o *Atomic64) CompareAndSwap(ctx context.Context, old, new uint64) (bool, error) {
	_, st, err := o.op(ctx, wire.TObjCAS, old, new)
	if err != nil {
		return false, o.wrap("compare-and-swap", err)
	}
	if st == ErrObjectCASFailed {
		o.c.mu.Lock()
		o.c.stats.Inc(StatObjectCASFailed)
		o.c.mu.Unlock()
		return false, nil
	}
	if st != Success {
		return false, o.wrap("compare-and-swap", st)
	}
	return true, nil
}

// Load returns the current value (umo_atomic64_get_snapshot).
func (o *Atomic64) Load(ctx context.Context) (uint64, error) {
	v, st, err := o.op(ctx, wire.TObjLoad, 0, 0)
	if err != nil {
		return 0, o.wrap("load", err)
	}
	if st != Success {
		return 0, o.wrap("load", st)
	}
	return v, nil
}

// Release closes the client's reference (umo_atomic64_release). A destroyed
// object is freed when its last reference goes.
func (o *Atomic64) Release(ctx context.Context) error {
	st, err := o.idCall(ctx, wire.TObjRelease)
	if err != nil {
		return o.wrap("release", err)
	}
	if st != ErrNotReady {
		o.mu.Lock()
		o.opened = false
		o.mu.Unlock()
		o.c.mu.Lock()
		delete(o.c.objects, o)
		o.c.mu.Unlock()
	}
	if st != Success {
		return o.wrap("release", st)
	}
	return nil
}

// Destroy destroys the object (umo_atomic64_destroy); only its creator may.
// Clients that have it open keep using it until they release it or its
// lease passes.
func (o *Atomic64) Destroy(ctx context.Context) error {
	st, err := o.idCall(ctx, wire.TObjDestroy)
	if err != nil {
		return o.wrap("destroy", err)
	}
	if st != Success {
		return o.wrap("destroy", st)
	}
	return nil
}

// wrap says which operation on which object an error is about.
func (o *Atomic64) wrap(op string, err error) error {
	if o.name == "" {
		return fmt.Errorf("dlock: %s object %d: %w", op, o.id, err)
	}
	return fmt.Errorf("dlock: %s object %s: %w", op, quote(o.name), err)
}

func (o *Atomic64) idCall(ctx context.Context, t wire.Type) (Status, error) {
	c := o.c
	m := wire.ID{ID: o.id}
	var rep wire.ObjReply
	st, err := c.objRoundTrip(ctx, func(dst []byte, id uint32) []byte { return m.Append(dst, t, id, c.id) }, &rep)
	if err != nil {
		return 0, err
	}
	return st, nil
}
