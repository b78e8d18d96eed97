package dlock

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

// The client's connection: one TCP (or TLS, or Unix) stream multiplexing
// every request by id.
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

// idleCheck is how often the background goroutine looks for an idle
// connection to watch.
const idleCheck = 100 * time.Millisecond

// Who reads the connection (Client.reader).
const (
	readerNone = iota
	readerCaller
	readerBackground
)

// call is one request in flight.
type call struct {
	id     uint32
	done   chan struct{} // signalled when the reply is in or the read role is offered
	status Status
	typ    wire.Type
	body   []byte
	err    error
	// finished is set (under Client.mu) once the reply or a failure is in.
	finished bool
	// waiting is set while the caller follows, so it can be offered the role.
	waiting bool
	// long marks a blocking lock request, which may wait for a long time.
	long bool
	// locks are the ids of the locks a lock request (single or batch)
	// operates on: if the connection fails before the reply is in, the
	// outcome on each is unknown and is resolved on reconnection.
	locks  [MaxBatch]int32
	nlocks int
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

func (c *Client) start(nc net.Conn) {
	c.pending = make(map[uint32]*call)
	c.locks = make(map[int32]*Lock)
	c.objects = make(map[*Atomic64]struct{})
	c.wbuf = make([]byte, 0, 4096)
	c.wspare = make([]byte, 0, 4096)
	c.rbuf = make([]byte, 0, 1024)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.attach(nc)
	c.idleWG.Add(1)
	go c.idleLoop()
}

// attach makes nc the client's connection.
func (c *Client) attach(nc net.Conn) {
	c.wmu.Lock()
	c.nc = nc
	c.wmu.Unlock()
	c.mu.Lock()
	c.rconn = nc
	c.br = bufio.NewReaderSize(nc, 16<<10)
	c.err = nil
	c.mu.Unlock()
}

// detach closes the current connection and waits until nobody reads it; the
// calls pending on it fail.
func (c *Client) detach() {
	c.mu.Lock()
	nc := c.rconn
	c.mu.Unlock()
	nc.Close()
	c.mu.Lock()
	for c.reader != readerNone {
		c.readerGone.Wait()
	}
	c.mu.Unlock()
	c.fail(nc, net.ErrClosed)
}

// ID returns the client id the server assigned.
func (c *Client) ID() int32 { return c.id }

// await waits until cl's reply (or a failure) is in, reading the socket
// itself when nobody else does. It returns ctx's error if ctx ends first;
// the call then stays pending (see abandon).
func (c *Client) await(ctx context.Context, cl *call) error {
	for {
		c.mu.Lock()
		if cl.finished {
			c.mu.Unlock()
			return cl.err
		}
		if err := ctx.Err(); err != nil {
			c.mu.Unlock()
			return err
		}
		switch c.reader {
		case readerNone:
			c.reader = readerCaller
			nc, br := c.rconn, c.br
			c.mu.Unlock()
			if err := c.lead(ctx, cl, nc, br); err != nil {
				return err
			}
			continue
		case readerBackground:
			if !c.kicked {
				c.kicked = true
				c.rconn.SetReadDeadline(pastDeadline)
			}
		}
		cl.waiting = true
		c.followers = append(c.followers, cl)
		c.mu.Unlock()
		select {
		case <-cl.done:
		case <-ctx.Done():
		}
		c.mu.Lock()
		cl.waiting = false
		c.mu.Unlock()
	}
}

// lead reads frames as the leader until cl is finished, ctx ends or the
// connection fails, then gives the read role up. It returns ctx's error if
// ctx ended.
func (c *Client) lead(ctx context.Context, cl *call, nc net.Conn, br *bufio.Reader) error {
	// A blocking request may wait long: any end of ctx must stop the read.
	// A short one needs only ctx's deadline (a bare cancel is then noticed
	// within a round trip), which keeps it free of allocations.
	var stop func() bool
	var kicked chan struct{}
	d, hasDeadline := ctx.Deadline()
	if ctx.Done() != nil && (cl.long || !hasDeadline) {
		kicked = make(chan struct{})
		stop = context.AfterFunc(ctx, func() {
			nc.SetReadDeadline(pastDeadline)
			close(kicked)
		})
	} else if hasDeadline {
		nc.SetReadDeadline(d)
	}
	var ctxErr error
	// cl is not finished when its caller takes the read role, and while it
	// leads only its own reads deliver replies; a failure elsewhere (fail)
	// closes the connection, which ends the read below.
	for {
		body, err := wire.ReadFrame(br, &c.rh, c.rbuf)
		c.rbuf = body[:0]
		var got *call
		if err == nil {
			got, err = c.dispatch(&c.rh, body)
		}
		if got == cl {
			break
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// Our own deadline: ctx's. Its timer may trail the socket's
				// by a hair; wait for it rather than call the link broken.
				if ctxErr = ctx.Err(); ctxErr != nil {
					break
				}
				runtime.Gosched()
				continue
			}
			c.fail(nc, err)
			break
		}
	}
	if stop != nil && !stop() {
		// The kick is running or ran: let it finish before the deadline is
		// cleared, or it could set a past deadline on the next reader's
		// read (which would then spin until its own ctx ends).
		<-kicked
	}
	if hasDeadline || stop != nil {
		nc.SetReadDeadline(time.Time{})
	}
	c.release()
	return ctxErr
}

