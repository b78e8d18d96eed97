package dlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// Lock order of the client's mutexes. A goroutine holding one of them may
// take only those listed after it; none is held across a blocking read.
//
//	Client.reinitMu  serialises Reinit (recovery.go)
//	Lock.mu          serialises the operations on one lock; a batch takes
//	                 several, in lock id order (lockSet). An asynchronous
//	                 request (pipeline.go) holds it from its start until its
//	                 reply or failure is settled, by whichever goroutine reads
//	                 it, under mux.mu: there it is only released, never taken
//	Atomic64.mu      an object's opened flag; nothing is taken under it
//	mux.wmu          the write buffer; nothing is taken under it
//	mux.mu           pending calls and the read role; the mux's lost hook
//	                 runs under it and takes Client.mu
//	Client.mu        the client's tables, lock entries, counters and
//	                 recovery state; no mux method is called under it
//
// So a caller holding Client.mu never sends: what a lock step has to tell
// the server (an abandoned fair ticket) is sent after Client.mu is released.

// mux multiplexes requests over one connection (TCP, TLS or Unix), matching
// replies to calls by request id. It knows nothing of locks: the client
// learns of calls lost with a connection, of the connection's failure and
// of replies nobody waits for through its hooks.
//
// Writes: a caller appends its frame to a buffer and writes it itself unless
// another goroutine is writing, which then sends it too, so concurrent
// requests share system calls.
//
// Reads follow a leader/follower scheme: a caller waiting for its reply
// reads the socket itself when nobody else does (the leader), handing other
// replies to their callers; the others wait (followers) and one of them is
// offered the read role when the leader has its reply. A lone caller thus
// reads its own reply without a goroutine hand-off. When the connection has
// been idle for a while, a background goroutine takes the read role so that
// a lost connection is noticed (and automatic recovery starts) even when the
// application is not calling; a caller that arrives then kicks it out with a
// read deadline in the past.
//
// Frames are read whole from the buffered reader before they are consumed,
// so a read that a deadline interrupts loses nothing: the next reader
// resumes where it stopped.
type mux struct {
	hooks muxHooks

	// inflight is len(pending), readable without mu (write coalescing).
	inflight atomic.Int32
	// longWait is set when a blocking request waited longer than
	// quickWait for its reply, cleared when one was answered within it:
	// while set, a blocking request watches its ctx from the start (see
	// lead).
	longWait atomic.Bool

	wmu      sync.Mutex
	wconn    net.Conn
	wbuf     []byte
	wspare   []byte
	flushing bool

	mu      sync.Mutex // everything below
	pending callTable
	free    []*call
	nextID  uint32
	calls   uint64 // requests made so far (idle detection)
	err     error  // why calls fail: the connection broke, or closed
	closing bool
	conn    net.Conn
	br      *bufio.Reader
	reader  int  // who reads conn: readerNone, readerCaller, readerBackground
	kicked  bool // the background reader was asked to give the role up
	// leadCtx is the ctx of a leader whose read has no AfterFunc (a short
	// request whose ctx can end): the idle goroutine kicks it out
	// (leadKicked) once leadCtx has ended.
	leadCtx    context.Context
	leadKicked bool
	// The callers waiting for a reply while another reads (followers), in
	// the order they started to wait: a list through call.fprev/fnext, so
	// that a follower leaves it in O(1) when its reply is in or it stops
	// waiting, and a leader's release offers the role to a live one.
	fhead, ftail *call
	// readerGone is signalled (on mu) when the read role is given up.
	readerGone sync.Cond
	// rh, big and bigLen belong to whoever holds the read role: the header
	// being read and, for a frame larger than the reader's buffer, its
	// body so far (bigLen > 0 while one is being read).
	rh     wire.Header
	big    []byte
	bigLen int

	// kick belongs to whoever holds the read role (see lead).
	kick kicker

	quit   chan struct{} // closed by stop: ends the idle watch
	idleWG sync.WaitGroup
}

// muxHooks tell the client what happens to the connection. Each may be nil.
type muxHooks struct {
	// lost is called, with mux.mu held, for every call pending on a
	// connection that failed: its reply will not come, and whether the
	// server executed the request is unknown. It must not call the mux.
	lost func(cl *call)
	// failed is called, with no lock held, once the current connection has
	// failed and its pending calls were failed (not when it was closed by
	// detach or stop).
	failed func(err error)
	// late is called, with no lock held, for a reply that no call waits for
	// (its caller gave up). body is valid only during the call.
	late func(h *wire.Header, body []byte)
}

// idleCheck is how often the background goroutine looks for an idle
// connection to watch, and for a leader whose ctx ended while it reads
// without a deadline (see lead).
const idleCheck = 100 * time.Millisecond

