package lockcore

import "github.com/dlock-io/dlock"

// waiter is a queued blocking request. For FAIR it carries its ticket.
type waiter struct {
	Waiter
	tx, ts   uint16 // FAIR ticket: exclusive and shared numbers
	obtained uint32 // FAIR: ticket obtain time (reported in a kept ticket)
}

// waitq is a FIFO (FAIR: ticket-ordered) queue of waiters backed by one
// reused slice; popping the head only moves an offset, so a steady stream of
// waiters does not allocate.
type waitq struct {
	buf  []waiter
	head int
}

func (q *waitq) len() int { return len(q.buf) - q.head }

// at returns the i-th queued waiter (0 = head).
func (q *waitq) at(i int) *waiter { return &q.buf[q.head+i] }

func (q *waitq) compact() {
	if q.head == 0 {
		return
	}
	n := copy(q.buf, q.buf[q.head:])
	clear(q.buf[n:])
	q.buf = q.buf[:n]
	q.head = 0
}

func (q *waitq) push(w waiter) {
	if q.head > 0 && len(q.buf) == cap(q.buf) {
		q.compact()
	}
	q.buf = append(q.buf, w)
}

// insert puts w at position i (0 = head).
func (q *waitq) insert(i int, w waiter) {
	q.compact()
	q.buf = append(q.buf, waiter{})
	copy(q.buf[i+1:], q.buf[i:])
	q.buf[i] = w
}

// remove takes out and returns the i-th waiter.
func (q *waitq) remove(i int) waiter {
	w := q.buf[q.head+i]
	if i == 0 {
		q.buf[q.head] = waiter{}
		q.head++
		if q.head == len(q.buf) {
			q.buf = q.buf[:0]
			q.head = 0
		}
		return w
	}
	j := q.head + i
	copy(q.buf[j:], q.buf[j+1:])
	q.buf[len(q.buf)-1] = waiter{}
	q.buf = q.buf[:len(q.buf)-1]
	return w
}

// find returns the position of the waiter with tag, or -1.
func (q *waitq) find(tag uint64) int {
	for i := q.head; i < len(q.buf); i++ {
		if q.buf[i].Tag == tag {
			return i - q.head
		}
	}
	return -1
}

// ghost is an abandoned FAIR ticket: when its turn comes it is treated as
// granted and released at once, so nobody waits for it.
type ghost struct {
	tx, ts uint16
	shared bool
}

// grantOf builds the Grant answering w.
func grantOf(w *waiter, st dlock.Status, s dlock.LockState, tok uint64) Grant {
	return Grant{Tag: w.Tag, Client: w.Client, Reply: Reply{Status: st, State: s, Token: tok}}
}
