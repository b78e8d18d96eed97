package dlock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock/internal/wire"
)

// The multiplexer tested directly against a peer that speaks the wire codec
// over net.Pipe: what it does with the frames is up to each test, so that
// reply order, split frames, silence and failures are chosen exactly.

// pipePeer is the server end of a net.Pipe.
type pipePeer struct {
	t  *testing.T
	nc net.Conn
}

// read reads one request frame.
func (p *pipePeer) read() (wire.Header, []byte) {
	p.t.Helper()
	var h wire.Header
	body, err := wire.ReadFrame(p.nc, &h, nil)
	if err != nil {
		p.t.Errorf("peer read: %v", err)
	}
	return h, body
}

// reply writes the reply to request h, echoing body, with status st.
func (p *pipePeer) reply(h wire.Header, st int32, body []byte) {
	p.t.Helper()
	if _, err := p.nc.Write(wire.AppendFrame(nil, h.Type().Reply(), h.ID(), st, body)); err != nil {
		p.t.Errorf("peer write: %v", err)
	}
}

type muxEvents struct {
	mu     sync.Mutex
	lost   []uint32
	failed []error
	late   []uint32
}

func newPipeMux(t *testing.T) (*mux, *pipePeer, *muxEvents) {
	t.Helper()
	cnc, snc := net.Pipe()
	ev := &muxEvents{}
	m := newMux(cnc, muxHooks{
		lost: func(cl *call) { ev.lost = append(ev.lost, cl.id) }, // under mux.mu
		failed: func(err error) {
			ev.mu.Lock()
			ev.failed = append(ev.failed, err)
			ev.mu.Unlock()
		},
		late: func(h *wire.Header, _ []byte) {
			ev.mu.Lock()
			ev.late = append(ev.late, h.ID())
			ev.mu.Unlock()
		},
	})
	t.Cleanup(func() {
		m.close()
		m.stop()
		snc.Close()
	})
	return m, &pipePeer{t: t, nc: snc}, ev
}

func heartbeat(dst []byte, id uint32) []byte {
	return wire.AppendFrame(dst, wire.THeartbeat, id, 7, nil)
}

// TestMuxOutOfOrderReplies: concurrent calls share the connection, and
// each gets its own reply whatever order the peer answers in.
func TestMuxOutOfOrderReplies(t *testing.T) {
	m, p, _ := newPipeMux(t)
	const n = 8
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			body := []byte(fmt.Sprint("call", i))
			cl, err := m.roundTrip(ctx, func(dst []byte, id uint32) []byte {
				return wire.AppendFrame(dst, wire.THeartbeat, id, 7, body)
			})
			if err != nil {
				errs <- err
				return
			}
			defer m.putCall(cl)
			if string(cl.body) != string(body) || cl.status != Status(i) {
				errs <- fmt.Errorf("call %d got %q status %d", i, cl.body, cl.status)
				return
			}
			errs <- nil
		}()
	}
	// Collect all n requests, then answer them in reverse order.
	hs := make([]wire.Header, n)
	bodies := make([][]byte, n)
	for i := range n {
		hs[i], bodies[i] = p.read()
	}
	for i := n - 1; i >= 0; i-- {
		var k int
		fmt.Sscanf(string(bodies[i]), "call%d", &k)
		p.reply(hs[i], int32(k), bodies[i])
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestMuxLateReply: a call whose caller gave up is forgotten; its reply,
// when it comes, goes to the late hook and not to a later call.
func TestMuxLateReply(t *testing.T) {
	m, p, ev := newPipeMux(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := m.roundTrip(ctx, heartbeat)
		done <- err
	}()
	h1, _ := p.read()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("abandoned call: %v, want the deadline", err)
	}
	go func() {
		h2, _ := p.read()
		p.reply(h1, 0, []byte("late"))
		p.reply(h2, 0, []byte("second"))
	}()
	cl, err := m.roundTrip(context.Background(), heartbeat)
	if err != nil {
		t.Fatal(err)
	}
	if string(cl.body) != "second" {
		t.Errorf("second call got %q", cl.body)
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.late) != 1 || ev.late[0] != h1.ID() {
		t.Errorf("late hook saw %v, want [%d]", ev.late, h1.ID())
	}
}

