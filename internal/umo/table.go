package umo

import (
	"math"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/clientmap"
)

// maxID is the largest object id; ids run from 1 to maxID.
const maxID = 0x7FFFFFFF

// Limits bound a [Table]. Zero fields take the DLock defaults.
type Limits struct {
	// MaxObjects is the number of objects that may exist at once, counting
	// destroyed-but-referenced ones (OBJECT_MAX_NUMBER). Zero or negative
	// means dlock.MaxObjects (102400).
	MaxObjects int
}

// object is one atomic64 object.
type object struct {
	id        int32
	desc      string
	value     uint64
	owner     int32 // creator's client id; 0 = orphaned
	destroyed bool
	maxLease  uint32        // latest lease deadline ever granted; not lowered on release
	getters   clientmap.Map // client id → its lease deadline; refcnt is getters.Len()
}

// passed reports whether the object's lease has run out at now.
func (o *object) passed(now uint32) bool { return now > o.maxLease }

// unreferenced reports whether a destroyed object may be freed at now: nobody
// has it or its lease has passed.
func (o *object) unreferenced(now uint32) bool { return o.getters.Len() == 0 || o.passed(now) }

// extend raises max_lease to d if d is later.
func (o *object) extend(d uint32) {
	if d > o.maxLease {
		o.maxLease = d
	}
}

// Table is the set of atomic64 objects of one server: identity by descriptor,
// id allocation, owners, getters with their leases, the object limit, and
// what happens when a client is removed (SEMANTICS.md §10).
type Table struct {
	max    int   // object limit
	idMax  int32 // largest id (maxID; smaller in tests)
	cursor int32 // last id handed out by the scan; the next scan starts at cursor+1

	byID   map[int32]*object
	byDesc map[string]*object
	got    map[int32]map[int32]struct{} // client → ids of objects it has got
	owned  map[int32]map[int32]struct{} // client → ids of objects it owns
}

// NewTable returns an empty table with the given limits. It corresponds to
// the object part of server_start.
func NewTable(lim Limits) *Table {
	if lim.MaxObjects <= 0 {
		lim.MaxObjects = dlock.MaxObjects
	}
	return &Table{
		max:    lim.MaxObjects,
		idMax:  maxID,
		cursor: 1,
		byID:   make(map[int32]*object),
		byDesc: make(map[string]*object),
		got:    make(map[int32]map[int32]struct{}),
		owned:  make(map[int32]map[int32]struct{}),
	}
}

// Len returns the number of objects in the table, destroyed-but-referenced
// ones included: the count that the object limit applies to.
func (t *Table) Len() int { return len(t.byID) }

// deadline returns now+lease, saturating at the largest uint32 (upstream wraps).
func deadline(now, lease uint32) uint32 {
	if d := now + lease; d >= now {
		return d
	}
	return math.MaxUint32
}

// validArgs reports whether a create or get carries a usable client id,
// descriptor (1..512 bytes) and lease (> 0).
func validArgs(client int32, desc []byte, lease uint32) bool {
	return client > 0 && len(desc) >= 1 && len(desc) <= dlock.MaxDescLen && lease > 0
}

// Create is umo_atomic64_create on the server: create the
// object named desc with value init, owned by client, with max_lease
// now+lease, and return its id. The id is preferred (the client's djb2 hash
// of desc) when that is positive and free, otherwise the next free id after
// the table's cursor. Creating takes no reference.
//
// When desc already names an object:
//   - destroyed, still referenced, lease not passed: ErrObjectAlreadyDestroyed;
//   - destroyed otherwise: the object is refreshed — owner := client, its
//     getters are dropped, destroyed := false, max_lease := now+lease,
//     value := init — and Create succeeds with the same id;
//   - caller is the owner or the object is orphaned: max_lease is raised to
//     now+lease and the result is (0, ErrObjectAlreadyCreated); ownership is
//     not transferred and no id is returned;
//   - otherwise (0, ErrObjectAlreadyExisted).
//
// A new object beyond the limit is ErrObjectTooMany; no free id,
// ErrServerNoResource. A client id ≤ 0, a descriptor outside 1..512 bytes or
// a zero lease is ErrInval. Every failure returns id 0.
func (t *Table) Create(now uint32, client int32, desc []byte, preferred int32, lease uint32, init uint64) (id int32, st dlock.Status) {
	if !validArgs(client, desc, lease) {
		return 0, dlock.ErrInval
	}
	if o := t.byDesc[string(desc)]; o != nil {
		switch {
		case o.destroyed && !o.unreferenced(now):
			return 0, dlock.ErrObjectAlreadyDestroyed
		case o.destroyed:
			t.refresh(o, now, client, lease, init)
			return o.id, dlock.Success
		case o.owner == client || o.owner == 0:
			o.extend(deadline(now, lease))
			return 0, dlock.ErrObjectAlreadyCreated
		default:
			return 0, dlock.ErrObjectAlreadyExisted
		}
	}
	if len(t.byID) >= t.max {
		return 0, dlock.ErrObjectTooMany
	}
	id, ok := t.allocID(preferred)
	if !ok {
		return 0, dlock.ErrServerNoResource
	}
	o := &object{id: id, desc: string(desc), value: init, maxLease: deadline(now, lease)}
	t.byID[id] = o
	t.byDesc[o.desc] = o
	t.setOwner(o, client)
	return id, dlock.Success
}

