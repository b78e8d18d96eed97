package dlock_test

// The checkers of the robustness suite (robustness_test.go). Each takes a
// history — every operation the workers made, with the instants it was
// invoked and completed — and returns the violations it finds. They are pure
// functions of the history so that robust_mutation_test.go can show that
// each one fails on a history that breaks its rule.

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kinds of operations in a history.
const (
	opLock   = "lock"   // a blocking acquisition (exclusive or shared)
	opUnlock = "unlock" // the release of the acquisition before it
	opRead   = "read"   // a fenced read of the storage behind a lock
	opWrite  = "write"  // a fenced write of the storage behind a lock
	opFAA    = "faa"    // fetch-and-add on an atomic64
	opCAS    = "cas"    // compare-and-swap on an atomic64
	opLoad   = "load"   // load of an atomic64
)

// histOp is one operation of a history. Times are wall-clock nanoseconds
// (comparable across the test's processes on one machine).
type histOp struct {
	Proc     int    `json:"proc"`  // worker (client) that made it
	Kind     string `json:"kind"`  // op* above
	Key      string `json:"key"`   // lock or object name
	Leased   bool   `json:"lease"` // the lock has a lease (atomic, fair)
	TTL      int64  `json:"ttl"`   // its lease, ns
	Shared   bool   `json:"shared,omitempty"`
	Invoke   int64  `json:"invoke"`
	Retry    int64  `json:"retry,omitempty"` // unlock: invocation of the last attempt (0: one attempt)
	Complete int64  `json:"complete"`
	OK       bool   `json:"ok"`                // it succeeded
	Unknown  bool   `json:"unknown,omitempty"` // its outcome is unknown (lost reply, severed connection)
	Token    uint64 `json:"token,omitempty"`   // lock: the grant's token; unlock/read/write: the hold's
	A        uint64 `json:"a,omitempty"`       // faa: delta; cas: old
	B        uint64 `json:"b,omitempty"`       // cas: new
	Value    uint64 `json:"value,omitempty"`   // faa: previous value; load/read: value; write: value written
	Err      string `json:"err,omitempty"`
}

// history collects operations from concurrent workers.
type history struct {
	mu  sync.Mutex
	ops []histOp
}

func (h *history) add(op histOp) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *history) snapshot() []histOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]histOp(nil), h.ops...)
}

// save writes the history as JSON lines, ordered by invocation.
func (h *history) save(path string) error {
	ops := h.snapshot()
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].Invoke < ops[j].Invoke })
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, op := range ops {
		if err := enc.Encode(op); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// store is the fenced storage the locks protect: one counter per lock. A
// read or write carries the holder's fencing token and is accepted only if
// the token is at least the highest the storage has seen for that lock; an
// accepted one raises that mark. (Fencing the read too is what makes a
// read-modify-write safe: a holder whose lease ran out cannot read, then
// write over, a newer holder's update.) A shared holder's read is checked
// but raises nothing: shared holds run side by side and their tokens are
// not ordered among themselves.
type store interface {
	read(key string, token uint64, shared bool) (uint64, bool)
	write(key string, token uint64, v uint64) bool
	// final returns every key's value and number of accepted writes.
	final() map[string][2]uint64
}

type fencedStore struct {
	mu     sync.Mutex
	high   map[string]uint64
	value  map[string]uint64
	writes map[string]uint64
	// acceptStale is the test-only mutation: a storage that forgets to
	// check tokens (robust_mutation_test.go).
	acceptStale bool
}

func newFencedStore() *fencedStore {
	return &fencedStore{high: map[string]uint64{}, value: map[string]uint64{}, writes: map[string]uint64{}}
}

func (s *fencedStore) admit(key string, token uint64, raise bool) bool {
	if token < s.high[key] && !s.acceptStale {
		return false
	}
	if raise {
		s.high[key] = max(s.high[key], token)
	}
	return true
}

func (s *fencedStore) read(key string, token uint64, shared bool) (uint64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.admit(key, token, !shared) {
		return 0, false
	}
	return s.value[key], true
}

func (s *fencedStore) write(key string, token uint64, v uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.admit(key, token, true) {
		return false
	}
	s.value[key] = v
	s.writes[key]++
	return true
}

func (s *fencedStore) final() map[string][2]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string][2]uint64{}
	for k, n := range s.writes {
		m[k] = [2]uint64{s.value[k], n}
	}
	return m
}

