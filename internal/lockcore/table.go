package lockcore

import (
	"sync/atomic"

	"github.com/dlock-io/dlock"
)

// Tokens is the fencing-token counter shared by the locks of a table. It is
// safe for concurrent use.
type Tokens struct{ n atomic.Uint64 }

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

// Table is the set of lock objects of one server: identity by descriptor
// bytes, id allocation (BEHAVIOR.md §5.2), per-client reference sets
// (§5.3), the lock limit, and what happens when a client is removed.
type Table struct {
	tokens Tokens
	// TODO(lockcore): descriptor index, id index, per-client references, id cursor.
}

// NewTable returns an empty table.
func NewTable(lim Limits) *Table { panic("lockcore: not implemented") }

// Tokens returns the table's fencing-token counter.
func (t *Table) Tokens() *Tokens { return &t.tokens }

// Len returns the number of lock objects.
func (t *Table) Len() int { panic("lockcore: not implemented") }

// Get is get_lock on the server: find the lock named desc or create it with
// type typ (preferred id first, §5.2), and add client to its references with
// lease (stored, not enforced). It returns the lock's id. Errors: ErrGeneric
// (-1) for a type mismatch with the existing lock; ErrServerNoResource when the
// lock limit is reached or no id is free; ErrInval for an invalid descriptor
// length or type. A repeated Get by the same client is idempotent.
func (t *Table) Get(client int32, desc []byte, typ dlock.LockType, preferred int32, lease uint32) (int32, dlock.Status) {
	panic("lockcore: not implemented")
}

// Release is release_lock on the server: remove client's reference to lock
// id (ErrGeneric if it has none). Holds the client still has on the lock are
// released and its queued waiters cancelled first, so nothing is left stuck.
// When the last reference goes, the lock is deleted.
func (t *Table) Release(now uint32, client int32, id int32, wake []Grant) (dlock.Status, []Grant) {
	panic("lockcore: not implemented")
}

// Lock returns the lock with id, or nil.
func (t *Table) Lock(id int32) *Lock { panic("lockcore: not implemented") }

// Has reports whether client holds a reference to lock id.
func (t *Table) Has(client int32, id int32) bool { panic("lockcore: not implemented") }

// RemoveClient drops everything client has in the table: its holds are
// released, its waiters cancelled, its references removed, locks left
// without references deleted. Waiters answered by the releases are appended
// to wake.
func (t *Table) RemoveClient(now uint32, client int32, wake []Grant) []Grant {
	panic("lockcore: not implemented")
}
