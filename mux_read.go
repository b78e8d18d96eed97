package dlock

// The read role of the multiplexer (see the top of mux.go): a caller
// waiting for its reply reads the socket itself while nobody else does
// (the leader), others wait to be handed their reply or the role
// (followers), and each frame read is dispatched to the call it answers.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// await waits until cl's reply (or a failure) is in, reading the socket
// itself when nobody else does. It returns ctx's error if ctx ends first;
// the call then stays pending (see abandon).
func (m *mux) await(ctx context.Context, cl *call) error {
	m.mu.Lock()
	for {
		if cl.finished {
			m.mu.Unlock()
			return cl.err
		}
		if err := ctx.Err(); err != nil {
			m.mu.Unlock()
			return err
		}
		switch m.reader {
		case readerNone:
			m.reader = readerCaller
			nc, br := m.conn, m.br
			watched := !cl.long && ctx.Done() != nil
			if watched {
				m.leadCtx = ctx
			}
			m.mu.Unlock()
			err := m.lead(ctx, cl, nc, br, watched)
			if err != nil {
				return err
			}
			m.mu.Lock()
			continue
		case readerBackground:
			if !m.kicked {
				m.kicked = true
				m.conn.SetReadDeadline(pastDeadline)
			}
		}
		m.follow(cl)
		if _, hasDeadline := ctx.Deadline(); cl.long || hasDeadline || ctx.Done() == nil {
			m.mu.Unlock()
			select {
			case <-cl.done:
			case <-ctx.Done():
			}
		} else {
			// A short call is answered within a round trip: wait for the
			// reply (or the read role) alone, which costs less than a
			// select; if ctx is cancelled first, the idle goroutine
			// signals. (A deadline is kept to the dot: the select.)
			cl.fctx = ctx
			m.mu.Unlock()
			<-cl.done
		}
		m.mu.Lock()
		m.unfollow(cl)
		cl.fctx = nil
		if !cl.finished && ctx.Err() != nil && m.reader == readerNone {
			// We give up while the read role is free, maybe offered to
			// us: pass it on.
			m.offer()
		}
	}
}

// follow puts cl at the end of the followers list. Called with m.mu held.
func (m *mux) follow(cl *call) {
	cl.following = true
	cl.fnext = nil
	cl.fprev = m.ftail
	if m.ftail != nil {
		m.ftail.fnext = cl
	} else {
		m.fhead = cl
	}
	m.ftail = cl
}

// unfollow takes cl off the followers list, if it is on it. Called with
// m.mu held.
func (m *mux) unfollow(cl *call) {
	if !cl.following {
		return
	}
	if cl.fprev != nil {
		cl.fprev.fnext = cl.fnext
	} else {
		m.fhead = cl.fnext
	}
	if cl.fnext != nil {
		cl.fnext.fprev = cl.fprev
	} else {
		m.ftail = cl.fprev
	}
	cl.fprev, cl.fnext, cl.following = nil, nil, false
}

