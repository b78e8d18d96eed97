//go:build linux

package dlockserver

// The event loops: how plain TCP and Unix-socket connections are served on
// Linux.
//
// A connection served by goroutines (TLS, other systems, or
// Config.GoroutineConns) costs per request a read, an empty read that
// returns EAGAIN before its goroutine parks in the runtime's poller, a
// write of its reply, and two goroutine switches. At 64 clients with one
// request in flight each, nothing coalesces: system calls were ~75% of the
// server's CPU time (write alone ~54%) and the scheduler ~10%.
//
// An event loop instead owns a set of sockets, taken out of the runtime's
// poller (the descriptor is duplicated and the net.Conn closed), and runs
// on one goroutine locked to its thread:
//
//   - epoll_wait, level-triggered, on the loop's sockets and an eventfd;
//   - for each readable socket, one read (never a second one to find
//     EAGAIN: level triggering reports what is left next time), then every
//     whole frame in the buffer is handled in place, exactly as the reader
//     goroutine would (conn.handle);
//   - at the end of the pass, one write per connection that has output:
//     its replies and the grants produced in that pass for it by any
//     connection, coalesced (grants first: they end a wait). Grants that a
//     socket's read produced are written before the next socket of the
//     pass is read, and the connection the loop last sent a grant to is
//     read first: at 64 clients on one lock the next unlock (from the
//     client just granted) and a re-queued request often share a pass,
//     and the hand-over should not wait for the other read (a waiter that
//     gets grants from several connections in one pass then gets them in
//     several writes).
//
// The loop reads into one 64 KB buffer of its own; a connection keeps only
// the start of a frame that is not whole yet, so an idle connection holds
// neither a read buffer nor goroutine stacks.
//
// There is one loop per GOMAXPROCS at the first connection; connections
// are dealt round-robin. Output still goes through the connection's queue
// (c.out under outMu, conn.reply, conn.sendLock, conn.push): a grant
// queued while the target's loop is in a pass is written by that loop at
// the end of the pass; one queued while the loop waits in epoll_wait (a
// lease timer, another loop) is written at once with one non-blocking
// write, as on the goroutine path, and only a rest the socket did not take
// is left to the loop (woken through the eventfd).
//
// Behaviours kept from the goroutine path: a socket that does not take all
// output is "stalled": the loop stops reading it (so a client that does
// not read cannot make its output grow by sending more, as the blocked
// reader goroutine did) and waits for EPOLLOUT; still stalled after
// WriteTimeout, it is closed and counted as a failed send. RegisterTimeout
// and FrameTimeout are deadlines the loop checks when they fall due (the
// epoll_wait timeout), with the same log lines. Frames larger than
// wire.MaxBody are refused the same way. Close on the connection (evict,
// reset, Shutdown) shuts the socket down at once, from any goroutine; the
// loop then closes it, calls connClosed and closes c.quit. Server.Shutdown
// stops every loop after its connections are closed.
//
// Measured against the goroutine path with `dlockctl bench -scenario all
// -baseline echo -pin 0,1` and perf's system call counts (README,
// Performance): per acquire + release pair at 64 clients 4.7 system calls
// instead of 6.4 (the EAGAIN reads are gone), server CPU per pair 1.09–1.14×
// the echo's instead of 1.19× (medians of 3 on a busy VM), RSS at the full
// limits 65–69 MB instead of 79–82 MB. Blocking in epoll_wait has a cost: the
// runtime's monitor thread polls a thread that is in a system call and may
// hand its P over (a parked variant, the epoll descriptor in the runtime's
// poller, made more epoll_wait calls and gained nothing measurable).

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/wire"
)

// loop is one event loop.
type loop struct {
	s    *Server
	epfd int
	evfd int

	// mu guards the fields below; it is a leaf lock.
	mu      sync.Mutex
	busy    bool    // in a pass: queued output is written at its end
	stop    bool    // Shutdown: close everything and return
	stopped bool    // epfd and evfd are closed
	pending []*conn // connections with output queued from outside a pass
	// queued is len(pending) > 0, readable without mu: a pass's early
	// grant flush after each read takes mu only when there is something
	// to write (a stale true costs a lock; a stale false leaves the
	// writes to the end of the pass).
	queued   atomic.Bool
	spare    []*conn
	incoming []*conn // accepted, not yet watched
	// granted is the descriptor of the connection that was last sent
	// output from outside its own requests (a grant), -1 if none: the
	// next unlock of a contended lock likely comes from it, so a pass
	// reads it first.
	granted int

	// Owned by the loop goroutine.
	conns     []*conn // by file descriptor
	dirty     []*conn // read in this pass: flushed at its end
	events    [128]syscall.EpollEvent
	nextCheck time.Time // earliest deadline armed (zero: none)
	rbuf      [8]byte
	rb        []byte // read buffer, shared by the loop's connections
}