// checkStorage: every accepted write incremented the value its writer read
// under the same hold, so with working fencing no update is lost: each
// counter equals its number of accepted writes.
func checkStorage(s store) []string {
	var bad []string
	for key, vw := range s.final() {
		if vw[0] != vw[1] {
			bad = append(bad, fmt.Sprintf("storage %s: value %d after %d accepted writes: an update was lost (a stale holder's write was accepted)", key, vw[0], vw[1]))
		}
	}
	sort.Strings(bad)
	return bad
}

// hold is one acquisition and what the history says about its end.
type hold struct {
	acq    histOp
	unlock *histOp // its unlock, if the worker got to make one
}

// holds pairs each successful acquisition with the unlock after it.
func holds(ops []histOp) map[string][]hold {
	byProc := map[int][]histOp{}
	for _, op := range ops {
		if op.Kind == opLock || op.Kind == opUnlock {
			byProc[op.Proc] = append(byProc[op.Proc], op)
		}
	}
	out := map[string][]hold{}
	for _, list := range byProc {
		sort.SliceStable(list, func(i, j int) bool { return list[i].Invoke < list[j].Invoke })
		for i, op := range list {
			if op.Kind != opLock || !op.OK {
				continue
			}
			h := hold{acq: op}
			if i+1 < len(list) && list[i+1].Kind == opUnlock && list[i+1].Key == op.Key && list[i+1].Token == op.Token {
				u := list[i+1]
				h.unlock = &u
			}
			out[op.Key] = append(out[op.Key], h)
		}
	}
	return out
}

// leaseSlack is how much earlier than request+TTL a lease may end by the
// server's terms. None: the server counts whole seconds, and a hold granted
// within second s with a TTL of n seconds lasts through second s+n, so at
// least n seconds after the grant, which came after the request was sent
// (TestBlockingLockWokenOnUnlockAndExpiry pins this down).
const leaseSlack = 0

// certain returns the interval during which the holder certainly held the
// lock by the server's terms: from the acquisition's reply until its unlock
// was first tried (an attempt whose reply was lost may have released it)
// if the unlock succeeded (the server found it still held then); for a
// leased lock, also no longer than the lease surely ran (the grant came
// after the request was sent); for a lock without a lease whose unlock
// failed, not at all (the hold may have been lost with the session).
func (h hold) certain() (from, to int64) {
	from = h.acq.Complete
	switch {
	case h.acq.Leased:
		to = h.acq.Invoke + h.acq.TTL - int64(leaseSlack)
		if h.unlock != nil {
			to = min(to, h.unlock.Invoke)
		}
	case h.unlock != nil && h.unlock.OK:
		to = h.unlock.Invoke
	default:
		to = from
	}
	return from, to
}

// grants returns the successful acquisitions that are new grants: not the
// reentrant holds a client takes on a lock it still holds (the same token
// again, with no successful unlock of that token by that client between).
func grants(ops []histOp) []histOp {
	type pt struct {
		proc  int
		key   string
		token uint64
	}
	sorted := append([]histOp(nil), ops...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Invoke < sorted[j].Invoke })
	refs := map[pt]int{} // holds of the same grant not yet unlocked
	var out []histOp
	for _, op := range sorted {
		k := pt{op.Proc, op.Key, op.Token}
		switch {
		case op.Kind == opLock && op.OK:
			if refs[k] == 0 || op.Token == 0 {
				out = append(out, op)
			}
			refs[k]++
		case op.Kind == opUnlock && op.OK && refs[k] > 0:
			refs[k]--
		}
	}
	return out
}

// checkTokens: per lock, fencing tokens are unique, and a grant that
// completed before another was requested has the lower token.
func checkTokens(ops []histOp) []string {
	var bad []string
	per := map[string][]histOp{}
	for _, op := range grants(ops) {
		per[op.Key] = append(per[op.Key], op)
	}
	keys := sortedKeys(per)
	for _, key := range keys {
		list := per[key]
		seen := map[uint64]histOp{}
		for _, op := range list {
			if op.Token == 0 {
				bad = append(bad, fmt.Sprintf("lock %s: proc %d was granted without a token", key, op.Proc))
				continue
			}
			if prev, dup := seen[op.Token]; dup {
				bad = append(bad, fmt.Sprintf("lock %s: token %d granted twice (procs %d and %d)", key, op.Token, prev.Proc, op.Proc))
			}
			seen[op.Token] = op
		}
		byComplete := append([]histOp(nil), list...)
		sort.Slice(byComplete, func(i, j int) bool { return byComplete[i].Complete < byComplete[j].Complete })
		byInvoke := append([]histOp(nil), list...)
		sort.Slice(byInvoke, func(i, j int) bool { return byInvoke[i].Invoke < byInvoke[j].Invoke })
		var maxBefore histOp
		k := 0
		for _, b := range byInvoke {
			for k < len(byComplete) && byComplete[k].Complete < b.Invoke {
				if byComplete[k].Token > maxBefore.Token {
					maxBefore = byComplete[k]
				}
				k++
			}
			if maxBefore.Token >= b.Token && maxBefore.Token != 0 {
				bad = append(bad, fmt.Sprintf("lock %s: token %d (proc %d, requested %s) not above token %d (proc %d, granted earlier %s)",
					key, b.Token, b.Proc, stamp(b.Invoke), maxBefore.Token, maxBefore.Proc, stamp(maxBefore.Complete)))
			}
		}
	}
	return bad
}