// lead reads frames as the leader until cl is finished, ctx ends or the
// connection fails, then gives the read role up. It returns ctx's error if
// ctx ended.
//
// watched says that the call is a short request whose ctx can end,
// registered as m.leadCtx: its read has at most ctx's deadline, and the idle
// goroutine kicks it out of the read once ctx has ended (within idleCheck),
// which a cancel before the deadline needs.
func (m *mux) lead(ctx context.Context, cl *call, nc net.Conn, br *bufio.Reader, watched bool) error {
	// Any end of ctx must stop the read. A blocking request may wait long:
	// its ctx is watched by an AfterFunc (which costs allocations and a
	// lock of ctx), registered only once the reply has not come within
	// quickWait. A short request (watched) is answered within a round trip
	// unless the link is broken: its read has ctx's deadline if any, and
	// the idle goroutine ends it if ctx is cancelled first. Setting a
	// socket deadline costs two timer updates per call, and a timer
	// pending while the goroutine sleeps in the poller costs extra system
	// calls of the scheduler's: measured on the 2-core VM, ~0.35 fewer
	// system calls per request without it.
	//
	// A blocking request on a contended lock waits for the hand-overs
	// ahead of it, far longer than quickWait: the quick wait's deadline
	// then wakes the caller for nothing (a timer, a goroutine switch, a
	// read) before it registers anyway, on the CPU that every hand-over
	// needs. So once a blocking request on this connection had to wait
	// (m.longWait), the next ones register at once, until one is answered
	// within quickWait again.
	d, hasDeadline := ctx.Deadline()
	watch := cl.long && ctx.Done() != nil
	var stop func() bool
	var start time.Time
	deadline := hasDeadline // nc may have a read deadline to clear at the end
	if watch {
		start = time.Now()
		quick := start.Add(quickWait)
		switch {
		case hasDeadline && d.Before(quick):
			nc.SetReadDeadline(d) // the deadline comes first anyway
			watch = false
		case m.longWait.Load():
			if hasDeadline {
				nc.SetReadDeadline(d)
			}
			stop = m.kick.on(ctx, nc)
		default:
			nc.SetReadDeadline(quick)
			deadline = true
		}
	} else if hasDeadline {
		nc.SetReadDeadline(d)
	}
	var ctxErr error
	// cl is not finished when its caller takes the read role, and while it
	// leads only its own reads deliver replies; a failure elsewhere (fail)
	// closes the connection, which ends the read below.
	for have := false; ; {
		if have && !frameBuffered(br) {
			break
		}
		got, err := m.readOne(br)
		if got == cl && err == nil {
			if watch && stop != nil && time.Since(start) < quickWait {
				m.longWait.Store(false) // answered quickly: back to the quick wait
			}
			if !cl.drain {
				break
			}
			// A pipeline's waiter: read on while whole replies are
			// buffered, so that one read serves every reply it brought.
			have = true
			continue
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// Our own deadline: ctx's, a quick wait's, or the idle
				// goroutine's kick. ctx's timer may trail the socket's by
				// a hair; wait for it rather than call the link broken.
				if ctxErr = ctx.Err(); ctxErr != nil {
					break
				}
				if watch && stop == nil {
					// The call has to wait: watch ctx from now on. The
					// deadline first: a cancel that comes meanwhile runs
					// the AfterFunc at once, and its past deadline must
					// not be overwritten.
					m.longWait.Store(true)
					if hasDeadline {
						nc.SetReadDeadline(d)
					} else {
						nc.SetReadDeadline(time.Time{})
						deadline = false
					}
					stop = m.kick.on(ctx, nc)
					continue
				}
				runtime.Gosched()
				continue
			}
			m.fail(nc, err)
			break
		}
	}
	if stop != nil && !stop() {
		// The kick is running or ran: let it finish before the deadline is
		// cleared, or it could set a past deadline on the next reader's
		// read (which would then spin until its own ctx ends).
		<-m.kick.done
		deadline = true
	}
	if deadline {
		nc.SetReadDeadline(time.Time{})
	}
	if watched {
		// From now on the idle goroutine leaves the read alone; undo its
		// kick, if it came, before the next reader reads.
		m.mu.Lock()
		m.leadCtx = nil
		kicked := m.leadKicked
		m.leadKicked = false
		m.mu.Unlock()
		if kicked {
			nc.SetReadDeadline(time.Time{})
		}
	}
	m.release()
	return ctxErr
}

// kicker makes the leader's read return when its ctx ends. A mux has one,
// made with it: only the leader uses it, and one lead ends (its kick
// unregistered or done) before the next begins, so a waiting Lock pays
// only for context.AfterFunc's own allocations.
type kicker struct {
	nc   net.Conn      // the connection the registered kick interrupts
	done chan struct{} // capacity 1: a kick that ran sends once
	fn   func()        // kick, as a func value made once
}

