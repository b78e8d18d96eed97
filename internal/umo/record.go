package umo

import "github.com/dlock-io/dlock"

// Record is the whole state of one object, for a server that keeps objects
// outside its memory (a highly available cluster with durable objects).
// Deadlines are on the table's clock, in whole seconds, like now.
type Record struct {
	ID        int32
	Desc      string
	Value     uint64
	Owner     int32 // 0 = orphaned
	Destroyed bool
	MaxLease  uint32
	Getters   map[int32]uint32 // client id → its lease deadline
}

// Export returns the record of object id, and false when there is none
// (never created, or freed).
func (t *Table) Export(id int32) (Record, bool) {
	o := t.byID[id]
	if o == nil {
		return Record{}, false
	}
	r := Record{ID: o.id, Desc: o.desc, Value: o.value, Owner: o.owner, Destroyed: o.destroyed, MaxLease: o.maxLease}
	if o.getters.Len() > 0 {
		r.Getters = make(map[int32]uint32, o.getters.Len())
		for c, d := range o.getters.All() {
			r.Getters[c] = d
		}
	}
	return r, true
}

// Import adds an object from its record, as [Table.Export] returned it. It
// reports false, adding nothing, when the record is unusable: an id or a
// descriptor out of range, a client id ≤ 0, or an id or descriptor the
// table already has.
func (t *Table) Import(r Record) bool {
	if r.ID <= 0 || r.ID > t.idMax || len(r.Desc) < 1 || len(r.Desc) > dlock.MaxDescLen || r.Owner < 0 ||
		t.byID[r.ID] != nil || t.byDesc[r.Desc] != nil {
		return false
	}
	for c := range r.Getters {
		if c <= 0 {
			return false
		}
	}
	o := &object{id: r.ID, desc: r.Desc, value: r.Value, destroyed: r.Destroyed, maxLease: r.MaxLease}
	t.byID[o.id] = o
	t.byDesc[o.desc] = o
	t.setOwner(o, r.Owner)
	for c, d := range r.Getters {
		o.getters.Set(c, d)
		t.index(t.got, c, o.id)
	}
	return true
}

// Touched returns the ids of the objects client has got or owns: those
// [Table.RemoveClient] may change.
func (t *Table) Touched(client int32) []int32 {
	var ids []int32
	for id := range t.got[client] {
		ids = append(ids, id)
	}
	for id := range t.owned[client] {
		if _, ok := t.got[client][id]; !ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// IDOf returns the id of the object named desc, 0 when there is none.
func (t *Table) IDOf(desc []byte) int32 {
	if o := t.byDesc[string(desc)]; o != nil {
		return o.id
	}
	return 0
}
