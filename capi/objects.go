package main

/*
#include "dlock_types.h"
*/
import "C"

import (
	"context"
	"time"

	"github.com/dlock-io/dlock"
)

// validObjDesc checks a struct umo_atomic64_desc: 1..512 bytes, lease > 0.
func validObjDesc(d *C.struct_umo_atomic64_desc) bool {
	return d.len > 0 && d.len <= dlock.MaxDescLen && d.p_desc != nil && d.lease_time > 0
}

// objectClient runs the client checks of the object calls.
func objectClient(clientID C.int) (*instance, C.int) {
	inited, in := lookupClient(clientID)
	switch {
	case !inited:
		return nil, code(dlock.ErrClientMgrNotInit)
	case in == nil:
		return nil, code(dlock.ErrClientNotInit)
	}
	return in, 0
}

func objOptions(d *C.struct_umo_atomic64_desc) dlock.Atomic64Options {
	return dlock.Atomic64Options{Lease: time.Duration(d.lease_time) * time.Second}
}

// umo_atomic64_create creates an object with value init_val and writes its
// id. Creating does not take a reference: umo_atomic64_get does.
//
//export umo_atomic64_create
func umo_atomic64_create(clientID C.int, desc *C.struct_umo_atomic64_desc, initVal C.uint64_t, objID *C.int) C.int {
	if objID == nil || desc == nil || !validObjDesc(desc) {
		return code(dlock.ErrInval)
	}
	in, rc := objectClient(clientID)
	if rc != 0 {
		return rc
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	name := string(goBytes(desc.p_desc, C.uint(desc.len)))
	opts := objOptions(desc)
	opts.CreateOnly = true
	var o *dlock.Atomic64
	var owner *dlock.Client
	err := in.routed(ctx, name, func(c *dlock.Client) (err error) {
		owner = c
		o, err = c.CreateAtomic64(ctx, name, uint64(initVal), opts)
		return err
	})
	if err != nil {
		return statusOf(err)
	}
	in.mu.Lock()
	*objID = C.int(in.addObject(owner, o.ID()))
	in.mu.Unlock()
	return 0
}

// handle returns a handle for object id: the one the client got, else one
// that addresses the id on the server, which answers for objects this client
// did not create or get. A sharded instance knows only the ids it handed
// out (nil for another: no shard knows it under that id).
func (in *instance) handle(id C.int) *dlock.Atomic64 {
	in.mu.Lock()
	defer in.mu.Unlock()
	if o := in.got[int32(id)]; o != nil {
		return o
	}
	if in.sh != nil {
		ref, ok := in.sh.objs[int32(id)]
		if !ok {
			return nil
		}
		return atomic64ByID(ref.c, ref.id)
	}
	return atomic64ByID(in.c, int32(id))
}

// umo_atomic64_destroy destroys an object the client created.
//
//export umo_atomic64_destroy
func umo_atomic64_destroy(clientID C.int, objID C.int) C.int {
	in, rc := objectClient(clientID)
	if rc != 0 {
		return rc
	}
	o := in.handle(objID)
	if o == nil {
		return code(dlock.ErrObjectNotCreate)
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	return statusOf(o.Destroy(ctx))
}

// umo_atomic64_get opens an object and writes its id.
//
//export umo_atomic64_get
func umo_atomic64_get(clientID C.int, desc *C.struct_umo_atomic64_desc, objID *C.int) C.int {
	if objID == nil || desc == nil || !validObjDesc(desc) {
		return code(dlock.ErrInval)
	}
	in, rc := objectClient(clientID)
	if rc != 0 {
		return rc
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	name := string(goBytes(desc.p_desc, C.uint(desc.len)))
	var o *dlock.Atomic64
	var owner *dlock.Client
	err := in.routed(ctx, name, func(c *dlock.Client) (err error) {
		owner = c
		o, err = c.OpenAtomic64(ctx, name, objOptions(desc))
		return err
	})
	if err != nil {
		return statusOf(err)
	}
	in.mu.Lock()
	id := in.addObject(owner, o.ID())
	in.got[id] = o
	in.mu.Unlock()
	*objID = C.int(id)
	return 0
}

// umo_atomic64_release drops the client's reference to an object.
//
//export umo_atomic64_release
func umo_atomic64_release(clientID C.int, objID C.int) C.int {
	in, rc := objectClient(clientID)
	if rc != 0 {
		return rc
	}
	o := in.handle(objID)
	if o == nil {
		return code(dlock.ErrObjectNotCreate)
	}
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	rc = statusOf(o.Release(ctx))
	if st := dlock.Status(rc); st != dlock.ErrNotReady && st != dlock.ErrBadResponse {
		in.mu.Lock()
		delete(in.got, int32(objID))
		in.mu.Unlock()
	}
	return rc
}

// gotObject runs the checks of faa, cas and get_snapshot.
func gotObject(clientID C.int, objID C.int) (*dlock.Atomic64, C.int) {
	in, rc := objectClient(clientID)
	if rc != 0 {
		return nil, rc
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.async != nil {
		in.extra.Inc(dlock.StatEAsync)
		return nil, code(dlock.ErrAsync)
	}
	o := in.got[int32(objID)]
	if o == nil {
		in.extra.Inc(dlock.StatObjectNotGet)
		return nil, code(dlock.ErrObjectNotGet)
	}
	return o, 0
}

// umo_atomic64_faa adds add_val and writes the value before the addition.
//
//export umo_atomic64_faa
func umo_atomic64_faa(clientID C.int, objID C.int, addVal C.uint64_t, resVal *C.uint64_t) C.int {
	if resVal == nil {
		return code(dlock.ErrInval)
	}
	o, rc := gotObject(clientID, objID)
	if rc != 0 {
		return rc
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	v, err := o.FetchAndAdd(ctx, uint64(addVal))
	if err != nil {
		return statusOf(err)
	}
	*resVal = C.uint64_t(v)
	return 0
}

// umo_atomic64_cas sets the value to swap_val if it equals cmp_val.
//
//export umo_atomic64_cas
func umo_atomic64_cas(clientID C.int, objID C.int, cmpVal, swapVal C.uint64_t) C.int {
	o, rc := gotObject(clientID, objID)
	if rc != 0 {
		return rc
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	ok, err := o.CompareAndSwap(ctx, uint64(cmpVal), uint64(swapVal))
	switch {
	case err != nil:
		return statusOf(err)
	case !ok:
		return code(dlock.ErrObjectCASFailed)
	}
	return 0
}

// umo_atomic64_get_snapshot writes the current value.
//
//export umo_atomic64_get_snapshot
func umo_atomic64_get_snapshot(clientID C.int, objID C.int, resVal *C.uint64_t) C.int {
	if resVal == nil {
		return code(dlock.ErrInval)
	}
	o, rc := gotObject(clientID, objID)
	if rc != 0 {
		return rc
	}
	ctx, cancel := context.WithTimeout(context.Background(), lockTimeout)
	defer cancel()
	v, err := o.Load(ctx)
	if err != nil {
		return statusOf(err)
	}
	*resVal = C.uint64_t(v)
	return 0
}