// refresh recycles a destroyed object whose references no longer hold it
// (with the value reset to init; upstream keeps the old value).
func (t *Table) refresh(o *object, now uint32, client int32, lease uint32, init uint64) {
	for g := range o.getters.Clients() {
		t.unindex(t.got, g, o.id)
	}
	o.getters.Reset()
	t.setOwner(o, client)
	o.destroyed = false
	o.maxLease = deadline(now, lease)
	o.value = init
}

// allocID picks the id of a new object: preferred if positive and
// free, else a scan upwards from the cursor that wraps once to 1.
func (t *Table) allocID(preferred int32) (int32, bool) {
	if preferred > 0 && preferred <= t.idMax && t.byID[preferred] == nil {
		return preferred, true
	}
	for range t.idMax {
		t.cursor++
		if t.cursor <= 0 || t.cursor > t.idMax {
			t.cursor = 1
		}
		if t.byID[t.cursor] == nil {
			return t.cursor, true
		}
	}
	return 0, false
}

// Get is umo_atomic64_get on the server: client takes a
// reference to the object named desc, valid until now+lease, and max_lease
// is raised to that deadline; the object's id is returned. A repeated Get by
// the same client takes no further reference; it only renews the client's
// lease. Errors: ErrInval (as [Table.Create]), ErrObjectNotCreate for an
// unknown descriptor, ErrObjectAlreadyDestroyed for a destroyed object.
func (t *Table) Get(now uint32, client int32, desc []byte, lease uint32) (int32, dlock.Status) {
	if !validArgs(client, desc, lease) {
		return 0, dlock.ErrInval
	}
	o := t.byDesc[string(desc)]
	if o == nil {
		return 0, dlock.ErrObjectNotCreate
	}
	if o.destroyed {
		return 0, dlock.ErrObjectAlreadyDestroyed
	}
	if _, ok := o.getters.Get(client); !ok {
		t.index(t.got, client, o.id)
	}
	d := deadline(now, lease)
	o.getters.Set(client, d)
	o.extend(d)
	return o.id, dlock.Success
}

// Release is umo_atomic64_release on the server: drop
// client's reference to object id and its lease entry (max_lease is not
// lowered). A destroyed object is freed when this leaves it unreferenced or
// its lease has passed. ErrObjectNotGet when client has no reference (also
// for an unknown id).
func (t *Table) Release(now uint32, client int32, id int32) dlock.Status {
	o := t.byID[id]
	if o == nil {
		return dlock.ErrObjectNotGet
	}
	if _, ok := o.getters.Get(client); !ok {
		return dlock.ErrObjectNotGet
	}
	t.dropGetter(o, client)
	if o.destroyed && o.unreferenced(now) {
		t.free(o)
	}
	return dlock.Success
}

// Destroy is umo_atomic64_destroy on the server: mark
// object id destroyed, freeing it at once when nobody has it or its lease has
// passed; otherwise its getters keep using it until they release it.
// Errors, in this order: ErrObjectNotCreate for an unknown id,
// ErrObjectInvalidOwner when client is not the owner and the object is not
// orphaned (anyone may destroy an orphan), ErrObjectAlreadyDestroyed.
func (t *Table) Destroy(now uint32, client int32, id int32) dlock.Status {
	o := t.byID[id]
	switch {
	case o == nil:
		return dlock.ErrObjectNotCreate
	case o.owner != client && o.owner != 0:
		return dlock.ErrObjectInvalidOwner
	case o.destroyed:
		return dlock.ErrObjectAlreadyDestroyed
	}
	o.destroyed = true
	if o.unreferenced(now) {
		t.free(o)
	}
	return dlock.Success
}

