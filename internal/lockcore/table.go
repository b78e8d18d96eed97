package lockcore

import (
	"slices"
	"sync/atomic"

	"github.com/dlock-io/dlock"
)

// Tokens is the fencing-token counter shared by the locks of a table. It is
// safe for concurrent use. Every grant on any core writes it, so it has a
// cache line of its own: the padding keeps the table's lookups (and
// whatever else the allocator puts beside it) from sharing that line.
type Tokens struct {
	_ [56]byte
	n atomic.Uint64
	_ [56]byte
}

// Next returns a new token, greater than every token returned before.
func (t *Tokens) Next() uint64 { return t.n.Add(1) }

// Raise makes every later token greater than v.
func (t *Tokens) Raise(v uint64) {
	for {
		cur := t.n.Load()
		if cur >= v || t.n.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Last returns the most recent token handed out (or raised to).
func (t *Tokens) Last() uint64 { return t.n.Load() }

// Limits bound a table. Zero fields take the DLock defaults.
type Limits struct {
	MaxLocks int // lock objects existing at once; default dlock.MaxLocks
}

// maxLockID is the largest lock id (ids are 1..0x7FFFFFFF).
const maxLockID = 0x7FFFFFFF

// Table is the set of lock objects of one server: identity by descriptor
// bytes, id allocation, per-client reference sets (SEMANTICS.md §3), the
// lock limit, and what happens when a client is removed.
type Table struct {
	tokens  Tokens
	max     int
	maxID   uint32 // largest id handed out; maxLockID except in tests
	cursor  uint32 // id scan cursor, pre-incremented (first scanned id is 2)
	byDesc  map[string]*Lock
	byID    map[int32]*Lock
	clients map[int32]map[int32]struct{} // client → ids it references
	// spare is the last client set that became empty, kept for the next
	// client set to be made: a client that opens and releases one lock at a
	// time does not make a map (and seed its hash) per open. At most one is
	// kept, and it holds memory the table had in use already.
	spare map[int32]struct{}
}

// NewTable returns an empty table.
func NewTable(lim Limits) *Table {
	if lim.MaxLocks <= 0 {
		lim.MaxLocks = dlock.MaxLocks
	}
	return &Table{
		max:     lim.MaxLocks,
		maxID:   maxLockID,
		cursor:  1,
		byDesc:  make(map[string]*Lock),
		byID:    make(map[int32]*Lock),
		clients: make(map[int32]map[int32]struct{}),
	}
}

// Tokens returns the table's fencing-token counter.
func (t *Table) Tokens() *Tokens { return &t.tokens }

// RaiseTokens makes every later fencing token greater than v (for a server
// continuing after an earlier primary).
func (t *Table) RaiseTokens(v uint64) { t.tokens.Raise(v) }

// Len returns the number of lock objects.
func (t *Table) Len() int { return len(t.byID) }

// Get is get_lock on the server: find the lock named desc or create it with
// type typ (preferred id first, SEMANTICS.md §3), and add client to its references with
// lease (stored, not enforced). It returns the lock's id. Errors: ErrGeneric
// (-1) for a type mismatch with the existing lock; ErrServerNoResource when the
// lock limit is reached or no id is free; ErrInval for an invalid descriptor
// length or type. A repeated Get by the same client is idempotent (the first
// lease stays).
func (t *Table) Get(client int32, desc []byte, typ dlock.LockType, preferred int32, lease uint32) (int32, dlock.Status) {
	if len(desc) == 0 || len(desc) > dlock.MaxDescLen || !typ.Valid() {
		return 0, dlock.ErrInval
	}
	l := t.byDesc[string(desc)]
	if l == nil {
		if len(t.byID) >= t.max {
			return 0, dlock.ErrServerNoResource
		}
		id, ok := t.allocID(preferred)
		if !ok {
			return 0, dlock.ErrServerNoResource
		}
		l = NewLock(typ, &t.tokens)
		l.id, l.desc = id, string(desc)
		t.byDesc[l.desc] = l
		t.byID[id] = l
	} else if l.typ != typ {
		return 0, dlock.ErrGeneric
	}
	if !l.refs.Has(client) {
		l.refs.Add(client, lease)
		set := t.clients[client]
		if set == nil {
			set, t.spare = t.spare, nil
			if set == nil {
				set = make(map[int32]struct{})
			}
			t.clients[client] = set
		}
		set[l.id] = struct{}{}
	}
	return l.id, dlock.Success
}

// allocID picks the id of a new lock: preferred when > 0 and free,
// else the next free id scanning upwards from the cursor, wrapping once.
func (t *Table) allocID(preferred int32) (int32, bool) {
	if preferred > 0 && uint32(preferred) <= t.maxID {
		if _, used := t.byID[preferred]; !used {
			return preferred, true
		}
	}
	for range t.maxID {
		t.cursor++
		if t.cursor > t.maxID {
			t.cursor = 1
		}
		if _, used := t.byID[int32(t.cursor)]; !used {
			return int32(t.cursor), true
		}
	}
	return 0, false
}

// Release is release_lock on the server: remove client's reference to lock
// id (ErrGeneric if it has none). Holds the client still has on the lock are
// released and its queued waiters cancelled first (see [Lock.Drop]), so
// nothing is left stuck. When the last reference goes, the lock is deleted.
func (t *Table) Release(now uint32, client int32, id int32, wake []Grant) (dlock.Status, []Grant) {
	l := t.byID[id]
	if l == nil {
		return dlock.ErrGeneric, wake
	}
	if !l.refs.Has(client) {
		return dlock.ErrGeneric, wake
	}
	wake = t.release(now, client, l, wake)
	if set := t.clients[client]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(t.clients, client)
			t.spare = set
		}
	}
	return dlock.Success, wake
}