// loopReadSize is the size of a loop's read buffer: a read takes up to
// that much of one connection's input (a frame is at most
// wire.HeaderLen+wire.MaxBody, which fits). Connections keep only the
// start of a frame not whole yet, so an idle connection holds no buffer.
const loopReadSize = 64 << 10

// loopConn is a connection's state owned by its loop's goroutine, except
// queued (guarded by loop.mu).
type loopConn struct {
	fd      int
	in      []byte    // the start of a frame not whole yet
	frames  uint64    // frames handled (the first decides a TLS-on-plaintext log)
	frameBy time.Time // FrameTimeout of a frame started and not whole yet
	stallBy time.Time // WriteTimeout of stalled output
	dirty   bool
	queued  bool
	closed  bool
}

const (
	evRead  = syscall.EPOLLIN | syscall.EPOLLRDHUP
	evWrite = syscall.EPOLLOUT
)

// loopNetConn stands for a connection served by a loop where the rest of
// the server keeps a net.Conn (c.nc, c.raw): its addresses and Close.
type loopNetConn struct {
	c             *conn
	local, remote net.Addr
}

var errLoopConn = errors.New("dlockserver: connection served by an event loop")

func (n *loopNetConn) Read([]byte) (int, error)         { return 0, errLoopConn }
func (n *loopNetConn) Write([]byte) (int, error)        { return 0, errLoopConn }
func (n *loopNetConn) LocalAddr() net.Addr              { return n.local }
func (n *loopNetConn) RemoteAddr() net.Addr             { return n.remote }
func (n *loopNetConn) SetDeadline(time.Time) error      { return nil }
func (n *loopNetConn) SetReadDeadline(time.Time) error  { return nil }
func (n *loopNetConn) SetWriteDeadline(time.Time) error { return nil }

// Close shuts the socket down at once (the peer sees the end, later
// writes fail); the loop closes the descriptor when it sees that.
func (n *loopNetConn) Close() error {
	c := n.c
	c.outMu.Lock()
	if !c.fdClosed && !c.shut.Swap(true) {
		syscall.Shutdown(c.lst.fd, syscall.SHUT_RDWR)
	}
	c.outMu.Unlock()
	return nil
}

// loopFD returns a duplicate of nc's descriptor if nc is a plain TCP or
// Unix-socket connection the event loops should serve, else -1. The
// duplicate shares the socket (non-blocking) and is not in the runtime's
// poller; the caller closes nc once the loop has it.
func (s *Server) loopFD(nc net.Conn) int {
	if s.cfg.GoroutineConns || s.tls != nil {
		return -1
	}
	var rc syscall.RawConn
	var err error
	switch t := nc.(type) {
	case *net.TCPConn:
		rc, err = t.SyscallConn()
	case *net.UnixConn:
		rc, err = t.SyscallConn()
	default:
		return -1
	}
	if err != nil {
		return -1
	}
	fd := -1
	rc.Control(func(raw uintptr) {
		d, _, errno := syscall.Syscall(syscall.SYS_FCNTL, raw, syscall.F_DUPFD_CLOEXEC, 0)
		if errno == 0 {
			fd = int(d)
		}
	})
	if fd >= 0 {
		if err := syscall.SetNonblock(fd, true); err != nil {
			syscall.Close(fd)
			return -1
		}
	}
	return fd
}

// adoptLoop makes c, whose socket is fd, served by a loop. Called with mu
// held; false if no loop could be made (c is then served by goroutines).
func (s *Server) adoptLoop(c *conn, fd int, nc net.Conn) bool {
	if s.loops == nil {
		n := runtime.GOMAXPROCS(0)
		loops := make([]*loop, 0, n)
		for range n {
			l, err := newLoop(s)
			if err != nil {
				for _, l := range loops {
					l.close()
				}
				s.cfg.Logger.Warn("event loop unavailable: serving connections with goroutines", "err", err)
				s.cfg.GoroutineConns = true
				return false
			}
			loops = append(loops, l)
		}
		s.loops = loops
		for _, l := range loops {
			s.wg.Add(1)
			go l.run()
		}
	}
	l := s.loops[c.seq%uint64(len(s.loops))]
	c.lp = l
	c.lst.fd = fd
	ln := &loopNetConn{c: c, local: nc.LocalAddr(), remote: nc.RemoteAddr()}
	c.nc, c.raw = ln, ln
	s.wg.Add(1) // done by loop.closeConn
	l.mu.Lock()
	l.incoming = append(l.incoming, c)
	l.mu.Unlock()
	l.wake()
	return true
}

