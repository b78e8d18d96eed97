package umo

import "iter"

// leases maps the clients that have got an object to their lease
// deadlines. Most objects are got by a few clients: up to smallLeases they
// are kept in a slice searched linearly, a fraction of a map's size (102 400
// objects at the limit); a larger set moves to a map until it is reset.
type leases struct {
	few  []lease
	many map[int32]uint32 // non-nil once the set outgrew few
}

type lease struct {
	client   int32
	deadline uint32
}

// smallLeases is the largest set kept in the slice.
const smallLeases = 8

// get returns client's deadline and whether client is in the set.
func (l *leases) get(client int32) (uint32, bool) {
	if l.many != nil {
		d, ok := l.many[client]
		return d, ok
	}
	for i := range l.few {
		if l.few[i].client == client {
			return l.few[i].deadline, true
		}
	}
	return 0, false
}

// set gives client the deadline d, adding it to the set if needed.
func (l *leases) set(client int32, d uint32) {
	if l.many != nil {
		l.many[client] = d
		return
	}
	for i := range l.few {
		if l.few[i].client == client {
			l.few[i].deadline = d
			return
		}
	}
	if len(l.few) < smallLeases {
		l.few = append(l.few, lease{client, d})
		return
	}
	l.many = make(map[int32]uint32, 2*smallLeases)
	for _, x := range l.few {
		l.many[x.client] = x.deadline
	}
	l.few = nil
	l.many[client] = d
}

// del takes client out of the set.
func (l *leases) del(client int32) {
	if l.many != nil {
		delete(l.many, client)
		return
	}
	for i := range l.few {
		if l.few[i].client == client {
			last := len(l.few) - 1
			l.few[i] = l.few[last]
			l.few = l.few[:last]
			return
		}
	}
}

// len returns the number of clients in the set.
func (l *leases) len() int {
	if l.many != nil {
		return len(l.many)
	}
	return len(l.few)
}

// reset empties the set.
func (l *leases) reset() { *l = leases{} }

// clients yields the clients in the set, in no particular order. The set
// must not change meanwhile.
func (l *leases) clients() iter.Seq[int32] {
	return func(yield func(int32) bool) {
		if l.many != nil {
			for c := range l.many {
				if !yield(c) {
					return
				}
			}
			return
		}
		for _, x := range l.few {
			if !yield(x.client) {
				return
			}
		}
	}
}

// all yields the clients in the set with their deadlines, in no particular
// order. The set must not change meanwhile.
func (l *leases) all() iter.Seq2[int32, uint32] {
	return func(yield func(int32, uint32) bool) {
		if l.many != nil {
			for c, d := range l.many {
				if !yield(c, d) {
					return
				}
			}
			return
		}
		for _, x := range l.few {
			if !yield(x.client, x.deadline) {
				return
			}
		}
	}
}