// checkHolders: never two holders at once whose holds were both certainly
// valid by the server's terms (at least one of them exclusive), and a fenced
// access refused during a hold that was certainly valid means someone else
// held the lock with a newer token meanwhile.
func checkHolders(ops []histOp) []string {
	var bad []string
	all := holds(ops)
	for _, key := range sortedKeys(all) {
		hs := all[key]
		sort.Slice(hs, func(i, j int) bool { return hs[i].acq.Complete < hs[j].acq.Complete })
		for i := range hs {
			fi, ti := hs[i].certain()
			for j := i + 1; j < len(hs); j++ {
				fj, tj := hs[j].certain()
				if fj >= ti {
					break // sorted by start: no later hold overlaps i
				}
				if hs[i].acq.Proc == hs[j].acq.Proc || (hs[i].acq.Shared && hs[j].acq.Shared) || fj >= tj || fi >= ti {
					continue
				}
				bad = append(bad, fmt.Sprintf("lock %s: two holders at once: proc %d (token %d, %s..%s) and proc %d (token %d, %s..%s)",
					key, hs[i].acq.Proc, hs[i].acq.Token, stamp(fi), stamp(ti), hs[j].acq.Proc, hs[j].acq.Token, stamp(fj), stamp(tj)))
			}
		}
	}
	// Refused fenced accesses during a certain hold.
	type pk struct {
		proc  int
		key   string
		token uint64
	}
	byHold := map[pk]hold{}
	for key, hs := range all {
		for _, h := range hs {
			byHold[pk{h.acq.Proc, key, h.acq.Token}] = h
		}
	}
	for _, op := range ops {
		if (op.Kind != opRead && op.Kind != opWrite) || op.OK {
			continue
		}
		h, ok := byHold[pk{op.Proc, op.Key, op.Token}]
		if !ok {
			continue
		}
		if from, to := h.certain(); op.Complete < to && op.Invoke >= from {
			bad = append(bad, fmt.Sprintf("lock %s: proc %d's %s with token %d refused by the storage at %s while its hold was certainly valid (until %s)",
				op.Key, op.Proc, op.Kind, op.Token, stamp(op.Complete), stamp(to)))
		}
	}
	return bad
}

// checkUnlocks: an unlock that succeeds after another client was granted
// the lock with a newer token (its lease ran out and someone took over) is
// a lie: the holder was told it still held a lock it had lost.
func checkUnlocks(ops []histOp) []string {
	var bad []string
	per := map[string][]histOp{}
	for _, op := range grants(ops) {
		per[op.Key] = append(per[op.Key], op)
	}
	for _, op := range ops {
		if op.Kind != opUnlock || !op.OK {
			continue
		}
		last := op.Invoke // the attempt that succeeded
		if op.Retry != 0 {
			last = op.Retry
		}
		for _, g := range per[op.Key] {
			if g.Proc != op.Proc && g.Token > op.Token && g.Complete < last && !(g.Shared && op.Shared) {
				bad = append(bad, fmt.Sprintf("lock %s: proc %d unlocked token %d successfully at %s after proc %d took over with token %d at %s",
					op.Key, op.Proc, op.Token, stamp(last), g.Proc, g.Token, stamp(g.Complete)))
				break
			}
		}
	}
	return bad
}

// checkFAA: per object, fetch-and-add results are unique (each add saw a
// distinct previous value), and when the final value is known it equals the
// initial value plus the acknowledged adds plus some of those whose outcome
// is unknown. finals maps an object to its final value (missing: unknown);
// every add starts from 0.
func checkFAA(ops []histOp, finals map[string]uint64) []string {
	var bad []string
	type acc struct {
		acked, unknown uint64
		seen           map[uint64]int
	}
	per := map[string]*acc{}
	for _, op := range ops {
		if op.Kind != opFAA {
			continue
		}
		a := per[op.Key]
		if a == nil {
			a = &acc{seen: map[uint64]int{}}
			per[op.Key] = a
		}
		switch {
		case op.OK:
			a.acked += op.A
			if p, dup := a.seen[op.Value]; dup {
				bad = append(bad, fmt.Sprintf("object %s: fetch-and-add returned %d twice (procs %d and %d)", op.Key, op.Value, p, op.Proc))
			}
			a.seen[op.Value] = op.Proc
		case op.Unknown:
			a.unknown += op.A
		}
	}
	for _, key := range sortedKeys(per) {
		a := per[key]
		f, ok := finals[key]
		if !ok {
			continue
		}
		if f < a.acked || f > a.acked+a.unknown {
			bad = append(bad, fmt.Sprintf("object %s: final value %d, want %d acknowledged adds plus at most %d of unknown outcome", key, f, a.acked, a.unknown))
		}
	}
	return bad
}