// stopLoops makes every loop close its connections and return. Called
// with mu held, once closed is set (no connection is adopted after).
func (s *Server) stopLoops() {
	for _, l := range s.loops {
		l.mu.Lock()
		l.stop = true
		l.mu.Unlock()
		l.wake()
	}
}

func newLoop(s *Server) (*loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	evfd, err := eventfd()
	if err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(evfd)}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(evfd)
		return nil, err
	}
	return &loop{s: s, epfd: epfd, evfd: evfd, rb: make([]byte, loopReadSize), granted: -1}, nil
}

// close releases the loop's descriptors.
func (l *loop) close() {
	l.mu.Lock()
	if !l.stopped {
		l.stopped = true
		syscall.Close(l.evfd)
		syscall.Close(l.epfd)
	}
	l.mu.Unlock()
}

// wake interrupts the loop's epoll_wait.
func (l *loop) wake() {
	one := [8]byte{1}
	l.mu.Lock()
	if !l.stopped {
		syscall.Write(l.evfd, one[:])
	}
	l.mu.Unlock()
}

// run is the loop's goroutine.
func (l *loop) run() {
	defer l.s.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for {
		timeout := -1
		if !l.nextCheck.IsZero() {
			now := l.s.clk.now()
			if !now.Before(l.nextCheck) {
				l.sweep(now)
			}
			if !l.nextCheck.IsZero() {
				d := l.nextCheck.Sub(now)
				timeout = int((d + time.Millisecond - 1) / time.Millisecond)
				timeout = max(timeout, 1)
			}
		}
		n, err := syscall.EpollWait(l.epfd, l.events[:], timeout)
		if err != nil {
			n = 0 // EINTR
		}
		l.mu.Lock()
		l.busy = true
		granted := l.granted
		l.mu.Unlock()
		if n > 1 && granted >= 0 {
			l.first(n, granted)
		}
		for i := range n {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.evfd {
				syscall.Read(l.evfd, l.rbuf[:])
				continue
			}
			if fd >= len(l.conns) || l.conns[fd] == nil {
				continue
			}
			c := l.conns[fd]
			if c.stalled { // written only by this goroutine
				if ev.Events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) != 0 {
					l.flush(c)
				}
				continue
			}
			l.read(c)
			if i < n-1 && l.queued.Load() {
				// A grant this read produced ends a wait: it goes out
				// now, not after the other sockets' reads of this pass.
				l.flushPending()
			}
		}
		// Grants first (queued by other connections' requests): they end a
		// wait, the requesters' own replies do not.
		l.flushPending()
		for _, c := range l.dirty {
			c.lst.dirty = false
			l.flush(c)
		}
		clear(l.dirty)
		l.dirty = l.dirty[:0]
		if l.drain() {
			l.shutdown()
			return
		}
	}
}

// first moves the event of descriptor fd, if among the n ready, to the
// front. With many clients on one lock, the unlock of the client that was
// granted it and the request of the client before it (queueing again)
// often arrive in the same pass; the unlock is the one a hand-over waits
// for, and its grant is written as soon as it is read (run).
func (l *loop) first(n, fd int) {
	for i := 1; i < n; i++ {
		if int(l.events[i].Fd) == fd {
			l.events[0], l.events[i] = l.events[i], l.events[0]
			return
		}
	}
}

// drain writes the output queued from outside the pass and watches the
// connections handed over, until there is none; it then ends the pass and
// reports whether the loop must stop.
func (l *loop) drain() bool {
	for {
		l.mu.Lock()
		p, in := l.pending, l.incoming
		if len(p) == 0 && len(in) == 0 || l.stop {
			stop := l.stop
			if !stop {
				l.busy = false
			}
			l.mu.Unlock()
			return stop
		}
		for _, c := range p {
			c.lst.queued = false
		}
		l.pending, l.spare = l.spare[:0], nil
		l.queued.Store(false)
		l.incoming = nil
		l.mu.Unlock()
		for _, c := range in {
			l.add(c)
		}
		for _, c := range p {
			l.flush(c)
		}
		clear(p)
		l.spare = p[:0]
	}
}

// flushPending writes the output queued so far from outside the
// connections' own requests.
func (l *loop) flushPending() {
	l.mu.Lock()
	p := l.pending
	for _, c := range p {
		c.lst.queued = false
	}
	l.pending, l.spare = l.spare[:0], nil
	l.queued.Store(false)
	l.mu.Unlock()
	for _, c := range p {
		l.flush(c)
	}
	clear(p)
	l.spare = p[:0]
}