// quickWait is how long a blocking request reads for its reply before it
// registers for the end of its ctx: most replies come within it, and only a
// call that has to wait longer pays for the registration. A cancel during
// the first quickWait is noticed when it has passed. Once a blocking
// request on the connection had to wait longer, the next ones register at
// once (mux.longWait), until one is answered within quickWait again.
const quickWait = 2 * time.Millisecond

// Who reads the connection (mux.reader).
const (
	readerNone = iota
	readerCaller
	readerBackground
)

// call is one request in flight.
type call struct {
	id     uint32
	conn   net.Conn      // the connection the request goes out on
	done   chan struct{} // signalled when the reply is in or the read role is offered
	status Status
	typ    wire.Type
	body   []byte
	err    error
	// finished is set (under mux.mu) once the reply or a failure is in.
	finished bool
	// following is set while the call is on the followers list (fprev,
	// fnext), waiting to be offered the read role. fctx is its caller's ctx
	// when the follower waits for cl.done alone (a short call without a
	// deadline): the idle goroutine signals it once fctx has ended.
	following    bool
	fprev, fnext *call
	fctx         context.Context
	// long marks a blocking lock request, which may wait for a long time.
	long bool
	// drain marks a pipeline's waiter (pipeline.go): as the leader it
	// reads on while whole replies are buffered.
	drain bool
	// locks are the ids of the locks a lock request (single or batch)
	// operates on: if the connection fails before the reply is in, the
	// outcome on each is unknown and is resolved on reconnection.
	locks  [MaxBatch]int32
	nlocks int
	// async is the asynchronous request the call carries (pipeline.go),
	// nil for a call a goroutine waits for: its reply or failure is
	// handed to it under mu instead of signalling done.
	async *Request
}

// setLocks records the lock ids a request operates on. Call it before the
// request is sent.
func (cl *call) setLocks(ids ...int32) {
	cl.nlocks = copy(cl.locks[:], ids)
}

// pastDeadline, set as a read deadline, makes a blocked read return at once.
var pastDeadline = time.Unix(1, 0)

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// newMux starts multiplexing over nc, with a background goroutine that
// watches the connection while it is idle; stop ends it.
func newMux(nc net.Conn, hooks muxHooks) *mux {
	m := &mux{
		hooks:  hooks,
		wbuf:   make([]byte, 0, 4096),
		wspare: make([]byte, 0, 4096),
		quit:   make(chan struct{}),
	}
	m.readerGone.L = &m.mu
	m.kick.init()
	m.attach(nc)
	m.idleWG.Add(1)
	go m.idleLoop()
	return m
}

// readBufSize is the size of the connection's read buffer. A frame that
// fits is read whole before it is consumed; a larger one (rare: only
// administrative replies get that big) is read into mux.big.
const readBufSize = 16 << 10

// attach makes nc the connection and clears the failure.
func (m *mux) attach(nc net.Conn) {
	m.wmu.Lock()
	m.wconn = nc
	// Frames queued for the connection that is gone belong to calls that
	// were failed with it: they must not go out on its successor.
	m.wbuf = m.wbuf[:0]
	m.wmu.Unlock()
	m.mu.Lock()
	m.conn = nc
	m.br = bufio.NewReaderSize(nc, readBufSize)
	m.bigLen = 0
	m.err = nil
	m.mu.Unlock()
}

// detach closes the current connection and waits until nobody reads it; the
// calls pending on it fail (the lost hook sees them; failed is not called).
func (m *mux) detach() {
	m.mu.Lock()
	nc := m.conn
	m.mu.Unlock()
	nc.Close()
	m.mu.Lock()
	for m.reader != readerNone {
		m.readerGone.Wait()
	}
	m.mu.Unlock()
	m.failConn(nc, net.ErrClosed, false)
}

// close marks the mux closed: every call from now fails with ErrClosed. It
// reports false if it was closed already.
func (m *mux) close() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closing {
		return false
	}
	m.closing = true
	m.err = ErrClosed
	return true
}

// stop ends the idle watch and closes the connection (see detach).
func (m *mux) stop() {
	close(m.quit)
	m.detach()
	m.idleWG.Wait()
}

// replaceErr replaces the error calls fail with while the connection is
// failed (and the mux not closed).
func (m *mux) replaceErr(err error) {
	m.mu.Lock()
	if m.err != nil && !m.closing {
		m.err = err
	}
	m.mu.Unlock()
}

// newCall registers a call record with a fresh request id.
func (m *mux) newCall() (*call, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.newCallLocked()
}