func (k *kicker) init() {
	k.done = make(chan struct{}, 1)
	k.fn = k.kick
}

func (k *kicker) kick() {
	k.nc.SetReadDeadline(pastDeadline)
	k.done <- struct{}{}
}

// on makes a read on nc return when ctx ends. stop unregisters; if it
// reports false, the kick ran or is running, and k.done receives once it
// is done.
func (k *kicker) on(ctx context.Context, nc net.Conn) (stop func() bool) {
	k.nc = nc
	return context.AfterFunc(ctx, k.fn)
}

// readOne reads one frame and hands it to its call, which it returns (nil
// for a reply nobody waits for). A read that fails (a deadline passed) can
// be resumed by the next call: a frame that fits in the buffer is consumed
// only once it is in whole, and a larger one keeps its progress in m.big.
func (m *mux) readOne(br *bufio.Reader) (*call, error) {
	if m.bigLen == 0 {
		p, err := br.Peek(wire.HeaderLen)
		if err != nil {
			return nil, err
		}
		copy(m.rh[:], p)
		if err := m.rh.Check(); err != nil {
			return nil, err
		}
		n := wire.HeaderLen + int(m.rh.Len())
		if n <= br.Size() {
			p, err = br.Peek(n)
			if err != nil {
				return nil, err
			}
			cl, err := m.dispatch(&m.rh, p[wire.HeaderLen:])
			br.Discard(n)
			return cl, err
		}
		br.Discard(wire.HeaderLen)
		m.bigLen = n - wire.HeaderLen
		if cap(m.big) < m.bigLen {
			m.big = make([]byte, 0, m.bigLen)
		}
		m.big = m.big[:0]
	}
	for len(m.big) < m.bigLen {
		k, err := br.Read(m.big[len(m.big):m.bigLen])
		m.big = m.big[:len(m.big)+k]
		if err != nil {
			return nil, err
		}
	}
	m.bigLen = 0
	return m.dispatch(&m.rh, m.big)
}

// release gives the read role up and offers it to a follower.
func (m *mux) release() {
	m.mu.Lock()
	m.reader = readerNone
	m.offer()
	m.readerGone.Broadcast()
	m.mu.Unlock()
}

// offer signals one waiting follower that the read role is free. Called
// with m.mu held. Every call on the list is waiting and unfinished: dispatch and failConn
// take a call off when its reply or failure is in. The most recent follower
// gets it, as the one least likely to have its reply already buffered.
func (m *mux) offer() {
	if f := m.ftail; f != nil {
		m.unfollow(f)
		signal(f.done)
	}
}

// dispatch hands one reply to its call and returns that call (nil for a
// reply nobody waits for, which goes to the late hook).
func (m *mux) dispatch(h *wire.Header, body []byte) (*call, error) {
	if h.Version() != wire.Version || !h.Type().IsReply() {
		return nil, fmt.Errorf("unexpected frame type %#x version %d", h.Type(), h.Version())
	}
	if h.Status() == wire.StatusRedirect {
		// The server stopped serving (a standby now, or a primary whose
		// lease passed): it executed nothing it answers so, and is closing.
		return nil, errRedirected
	}
	m.mu.Lock()
	cl := m.pending.take(h.ID())
	m.inflight.Store(int32(m.pending.n))
	if cl == nil {
		m.mu.Unlock()
		if m.hooks.late != nil {
			m.hooks.late(h, body)
		}
		return nil, nil
	}
	cl.status = Status(h.Status())
	cl.typ = h.Type()
	cl.finished = true
	if cl.async != nil {
		w, err := m.arrived(cl, body)
		m.mu.Unlock()
		return w, err
	}
	cl.body = append(cl.body[:0], body...)
	m.unfollow(cl)
	m.mu.Unlock()
	signal(cl.done)
	return cl, nil
}