// FetchAndAdd is umo_atomic64_faa on the server: add delta to the value of
// object id modulo 2^64 and return the value it had before. It works on any
// object that exists (destroyed-but-referenced and refreshed ones too),
// whoever asks (upstream skips every check); an unknown id is ErrObjectNotGet. It does not
// allocate.
func (t *Table) FetchAndAdd(id int32, delta uint64) (old uint64, st dlock.Status) {
	o := t.byID[id]
	if o == nil {
		return 0, dlock.ErrObjectNotGet
	}
	old = o.value
	o.value += delta
	return old, dlock.Success
}

// CompareAndSwap is umo_atomic64_cas on the server: if the value of object id
// is old, set it to new and return Success, otherwise leave it and return
// ErrObjectCASFailed. An unknown id is ErrObjectNotGet (as
// [Table.FetchAndAdd]). It does not allocate.
func (t *Table) CompareAndSwap(id int32, old, new uint64) dlock.Status {
	o := t.byID[id]
	if o == nil {
		return dlock.ErrObjectNotGet
	}
	if o.value != old {
		return dlock.ErrObjectCASFailed
	}
	o.value = new
	return dlock.Success
}

// Load is umo_atomic64_get_snapshot on the server: the value of object id.
// An unknown id is ErrObjectNotGet (as [Table.FetchAndAdd]). It does not
// allocate.
func (t *Table) Load(id int32) (uint64, dlock.Status) {
	o := t.byID[id]
	if o == nil {
		return 0, dlock.ErrObjectNotGet
	}
	return o.value, dlock.Success
}

// RemoveClient drops what client has in the table when the server evicts
// it or it deregisters (client_deinit, where upstream does
// nothing; SEMANTICS.md §10). For each object client had got, its reference and lease
// entry go; then, with "gone" meaning unreferenced or lease passed:
//   - client owned it and it is gone: it is destroyed and freed;
//   - client did not own it, it is destroyed and gone: it is freed.
//
// Every object client still owns afterwards becomes orphaned (owner 0), so
// that any client may destroy it: those it had got and that are not gone
// and those it created but never got (upstream leaves their
// owner dangling).
func (t *Table) RemoveClient(now uint32, client int32) {
	for id := range t.got[client] {
		o := t.byID[id]
		t.dropGetter(o, client)
		if o.unreferenced(now) && (o.owner == client || o.destroyed) {
			t.free(o)
		}
	}
	for id := range t.owned[client] {
		t.setOwner(t.byID[id], 0)
	}
	delete(t.got, client)
	delete(t.owned, client)
}

// Info describes one object, for inspection and tests.
type Info struct {
	ID        int32
	Desc      string
	Value     uint64
	Owner     int32 // 0 = orphaned
	Refs      int   // number of clients that have got it (refcnt)
	MaxLease  uint32
	Destroyed bool
}

// Info returns a description of object id, and whether it exists. There is
// no C counterpart; it serves inspection tools and tests.
func (t *Table) Info(id int32) (Info, bool) {
	o := t.byID[id]
	if o == nil {
		return Info{}, false
	}
	return Info{
		ID:        o.id,
		Desc:      o.desc,
		Value:     o.value,
		Owner:     o.owner,
		Refs:      o.getters.Len(),
		MaxLease:  o.maxLease,
		Destroyed: o.destroyed,
	}, true
}

// dropGetter removes client's reference to o.
func (t *Table) dropGetter(o *object, client int32) {
	o.getters.Delete(client)
	t.unindex(t.got, client, o.id)
}

// setOwner makes client (0: nobody) the owner of o.
func (t *Table) setOwner(o *object, client int32) {
	if o.owner != 0 {
		t.unindex(t.owned, o.owner, o.id)
	}
	o.owner = client
	if client != 0 {
		t.index(t.owned, client, o.id)
	}
}

// free deletes o and every reference to it.
func (t *Table) free(o *object) {
	for g := range o.getters.Clients() {
		t.unindex(t.got, g, o.id)
	}
	t.setOwner(o, 0)
	delete(t.byID, o.id)
	delete(t.byDesc, o.desc)
}

// index records id under client in a per-client index.
func (t *Table) index(m map[int32]map[int32]struct{}, client, id int32) {
	s := m[client]
	if s == nil {
		s = make(map[int32]struct{})
		m[client] = s
	}
	s[id] = struct{}{}
}

// unindex removes id from client's entry in a per-client index. An emptied
// entry stays until [Table.RemoveClient], so that a client that gets and
// releases in a loop does not rebuild it each time.
func (t *Table) unindex(m map[int32]map[int32]struct{}, client, id int32) {
	delete(m[client], id)
}
