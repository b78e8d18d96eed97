// Package clientmap is a small map from client ids to a uint32 (a lease,
// a deadline), the per-lock and per-object bookkeeping of the pure state
// packages. Most locks and objects are used by a few clients: up to Small
// entries are kept in a slice searched linearly, faster than a map lookup
// on the request path and a fraction of a map's size (51 200 locks and
// 102 400 objects at the limits); a larger map moves to a Go map until it
// is reset.
package clientmap

import "iter"

// Small is the largest map kept in the slice.
const Small = 8

// Map maps client ids to values. The zero Map is empty and ready to use.
type Map struct {
	few  []entry
	many map[int32]uint32 // non-nil once the map outgrew few
}

type entry struct {
	client int32
	v      uint32
}

// Get returns client's value and whether client is in the map.
func (m *Map) Get(client int32) (uint32, bool) {
	if m.many != nil {
		v, ok := m.many[client]
		return v, ok
	}
	for i := range m.few {
		if m.few[i].client == client {
			return m.few[i].v, true
		}
	}
	return 0, false
}

// Has reports whether client is in the map.
func (m *Map) Has(client int32) bool {
	_, ok := m.Get(client)
	return ok
}

// Set gives client the value v, adding it if needed.
func (m *Map) Set(client int32, v uint32) {
	if m.many != nil {
		m.many[client] = v
		return
	}
	for i := range m.few {
		if m.few[i].client == client {
			m.few[i].v = v
			return
		}
	}
	if len(m.few) < Small {
		m.few = append(m.few, entry{client, v})
		return
	}
	m.many = make(map[int32]uint32, 2*Small)
	for _, x := range m.few {
		m.many[x.client] = x.v
	}
	m.few = nil
	m.many[client] = v
}

// Add puts client with value v in the map unless it is there already (it
// then keeps its first value).
func (m *Map) Add(client int32, v uint32) {
	if !m.Has(client) {
		m.Set(client, v)
	}
}

// Delete takes client out of the map.
func (m *Map) Delete(client int32) {
	if m.many != nil {
		delete(m.many, client)
		return
	}
	for i := range m.few {
		if m.few[i].client == client {
			last := len(m.few) - 1
			m.few[i] = m.few[last]
			m.few = m.few[:last]
			return
		}
	}
}

// Len returns the number of clients in the map.
func (m *Map) Len() int {
	if m.many != nil {
		return len(m.many)
	}
	return len(m.few)
}

// Reset empties the map.
func (m *Map) Reset() { *m = Map{} }

// Clients yields the clients in the map, in no particular order. The map
// must not change meanwhile.
func (m *Map) Clients() iter.Seq[int32] {
	return func(yield func(int32) bool) {
		for c := range m.All() {
			if !yield(c) {
				return
			}
		}
	}
}

// All yields the clients in the map with their values, in no particular
// order. The map must not change meanwhile.
func (m *Map) All() iter.Seq2[int32, uint32] {
	return func(yield func(int32, uint32) bool) {
		if m.many != nil {
			for c, v := range m.many {
				if !yield(c, v) {
					return
				}
			}
			return
		}
		for _, x := range m.few {
			if !yield(x.client, x.v) {
				return
			}
		}
	}
}
