package lockcore

// refSet is the set of clients that have a lock open, with the lease each
// gave (get_lock's lease_time). Most locks are open by a few clients: up
// to smallRefs they are kept in a slice searched linearly, which is faster
// than a map lookup on the request path and a fraction of a map's size
// (51 200 locks at the limit); a larger set moves to a map for good.
type refSet struct {
	few  []ref
	many map[int32]uint32 // non-nil once the set outgrew few
}

type ref struct {
	client int32
	lease  uint32
}

// smallRefs is the largest set kept in the slice.
const smallRefs = 8

// get returns client's lease and whether client is in the set.
func (r *refSet) get(client int32) (uint32, bool) {
	if r.many != nil {
		v, ok := r.many[client]
		return v, ok
	}
	for i := range r.few {
		if r.few[i].client == client {
			return r.few[i].lease, true
		}
	}
	return 0, false
}

// has reports whether client is in the set.
func (r *refSet) has(client int32) bool {
	_, ok := r.get(client)
	return ok
}

// add puts client with lease in the set; a client already in it keeps its
// first lease.
func (r *refSet) add(client int32, lease uint32) {
	if r.has(client) {
		return
	}
	if r.many == nil && len(r.few) < smallRefs {
		r.few = append(r.few, ref{client, lease})
		return
	}
	if r.many == nil {
		r.many = make(map[int32]uint32, 2*smallRefs)
		for _, x := range r.few {
			r.many[x.client] = x.lease
		}
		r.few = nil
	}
	r.many[client] = lease
}

// remove takes client out of the set.
func (r *refSet) remove(client int32) {
	if r.many != nil {
		delete(r.many, client)
		return
	}
	for i := range r.few {
		if r.few[i].client == client {
			last := len(r.few) - 1
			r.few[i] = r.few[last]
			r.few = r.few[:last]
			return
		}
	}
}

// len returns the number of clients in the set.
func (r *refSet) len() int {
	if r.many != nil {
		return len(r.many)
	}
	return len(r.few)
}