// TestMuxSplitFrameAcrossDeadline: a reader whose deadline passes in the
// middle of a frame loses none of it; the next reader reads the frame whole.
// Frames that fit the read buffer and larger ones are resumed alike.
func TestMuxSplitFrameAcrossDeadline(t *testing.T) {
	small := []byte("whole body")
	large := make([]byte, readBufSize+4000)
	for i := range large {
		large[i] = byte(i * 7)
	}
	t.Run("small", func(t *testing.T) { testSplitFrame(t, small, 3) })
	t.Run("large", func(t *testing.T) { testSplitFrame(t, large, readBufSize+100) })
}

// testSplitFrame sends the reply body in two writes, the first cut bytes of
// the body before a leader's deadline and the rest after.
func testSplitFrame(t *testing.T, body []byte, cut int) {
	m, p, _ := newPipeMux(t)
	// A leads with a short deadline; B follows. B's reply arrives in two
	// parts around A's deadline, so A reads the first part and gives up.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	aDone := make(chan error, 1)
	go func() {
		_, err := m.roundTrip(ctx, heartbeat)
		aDone <- err
	}()
	p.read()
	for i := 0; ; i++ { // A reads the connection before B comes
		m.mu.Lock()
		leading := m.reader == readerCaller
		m.mu.Unlock()
		if leading {
			break
		}
		if i == 1000 {
			t.Fatal("A never took the read role")
		}
		time.Sleep(time.Millisecond)
	}
	got := make(chan *call, 1)
	go func() {
		cl, err := m.roundTrip(context.Background(), heartbeat)
		if err != nil {
			t.Error(err)
		}
		got <- cl
	}()
	hB, _ := p.read()
	frame := wire.AppendFrame(nil, hB.Type().Reply(), hB.ID(), 0, body)
	if _, err := p.nc.Write(frame[:wire.HeaderLen+cut]); err != nil {
		t.Fatal(err)
	}
	if err := <-aDone; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("A: %v, want the deadline", err)
	}
	if _, err := p.nc.Write(frame[wire.HeaderLen+cut:]); err != nil {
		t.Fatal(err)
	}
	select {
	case cl := <-got:
		if cl == nil || string(cl.body) != string(body) {
			t.Fatalf("B's reply is not the body sent (%d bytes)", len(body))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("B's reply never delivered")
	}
}

// TestMuxFailure: when the peer goes away, every pending call fails with
// ErrConnLost, the lost hook sees each of them, the failed hook runs once,
// and new calls fail at once.
func TestMuxFailure(t *testing.T) {
	m, p, ev := newPipeMux(t)
	const n = 3
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := m.roundTrip(context.Background(), heartbeat)
			errs <- err
		}()
	}
	for range n {
		p.read()
	}
	p.nc.Close()
	for range n {
		if err := <-errs; !errors.Is(err, ErrConnLost) {
			t.Errorf("pending call: %v, want ErrConnLost", err)
		}
	}
	if _, err := m.newCall(); !errors.Is(err, ErrConnLost) {
		t.Errorf("new call after the failure: %v, want ErrConnLost", err)
	}
	m.mu.Lock()
	lost := len(ev.lost)
	m.mu.Unlock()
	ev.mu.Lock()
	failed := len(ev.failed)
	ev.mu.Unlock()
	if lost != n || failed < 1 {
		t.Errorf("lost hook saw %d calls (want %d), failed hook ran %d times (want ≥ 1)", lost, n, failed)
	}
}