// release drops client's holds, waiters and reference on l and deletes l
// when that was its last reference. The client's reference set is the
// caller's business.
func (t *Table) release(now uint32, client int32, l *Lock, wake []Grant) []Grant {
	wake = l.Drop(now, client, wake)
	l.refs.Delete(client)
	if l.refs.Len() > 0 {
		return wake
	}
	for l.q.len() > 0 {
		w := l.q.remove(0)
		wake = append(wake, grantOf(&w, dlock.ErrLockNotGet, dlock.LockState{}, 0))
	}
	delete(t.byDesc, l.desc)
	delete(t.byID, l.id)
	return wake
}

// Lock returns the lock with id, or nil.
func (t *Table) Lock(id int32) *Lock { return t.byID[id] }

// Has reports whether client holds a reference to lock id.
func (t *Table) Has(client int32, id int32) bool {
	l := t.byID[id]
	if l == nil {
		return false
	}
	return l.refs.Has(client)
}

// Lease returns the lease_time client gave when it got lock id.
func (t *Table) Lease(client int32, id int32) (uint32, bool) {
	l := t.byID[id]
	if l == nil {
		return 0, false
	}
	return l.refs.Get(client)
}

// RemoveClient drops everything client has in the table: its holds are
// released, its waiters cancelled, its references removed, locks left
// without references deleted. Waiters answered by the releases are appended
// to wake. Locks are visited in id order.
func (t *Table) RemoveClient(now uint32, client int32, wake []Grant) []Grant {
	set := t.clients[client]
	ids := make([]int32, 0, len(set))
	for id := range set {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if l := t.byID[id]; l != nil {
			wake = t.release(now, client, l, wake)
		}
	}
	delete(t.clients, client)
	return wake
}

// ClientLocks appends to dst the ids of the locks client references, in
// increasing order.
func (t *Table) ClientLocks(client int32, dst []int32) []int32 {
	n := len(dst)
	for id := range t.clients[client] {
		dst = append(dst, id)
	}
	slices.Sort(dst[n:])
	return dst
}

// ForEach calls fn for every lock in increasing id order until fn returns
// false.
func (t *Table) ForEach(fn func(id int32, l *Lock) bool) {
	ids := make([]int32, 0, len(t.byID))
	for id := range t.byID {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if l := t.byID[id]; l != nil && !fn(id, l) {
			return
		}
	}
}

// Named returns the lock whose descriptor is name, or nil.
func (t *Table) Named(name string) *Lock { return t.byDesc[name] }

// Range calls fn for every lock, in no particular order, until fn returns
// false. Unlike ForEach it neither allocates nor sorts.
func (t *Table) Range(fn func(id int32, l *Lock) bool) {
	for id, l := range t.byID {
		if !fn(id, l) {
			return
		}
	}
}