// add starts watching c.
func (l *loop) add(c *conn) {
	fd := c.lst.fd
	for fd >= len(l.conns) {
		l.conns = append(l.conns, nil)
	}
	l.conns[fd] = c
	if d := l.s.cfg.RegisterTimeout; d > 0 {
		c.registerBy = l.s.clk.after(d)
		l.arm(c.registerBy)
	}
	ev := syscall.EpollEvent{Events: evRead, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.s.cfg.Logger.Warn("closing connection: epoll", "remote", c.remote(), "err", err)
		l.closeConn(c)
	}
}

// arm makes the loop check deadlines by t.
func (l *loop) arm(t time.Time) {
	if l.nextCheck.IsZero() || t.Before(l.nextCheck) {
		l.nextCheck = t
	}
}

// sweep closes the connections whose deadline has passed and finds the
// next one.
func (l *loop) sweep(now time.Time) {
	var next time.Time
	early := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, c := range l.conns {
		if c == nil {
			continue
		}
		st := &c.lst
		if !st.stallBy.IsZero() {
			if !c.stalled {
				st.stallBy = time.Time{}
			} else if !now.Before(st.stallBy) {
				l.sendFailed(c)
				continue
			}
		}
		at, frame := c.registerBy, false
		if !st.frameBy.IsZero() && (at.IsZero() || st.frameBy.Before(at)) {
			at, frame = st.frameBy, true
		}
		if !at.IsZero() && !now.Before(at) {
			c.frameArmed = frame
			c.timedOut()
			l.closeConn(c)
			continue
		}
		early(at)
		early(st.stallBy)
	}
	l.nextCheck = next
}

// read makes one read of c's socket and handles the whole frames it has.
func (l *loop) read(c *conn) {
	st := &c.lst
	if c.shut.Load() {
		l.closeConn(c)
		return
	}
	c.atOK = false // a new clock reading for what this read brings
	k := copy(l.rb, st.in)
	n, err := syscall.Read(st.fd, l.rb[k:])
	if err == syscall.EAGAIN || err == syscall.EINTR {
		return
	}
	if n <= 0 {
		if err != nil && err != syscall.ECONNRESET && l.s.debugOn() {
			l.s.cfg.Logger.Debug("connection read failed", "remote", c.remote(), "err", err)
		} else if err == nil && k > 0 && l.s.debugOn() {
			l.s.cfg.Logger.Debug("connection read failed", "remote", c.remote(), "err", io.ErrUnexpectedEOF)
		}
		l.closeConn(c)
		return
	}
	buf := l.rb[:k+n]
	done := false
	for len(buf) >= wire.HeaderLen {
		var h wire.Header
		copy(h[:], buf)
		if err := h.Check(); err != nil {
			l.badFrame(c, &h, err)
			l.closeConn(c)
			return
		}
		end := wire.HeaderLen + int(h.Len())
		if len(buf) < end {
			break
		}
		body := buf[wire.HeaderLen:end]
		buf = buf[end:]
		st.frames++
		done = true
		if !c.handle(&h, body) {
			l.markDirty(c)
			l.closeConn(c)
			return
		}
		c.registeredBy(h.Type())
	}
	if len(buf) == 0 && cap(st.in) > 1<<10 {
		st.in = nil // a large frame's start: not kept by an idle connection
	} else {
		st.in = append(st.in[:0], buf...)
	}
	if done {
		l.markDirty(c)
		st.frameBy = time.Time{}
	}
	if len(st.in) > 0 && st.frameBy.IsZero() {
		if d := l.s.cfg.FrameTimeout; d > 0 {
			st.frameBy = l.s.clk.after(d)
			l.arm(st.frameBy)
		}
	}
}

// badFrame counts and logs a frame header that closes the connection.
func (l *loop) badFrame(c *conn, h *wire.Header, err error) {
	s := l.s
	s.mu.Lock()
	s.stats.Inc(dlock.StatBadRequest)
	s.mu.Unlock()
	if c.lst.frames == 0 && errors.Is(err, wire.ErrBadMagic) && h[0] == 0x16 && h[1] == 0x03 {
		s.cfg.Logger.Warn("closing connection: a TLS client on a plaintext server", "remote", c.remote())
	} else {
		s.cfg.Logger.Warn("closing connection: bad frame", "remote", c.remote(), "err", err)
	}
}

func (l *loop) markDirty(c *conn) {
	if !c.lst.dirty {
		c.lst.dirty = true
		l.dirty = append(l.dirty, c)
	}
}