// newLockCall is newCall for a lock request on the locks ids (long: a
// blocking one): they are recorded before the call is registered, as a
// failure of the connection (failConn's lost hook) reads them at once.
func (m *mux) newLockCall(long bool, ids []int32) (*call, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cl, err := m.newCallLocked()
	if err == nil {
		cl.long = long
		cl.setLocks(ids...)
	}
	return cl, err
}

// newCallLocked is newCall with m.mu held.
func (m *mux) newCallLocked() (*call, error) {
	if m.err != nil {
		return nil, m.err
	}
	var cl *call
	if n := len(m.free); n > 0 {
		cl = m.free[n-1]
		m.free = m.free[:n-1]
	} else {
		cl = &call{done: make(chan struct{}, 1)}
	}
	m.pending.reserve()
	for {
		// An id whose slot is free: at most half the slots are taken.
		m.nextID++
		if m.nextID != 0 && m.pending.free(m.nextID) {
			break
		}
	}
	m.calls++
	cl.id = m.nextID
	cl.conn = m.conn
	cl.err = nil
	cl.nlocks = 0
	cl.finished = false
	cl.following = false
	cl.fctx = nil
	cl.long = false
	cl.async = nil
	select {
	case <-cl.done: // a stale signal from the record's previous use
	default:
	}
	m.pending.put(cl)
	m.inflight.Store(int32(m.pending.n))
	return cl, nil
}

// putCall returns a finished call record to the free list.
func (m *mux) putCall(cl *call) {
	m.mu.Lock()
	if len(m.free) < 256 && cl.finished {
		m.free = append(m.free, cl)
	}
	m.mu.Unlock()
}

// abandon forgets a call whose caller gave up; its reply, if it comes, goes
// to the late hook. It reports false if the reply is in already.
func (m *mux) abandon(cl *call) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cl.finished {
		return false
	}
	m.pending.take(cl.id)
	m.inflight.Store(int32(m.pending.n))
	return true
}

// send appends a frame to the write buffer and writes it unless another
// goroutine is writing already, in which case that one sends it too. A
// write failure fails the connection.
func (m *mux) send(encode func(dst []byte) []byte) {
	m.wmu.Lock()
	m.wbuf = encode(m.wbuf)
	m.flushLocked(true)
}

// sendCall is send for the request of call cl. If cl's connection was
// replaced since cl was made (cl failed with it, and the reconnection may
// have resolved its locks already), the frame is dropped: it must not go
// out on the successor.
func (m *mux) sendCall(cl *call, encode func(dst []byte) []byte) {
	m.wmu.Lock()
	if m.wconn != cl.conn {
		m.wmu.Unlock()
		return
	}
	m.wbuf = encode(m.wbuf)
	m.flushLocked(true)
}

// sendBatch sends frames encoded for the calls of connection nc, in one
// write unless another goroutine is writing; if nc is not the current
// connection any more (its calls were failed), they are dropped.
func (m *mux) sendBatch(nc net.Conn, frames []byte) {
	m.wmu.Lock()
	if m.wconn != nc {
		m.wmu.Unlock()
		return
	}
	m.wbuf = append(m.wbuf, frames...)
	m.flushLocked(false)
}

// flushLocked writes the write buffer unless another goroutine is writing
// it already; it is called with m.wmu held and releases it. yield lets
// other callers append their frames first when requests are in flight.
func (m *mux) flushLocked(yield bool) {
	if m.flushing {
		m.wmu.Unlock()
		return
	}
	m.flushing = true
	if yield && m.inflight.Load() > 1 {
		// Other requests are in flight: their callers are likely about to
		// send too. Let them append first so one write carries them all.
		m.wmu.Unlock()
		runtime.Gosched()
		m.wmu.Lock()
	}
	for len(m.wbuf) > 0 {
		buf := m.wbuf
		m.wbuf = m.wspare[:0]
		nc := m.wconn
		m.wmu.Unlock()
		_, err := nc.Write(buf)
		m.wmu.Lock()
		m.wspare = buf[:0]
		if err != nil {
			m.wbuf = m.wbuf[:0]
			m.flushing = false
			m.wmu.Unlock()
			m.fail(nc, err)
			return
		}
	}
	m.flushing = false
	m.wmu.Unlock()
}

// roundTrip sends one request and waits for its reply. The returned call
// must be given back with putCall once its body was read.
func (m *mux) roundTrip(ctx context.Context, encode func(dst []byte, id uint32) []byte) (*call, error) {
	cl, err := m.newCall()
	if err != nil {
		return nil, err
	}
	m.sendCall(cl, func(dst []byte) []byte { return encode(dst, cl.id) })
	if err := m.wait(ctx, cl); err != nil {
		return nil, err
	}
	return cl, nil
}