// release gives the read role up and offers it to a follower. Called
// without c.mu.
func (c *Client) release() {
	c.mu.Lock()
	c.reader = readerNone
	c.offer()
	c.readerGone.Broadcast()
	c.mu.Unlock()
}

// offer signals one waiting follower that the read role is free. Called
// with c.mu held.
func (c *Client) offer() {
	for len(c.followers) > 0 {
		n := len(c.followers) - 1
		f := c.followers[n]
		c.followers[n] = nil
		c.followers = c.followers[:n]
		if f.waiting && !f.finished {
			signal(f.done)
			return
		}
	}
}

// dispatch hands one reply to its call and returns that call (nil for a
// reply nobody waits for).
func (c *Client) dispatch(h *wire.Header, body []byte) (*call, error) {
	if h.Version() != wire.Version || !h.Type().IsReply() {
		return nil, fmt.Errorf("unexpected frame type %#x version %d", h.Type(), h.Version())
	}
	if h.Status() == wire.StatusRedirect {
		// The server stopped serving (a standby now, or a primary whose
		// lease passed): it executed nothing it answers so, and is closing.
		return nil, errRedirected
	}
	c.mu.Lock()
	cl := c.pending[h.ID()]
	delete(c.pending, h.ID())
	c.inflight.Store(int32(len(c.pending)))
	if cl == nil {
		c.mu.Unlock()
		return nil, nil // the reply to a call nobody waits for
	}
	cl.status = Status(h.Status())
	cl.typ = h.Type()
	cl.body = append(cl.body[:0], body...)
	cl.finished = true
	c.mu.Unlock()
	signal(cl.done)
	return cl, nil
}

// idleLoop watches an idle connection so that its loss is noticed promptly.
func (c *Client) idleLoop() {
	defer c.idleWG.Done()
	t := time.NewTicker(idleCheck)
	defer t.Stop()
	var seen uint64
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		busy := c.calls != seen || c.reader != readerNone || c.err != nil || c.swapping
		seen = c.calls
		if busy {
			c.mu.Unlock()
			continue
		}
		c.reader = readerBackground
		c.kicked = false
		nc, br := c.rconn, c.br
		c.mu.Unlock()
		c.watch(nc, br)
	}
}

// watch reads as the background reader until kicked out or the connection
// fails.
func (c *Client) watch(nc net.Conn, br *bufio.Reader) {
	for {
		body, err := wire.ReadFrame(br, &c.rh, c.rbuf)
		c.rbuf = body[:0]
		if err == nil {
			_, err = c.dispatch(&c.rh, body)
		}
		if err == nil {
			continue
		}
		c.mu.Lock()
		kicked := c.kicked
		c.mu.Unlock()
		if kicked && errors.Is(err, os.ErrDeadlineExceeded) {
			nc.SetReadDeadline(time.Time{})
		} else {
			c.fail(nc, err)
		}
		c.release()
		return
	}
}