// TestMuxIdleWatch: with no call in flight, the background reader notices
// that the peer went away and runs the failed hook; a caller arriving while
// it watches kicks it out and reads its own reply.
func TestMuxIdleWatch(t *testing.T) {
	m, p, ev := newPipeMux(t)
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; i < 500 && !cond(); i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if !cond() {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
	watching := func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.reader == readerBackground
	}
	waitFor("background reader", watching)
	go func() {
		h, _ := p.read()
		p.reply(h, 0, []byte("ok"))
	}()
	cl, err := m.roundTrip(context.Background(), heartbeat)
	if err != nil || string(cl.body) != "ok" {
		t.Fatalf("call while watched: %v %q", err, cl.body)
	}
	waitFor("background reader again", watching)
	p.nc.Close()
	waitFor("failed hook", func() bool {
		ev.mu.Lock()
		defer ev.mu.Unlock()
		return len(ev.failed) > 0
	})
}

// TestMuxCancelSilentPeer: a call whose ctx has no deadline returns when
// ctx is cancelled although the peer never answers — whether the cancel
// comes before the call has waited quickWait (and has registered for ctx's
// end) or after.
func TestMuxCancelSilentPeer(t *testing.T) {
	for _, after := range []time.Duration{0, quickWait / 2, 50 * time.Millisecond} {
		for _, long := range []bool{false, true} {
			t.Run(fmt.Sprint(after, long), func(t *testing.T) {
				m, p, _ := newPipeMux(t)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := make(chan error, 1)
				go func() {
					cl, err := m.newCall()
					if err != nil {
						done <- err
						return
					}
					cl.long = long
					m.send(func(dst []byte) []byte { return heartbeat(dst, cl.id) })
					done <- m.wait(ctx, cl)
				}()
				p.read() // and never answer
				time.Sleep(after)
				cancel()
				select {
				case err := <-done:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("got %v, want context.Canceled", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the call did not return after its ctx was cancelled")
				}
			})
		}
	}
}

// TestMuxKickedLeaderLeavesNoDeadline: a short call whose ctx has no
// deadline reads without one; when its ctx is cancelled while the peer is
// silent, the idle goroutine ends its read, and the next call (whose ctx has
// neither deadline nor cancel) reads its reply normally: the kick's past
// deadline was undone. A late reply to the cancelled call goes to the late
// hook.
func TestMuxKickedLeaderLeavesNoDeadline(t *testing.T) {
	m, p, ev := newPipeMux(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := m.roundTrip(ctx, heartbeat)
		done <- err
	}()
	h1, _ := p.read() // and do not answer yet
	// Cancel once the call reads without a deadline, registered for the
	// idle goroutine's watch.
	for i := 0; ; i++ {
		m.mu.Lock()
		leading := m.leadCtx != nil
		m.mu.Unlock()
		if leading {
			break
		}
		if i == 1000 {
			t.Fatal("the call never read as a watched leader")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled call: got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled call did not return")
	}
	type result struct {
		body string
		err  error
	}
	second := make(chan result, 1)
	go func() {
		cl, err := m.roundTrip(context.Background(), heartbeat)
		if err != nil {
			second <- result{err: err}
			return
		}
		second <- result{body: string(cl.body)}
		m.putCall(cl)
	}()
	h2, _ := p.read()
	go func() { // a stuck reader would block these writes
		p.reply(h1, 0, []byte("late"))
		p.reply(h2, 0, []byte("ok"))
	}()
	select {
	case r := <-second:
		if r.err != nil || r.body != "ok" {
			t.Fatalf("call after the kick: %v %q", r.err, r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call after the kick did not get its reply (a past deadline left on the socket?)")
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.late) != 1 || ev.late[0] != h1.ID() {
		t.Fatalf("late replies %v, want [%d]", ev.late, h1.ID())
	}
}

// TestMuxCancelFollower: a short call that waits while another call reads
// (a follower) returns when its ctx is cancelled although its reply never
// comes, and the reader still gets its own reply afterwards.
func TestMuxCancelFollower(t *testing.T) {
	m, p, _ := newPipeMux(t)
	lead := make(chan error, 1)
	go func() {
		cl, err := m.roundTrip(context.Background(), heartbeat)
		if err == nil && string(cl.body) != "lead" {
			err = fmt.Errorf("leader got %q", cl.body)
		}
		lead <- err
	}()
	h1, _ := p.read()
	for i := 0; ; i++ { // the first call reads before the second starts
		m.mu.Lock()
		reading := m.reader == readerCaller
		m.mu.Unlock()
		if reading {
			break
		}
		if i == 1000 {
			t.Fatal("the first call never took the read role")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	follow := make(chan error, 1)
	go func() {
		_, err := m.roundTrip(ctx, heartbeat)
		follow <- err
	}()
	p.read() // never answered
	for i := 0; ; i++ {
		m.mu.Lock()
		waiting := m.fhead != nil && m.fhead.fctx != nil
		m.mu.Unlock()
		if waiting {
			break
		}
		if i == 1000 {
			t.Fatal("the second call never waited as a follower")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-follow:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("follower: got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled follower did not return")
	}
	go p.reply(h1, 0, []byte("lead"))
	select {
	case err := <-lead:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the leader did not get its reply")
	}
}

// TestMuxCancelBeforeDeadline: a call whose ctx has a distant deadline
// returns when ctx is cancelled long before it, although the peer never
// answers — as the reader or as a follower.
func TestMuxCancelBeforeDeadline(t *testing.T) {
	for _, long := range []bool{false, true} {
		t.Run(fmt.Sprint("long=", long), func(t *testing.T) {
			m, p, _ := newPipeMux(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
			defer cancel()
			const n = 2 // the first to wait reads, the other follows
			done := make(chan error, n)
			for range n {
				go func() {
					cl, err := m.newCall()
					if err != nil {
						done <- err
						return
					}
					cl.long = long
					m.send(func(dst []byte) []byte { return heartbeat(dst, cl.id) })
					done <- m.wait(ctx, cl)
				}()
				p.read() // and never answer
			}
			time.Sleep(10 * time.Millisecond)
			cancel()
			for range n {
				select {
				case err := <-done:
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("got %v, want context.Canceled", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("a call did not return after its ctx was cancelled")
				}
			}
		})
	}
}

// TestMuxFrameOfReplacedConnDropped: a call registered on a connection
// that fails and is replaced before the caller queues the call's frame (it
// was descheduled between the two): the frame must not go out on the
// successor. The call failed with the old connection, its lock was marked
// for resolution and resolved before the successor was attached: a request
// executed after that would leave, say, a grant the client never learns of.
func TestMuxFrameOfReplacedConnDropped(t *testing.T) {
	m, _, _ := newPipeMux(t)
	stale, err := m.newCall()
	if err != nil {
		t.Fatal(err)
	}
	m.fail(stale.conn, errors.New("test: the link broke"))
	// A loopback TCP pair, whose writes do not wait for the peer's reads.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cnc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	snc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snc.Close() })
	m.attach(cnc)
	p := &pipePeer{t: t, nc: snc}
	m.sendCall(stale, func(dst []byte) []byte { return heartbeat(dst, stale.id) })
	done := make(chan error, 1)
	var id uint32
	go func() {
		cl, err := m.roundTrip(context.Background(), func(dst []byte, rid uint32) []byte {
			id = rid
			return heartbeat(dst, rid)
		})
		if err == nil {
			m.putCall(cl)
		}
		done <- err
	}()
	h, body := p.read()
	if h.ID() == stale.id {
		t.Fatalf("the frame of call %d, failed with the old connection, went out on the new one", stale.id)
	}
	p.reply(h, 0, body)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h.ID() != id {
		t.Fatalf("first frame on the new connection has id %d, want %d", h.ID(), id)
	}
}