// flush makes one non-blocking write of c's output. What the socket does
// not take stalls c: it is no longer read until EPOLLOUT says the socket
// took the rest.
func (l *loop) flush(c *conn) {
	c.outMu.Lock()
	if c.fdClosed || len(c.out) == 0 && !c.stalled {
		c.outMu.Unlock()
		return
	}
	var err error
	if len(c.out) > 0 {
		if c.shut.Load() {
			err = net.ErrClosed
		} else {
			var n int
			n, err = syscall.Write(c.lst.fd, c.out)
			if n > 0 {
				c.out = c.out[:copy(c.out, c.out[n:])]
			}
		}
	}
	switch {
	case len(c.out) == 0:
		if c.stalled {
			c.stalled = false
			l.watch(c, evRead)
		}
		c.outMu.Unlock()
	case err == nil || err == syscall.EAGAIN || err == syscall.EINTR:
		if !c.stalled {
			c.stalled = true
			c.lst.stallBy = l.s.clk.after(l.s.cfg.WriteTimeout)
			l.arm(c.lst.stallBy)
			l.watch(c, evWrite)
		}
		c.outMu.Unlock()
	default:
		c.out = c.out[:0]
		c.outMu.Unlock()
		l.sendFailed(c)
	}
}

// watch sets the events c's socket is watched for.
func (l *loop) watch(c *conn, events uint32) {
	ev := syscall.EpollEvent{Events: events, Fd: int32(c.lst.fd)}
	syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, c.lst.fd, &ev)
}

// sendFailed closes c after a write failed or timed out.
func (l *loop) sendFailed(c *conn) {
	if !c.shut.Load() {
		l.s.mu.Lock()
		l.s.stats.Inc(dlock.StatSendFail)
		l.s.mu.Unlock()
	}
	l.closeConn(c)
}

// closeConn ends c: a last non-blocking write of its output (unless it was
// closed on purpose), then the socket is closed and the server told.
func (l *loop) closeConn(c *conn) {
	st := &c.lst
	if st.closed {
		return
	}
	st.closed = true
	c.outMu.Lock()
	if !c.shut.Load() && !c.fdClosed && len(c.out) > 0 {
		syscall.Write(st.fd, c.out)
	}
	c.out = c.out[:0]
	if !c.fdClosed {
		c.fdClosed = true
		syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, st.fd, nil)
		syscall.Close(st.fd)
	}
	c.outMu.Unlock()
	if st.fd < len(l.conns) && l.conns[st.fd] == c {
		l.conns[st.fd] = nil
	}
	st.in = nil
	close(c.quit)
	l.s.connClosed(c)
	l.s.wg.Done()
}

// shutdown closes every connection of the loop and the loop itself.
func (l *loop) shutdown() {
	l.mu.Lock()
	in := l.incoming
	l.incoming = nil
	l.mu.Unlock()
	for _, c := range in {
		l.closeConn(c)
	}
	for _, c := range l.conns {
		if c != nil {
			l.closeConn(c)
		}
	}
	l.close()
}

// loopPush writes output queued on c from outside its loop's pass: at once
// with one non-blocking write when the loop is waiting, else at the end of
// the pass.
func (c *conn) loopPush() {
	l := c.lp
	l.mu.Lock()
	l.granted = c.lst.fd
	if l.busy {
		l.queue(c)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	c.outMu.Lock()
	if c.stalled || c.fdClosed || len(c.out) == 0 {
		c.outMu.Unlock() // the loop writes when the socket takes more
		return
	}
	if !c.shut.Load() {
		n, _ := syscall.Write(c.lst.fd, c.out)
		if n > 0 {
			c.out = c.out[:copy(c.out, c.out[n:])]
		}
	}
	left := len(c.out) > 0
	c.outMu.Unlock()
	if left {
		l.mu.Lock()
		l.queue(c)
		l.mu.Unlock()
		l.wake()
	}
}

// queue adds c to the connections to flush. Called with mu held.
func (l *loop) queue(c *conn) {
	if !c.lst.queued {
		c.lst.queued = true
		l.pending = append(l.pending, c)
		l.queued.Store(true)
	}
}

// closeFD closes a descriptor loopFD returned that no loop took (none if
// fd < 0).
func closeFD(fd int) {
	if fd >= 0 {
		syscall.Close(fd)
	}
}

// isStopped reports whether the loop has closed its descriptors.
func (l *loop) isStopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

// eventfd returns a non-blocking eventfd (package syscall has no wrapper).
func eventfd() (int, error) {
	fd, _, errno := syscall.Syscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}