// fail records that connection nc broke and fails every call pending on it.
// The locks of the lock requests among them have an unknown outcome: the
// request may or may not have taken effect. They are resolved when the
// client is connected again (see Reinit). A failure of a connection that
// was replaced already is ignored.
func (c *Client) fail(nc net.Conn, err error) {
	nc.Close()
	c.mu.Lock()
	if nc != c.rconn {
		c.mu.Unlock()
		return
	}
	if c.err == nil {
		if errors.Is(err, net.ErrClosed) && c.closing {
			c.err = ErrClosed
		} else {
			c.err = fmt.Errorf("%w: %w", ErrConnLost, err)
		}
	}
	for id, cl := range c.pending {
		delete(c.pending, id)
		c.markUnknown(cl.locks[:cl.nlocks])
		cl.err = c.err
		cl.finished = true
		signal(cl.done)
	}
	c.inflight.Store(0)
	recover := !c.closing && !c.swapping && c.cfg.AutoRecover
	c.mu.Unlock()
	if recover {
		c.startRecovery()
	}
}

// markUnknown records that the outcome of a request on each of ids is
// unknown. Called with c.mu held.
func (c *Client) markUnknown(ids []int32) {
	for _, id := range ids {
		if c.unknown == nil {
			c.unknown = make(map[int32]struct{})
		}
		if _, dup := c.unknown[id]; !dup {
			c.unknown[id] = struct{}{}
			c.outcomes.Unknown++
		}
	}
}

// newCall registers a call record with a fresh request id.
func (c *Client) newCall() (*call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	var cl *call
	if n := len(c.free); n > 0 {
		cl = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		cl = &call{done: make(chan struct{}, 1)}
	}
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	c.calls++
	cl.id = c.nextID
	cl.err = nil
	cl.nlocks = 0
	cl.finished = false
	cl.waiting = false
	cl.long = false
	select {
	case <-cl.done: // a stale signal from the record's previous use
	default:
	}
	c.pending[cl.id] = cl
	c.inflight.Store(int32(len(c.pending)))
	return cl, nil
}

// putCall returns a finished call record to the free list.
func (c *Client) putCall(cl *call) {
	c.mu.Lock()
	if len(c.free) < 256 && cl.finished {
		c.free = append(c.free, cl)
	}
	c.mu.Unlock()
}

// abandon forgets a call whose caller gave up; its reply, if it comes, is
// dropped. It reports false if the reply is in already.
func (c *Client) abandon(cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl.finished {
		return false
	}
	delete(c.pending, cl.id)
	return true
}

// send appends a frame to the write buffer and writes it unless another
// goroutine is writing already, in which case that one sends it too.
func (c *Client) send(encode func(dst []byte) []byte) {
	c.wmu.Lock()
	c.wbuf = encode(c.wbuf)
	if c.flushing {
		c.wmu.Unlock()
		return
	}
	c.flushing = true
	if c.inflight.Load() > 1 {
		// Other requests are in flight: their callers are likely about to
		// send too. Let them append first so one write carries them all.
		c.wmu.Unlock()
		runtime.Gosched()
		c.wmu.Lock()
	}
	for len(c.wbuf) > 0 {
		buf := c.wbuf
		c.wbuf = c.wspare[:0]
		nc := c.nc
		c.wmu.Unlock()
		_, err := nc.Write(buf)
		c.wmu.Lock()
		c.wspare = buf[:0]
		if err != nil {
			c.wbuf = c.wbuf[:0]
			c.flushing = false
			c.wmu.Unlock()
			c.fail(nc, err)
			return
		}
	}
	c.flushing = false
	c.wmu.Unlock()
}

// wait waits for cl's reply or ctx. On ctx's end the call is abandoned: its
// reply, if it comes, is dropped (the call record is then not reused).
func (c *Client) wait(ctx context.Context, cl *call) error {
	err := c.await(ctx, cl)
	if err != nil && ctx.Err() != nil && !c.abandon(cl) {
		return cl.err // the reply raced ctx and is in: use it
	}
	return err
}

// roundTrip sends one request and waits for its reply. The returned call
// must be given back with putCall once its body was read.
func (c *Client) roundTrip(ctx context.Context, encode func(dst []byte, id uint32) []byte) (*call, error) {
	cl, err := c.newCall()
	if err != nil {
		return nil, err
	}
	c.send(func(dst []byte) []byte { return encode(dst, cl.id) })
	if err := c.wait(ctx, cl); err != nil {
		return nil, err
	}
	return cl, nil
}