// casInput is one operation on a CAS register for porcupine.
type casInput struct {
	load     bool
	old, new uint64
}

type casOutput struct {
	ok      bool   // cas: swapped
	value   uint64 // load: the value
	unknown bool   // outcome unknown: it may or may not have happened
}

// casModel is a 64-bit register with load and compare-and-swap. An
// operation whose outcome is unknown may have taken effect or not.
var casModel = porcupine.Model{
	Init: func() interface{} { return uint64(0) },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		s, in, out := state.(uint64), input.(casInput), output.(casOutput)
		switch {
		case in.load:
			return out.unknown || out.value == s, s
		case out.unknown:
			if s == in.old {
				return true, in.new
			}
			return true, s
		case out.ok:
			return s == in.old, in.new
		default:
			return s != in.old, s
		}
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(casInput), output.(casOutput)
		if in.load {
			return fmt.Sprintf("load() -> %d", out.value)
		}
		return fmt.Sprintf("cas(%d, %d) -> %v (unknown %v)", in.old, in.new, out.ok, out.unknown)
	},
}

// checkCAS: per object, the loads and compare-and-swaps are linearizable
// (porcupine). An operation of unknown outcome is given an open end (it may
// take effect any time after its invocation). Every register starts at 0.
func checkCAS(ops []histOp, timeout time.Duration) []string {
	var bad []string
	per := map[string][]porcupine.Operation{}
	for _, op := range ops {
		if op.Kind != opCAS && op.Kind != opLoad {
			continue
		}
		if !op.OK && !op.Unknown {
			continue // refused without effect (e.g. not ready)
		}
		in := casInput{load: op.Kind == opLoad, old: op.A, new: op.B}
		out := casOutput{ok: op.OK && op.Value == 1, value: op.Value, unknown: op.Unknown}
		if op.Kind == opCAS {
			out.value = 0
		}
		ret := op.Complete
		if op.Unknown {
			ret = 1<<63 - 1
		}
		per[op.Key] = append(per[op.Key], porcupine.Operation{ClientId: op.Proc, Input: in, Call: op.Invoke, Output: out, Return: ret})
	}
	for _, key := range sortedKeys(per) {
		switch porcupine.CheckOperationsTimeout(casModel, per[key], timeout) {
		case porcupine.Illegal:
			bad = append(bad, fmt.Sprintf("object %s: the %d loads and compare-and-swaps are not linearizable", key, len(per[key])))
		case porcupine.Unknown:
			bad = append(bad, fmt.Sprintf("object %s: linearizability check of %d operations did not finish in %v", key, len(per[key]), timeout))
		}
	}
	return bad
}

// checkLiveness: after the last fault healed (at healed), every worker
// completed an operation and every lock was granted, within bound.
func checkLiveness(ops []histOp, procs []int, keys []string, healed int64, bound time.Duration) []string {
	var bad []string
	end := healed + int64(bound)
	procOK, keyOK := map[int]bool{}, map[string]bool{}
	for _, op := range ops {
		if op.OK && op.Complete >= healed && op.Complete <= end {
			procOK[op.Proc] = true
		}
	}
	// A lock makes progress when it is granted anew: a reentrant hold of a
	// client that never let go does not count.
	for _, op := range grants(ops) {
		if op.Complete >= healed && op.Complete <= end {
			keyOK[op.Key] = true
		}
	}
	for _, p := range procs {
		if !procOK[p] {
			bad = append(bad, fmt.Sprintf("worker %d made no progress within %v after the last fault healed at %s", p, bound, stamp(healed)))
		}
	}
	for _, k := range keys {
		if !keyOK[k] {
			bad = append(bad, fmt.Sprintf("lock %s was granted to nobody within %v after the last fault healed at %s", k, bound, stamp(healed)))
		}
	}
	return bad
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func stamp(ns int64) string { return time.Unix(0, ns).UTC().Format("15:04:05.000000") }