// wait waits for cl's reply or ctx. On ctx's end the call is abandoned: its
// reply, if it comes, goes to the late hook (the call record is then not
// reused).
func (m *mux) wait(ctx context.Context, cl *call) error {
	err := m.await(ctx, cl)
	if err != nil && ctx.Err() != nil && !m.abandon(cl) {
		return cl.err // the reply raced ctx and is in: use it
	}
	return err
}

// idleLoop watches an idle connection so that its loss is noticed promptly.
func (m *mux) idleLoop() {
	defer m.idleWG.Done()
	t := time.NewTicker(idleCheck)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-m.quit:
			return
		case <-t.C:
		}
		m.mu.Lock()
		if m.leadCtx != nil && !m.leadKicked && m.leadCtx.Err() != nil {
			// A leader reads without a deadline for a ctx that ended.
			m.leadKicked = true
			m.conn.SetReadDeadline(pastDeadline)
		}
		for f := m.fhead; f != nil; f = f.fnext {
			if f.fctx != nil && f.fctx.Err() != nil {
				signal(f.done) // a follower that waits for its reply alone
			}
		}
		busy := m.calls != seen || m.reader != readerNone || m.err != nil
		seen = m.calls
		if busy {
			m.mu.Unlock()
			continue
		}
		m.reader = readerBackground
		m.kicked = false
		nc, br := m.conn, m.br
		m.mu.Unlock()
		m.watch(nc, br)
	}
}

// watch reads as the background reader until kicked out or the connection
// fails.
func (m *mux) watch(nc net.Conn, br *bufio.Reader) {
	for {
		_, err := m.readOne(br)
		if err == nil {
			continue
		}
		m.mu.Lock()
		kicked := m.kicked
		m.mu.Unlock()
		if kicked && errors.Is(err, os.ErrDeadlineExceeded) {
			nc.SetReadDeadline(time.Time{})
		} else {
			m.fail(nc, err)
		}
		m.release()
		return
	}
}

// fail records that connection nc broke and fails every call pending on it
// (see the lost and failed hooks). A failure of a connection that was
// replaced already is ignored.
func (m *mux) fail(nc net.Conn, err error) {
	m.failConn(nc, err, true)
}

func (m *mux) failConn(nc net.Conn, err error, notify bool) {
	nc.Close()
	m.mu.Lock()
	if nc != m.conn {
		m.mu.Unlock()
		return
	}
	if m.err == nil {
		if errors.Is(err, net.ErrClosed) && m.closing {
			m.err = ErrClosed
		} else {
			m.err = fmt.Errorf("%w: %w", ErrConnLost, err)
		}
	}
	for _, cl := range m.pending.slots {
		if cl == nil {
			continue
		}
		m.pending.take(cl.id)
		if m.hooks.lost != nil {
			m.hooks.lost(cl)
		}
		cl.err = m.err
		cl.finished = true
		if cl.async != nil {
			m.arrived(cl, nil)
			continue
		}
		m.unfollow(cl)
		signal(cl.done)
	}
	m.inflight.Store(0)
	failErr := m.err
	m.mu.Unlock()
	if notify && m.hooks.failed != nil {
		m.hooks.failed(failErr)
	}
}

// callTable holds the pending calls by request id: a power-of-two table
// indexed by the id's low bits, at most half full. newCall picks an id whose
// slot is free, so finding a reply's call is one index and one compare, and
// no slot ever holds two calls.
type callTable struct {
	slots []*call
	n     int
}

// reserve makes room for one more call: it doubles the table when half
// full. Two ids in different slots of a table stay apart in the doubled one.
func (t *callTable) reserve() {
	if 2*(t.n+1) <= len(t.slots) {
		return
	}
	slots := make([]*call, max(64, 2*len(t.slots)))
	mask := uint32(len(slots) - 1)
	for _, cl := range t.slots {
		if cl != nil {
			slots[cl.id&mask] = cl
		}
	}
	t.slots = slots
}

func (t *callTable) free(id uint32) bool {
	return t.slots[id&uint32(len(t.slots)-1)] == nil
}

func (t *callTable) put(cl *call) {
	t.slots[cl.id&uint32(len(t.slots)-1)] = cl
	t.n++
}

// take removes and returns the call with request id, nil if none.
func (t *callTable) take(id uint32) *call {
	if len(t.slots) == 0 {
		return nil
	}
	i := id & uint32(len(t.slots)-1)
	cl := t.slots[i]
	if cl == nil || cl.id != id {
		return nil
	}
	t.slots[i] = nil
	t.n--
	return cl
}
