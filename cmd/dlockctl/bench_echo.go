package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/wire"
)

// echoRun is the floor: as many connections and requests in flight as the
// dlock run, each exchanging a 44-byte request for a 40-byte reply. An
// operation is a pair of ping-pongs, like an acquire + release. With more
// than one request in flight per connection the floor is pipelined: one
// goroutine per connection keeps the window full (echoWindow), unless
// -echo-mux asks for a client built like dlock.Client.
type echoRun struct {
	runner
	conns []*echoConn
	ws    []*echoWorker
	wins  []*echoWindow
}

type echoWorker struct {
	conn       *echoConn
	slot       int
	pair, ping hist
	ops        uint64
}

func newEchoRun(ctx context.Context, cfg *benchConfig, srv *server) (*echoRun, error) {
	if srv.echoAddr == "" {
		return nil, errors.New("bench: no echo server")
	}
	r := &echoRun{runner: runner{srv: srv}, conns: make([]*echoConn, cfg.clients)}
	var d net.Dialer
	for i := range r.conns {
		nc, err := d.DialContext(ctx, "tcp", srv.echoAddr)
		if err != nil {
			r.close()
			return nil, fmt.Errorf("bench: echo: %w", err)
		}
		if cfg.inflight > 1 && !cfg.echoMux {
			r.conns[i] = newEchoConn(nc, 1, false)
			r.wins = append(r.wins, newEchoWindow(r.conns[i], cfg.inflight))
			continue
		}
		r.conns[i] = newEchoConn(nc, cfg.inflight, cfg.echoMux)
	}
	if r.wins != nil {
		return r, nil
	}
	r.ws = make([]*echoWorker, cfg.workers())
	for i := range r.ws {
		r.ws[i] = &echoWorker{conn: r.conns[i/cfg.inflight], slot: i % cfg.inflight}
	}
	return r, nil
}

func (r *echoRun) close() {
	for _, c := range r.conns {
		if c != nil {
			c.close()
		}
	}
}

func (r *echoRun) slice(ctx context.Context, warmup, d time.Duration, count int64) error {
	err := r.runner.slice(ctx, warmup, d, count, func(ctx context.Context, rc *runControl, spawn func(func() error)) {
		for _, w := range r.ws {
			spawn(func() error { return w.run(ctx, rc) })
		}
		for _, w := range r.wins {
			spawn(func() error { return w.run(ctx, rc) })
		}
	})
	if err != nil {
		return fmt.Errorf("bench: echo: %w", err)
	}
	return nil
}

func (w *echoWorker) run(ctx context.Context, rc *runControl) error {
	for {
		run, record := rc.next(ctx)
		if !run {
			return nil
		}
		t0 := time.Now()
		if err := w.conn.pingPong(w.slot); err != nil {
			return err
		}
		t1 := time.Now()
		if err := w.conn.pingPong(w.slot); err != nil {
			return err
		}
		if record {
			w.ping.Record(int64(t1.Sub(t0)))
			w.ping.RecordSince(t1)
			w.pair.RecordSince(t0)
			w.ops++
		}
	}
}

func (r *echoRun) result() *runResult {
	res := &runResult{Kind: "echo"}
	var pair, ping hist
	for _, w := range r.ws {
		pair.Merge(&w.pair)
		ping.Merge(&w.ping)
		res.Ops += w.ops
	}
	res.LockOps = 2 * res.Ops
	for _, w := range r.wins {
		ping.Merge(&w.ping)
		res.LockOps += w.pings
	}
	if r.wins != nil {
		res.Ops = res.LockOps / 2
	}
	r.fill(res)
	res.Latency = summarize(&pair)
	res.Acquire = summarize(&ping)
	return res
}

// goroutine: the floor. Otherwise it is built like dlock.Client: callers
// append their frames to a shared buffer that one of them writes, and a
// reader goroutine hands each reply to the slot whose id it carries.
type echoConn struct {
	nc    net.Conn
	frame [echoRequestLen]byte
	reply [echoReplyLen]byte

	wmu          sync.Mutex
	wbuf, wspare []byte
	flushing     bool

	slots []chan error
	done  chan struct{}
}

func newEchoConn(nc net.Conn, inflight int, mux bool) *echoConn {
	c := &echoConn{nc: nc}
	m := wire.LockOp{LockID: 1, Cmd: uint8(dlock.CmdExclusiveTrylock)}
	if b := m.Append(nil, 0, 1); len(b) == echoRequestLen {
		copy(c.frame[:], b)
	}
	if inflight > 1 || mux {
		c.slots = make([]chan error, inflight)
		for i := range c.slots {
			c.slots[i] = make(chan error, 1)
		}
		c.wbuf = make([]byte, 0, 4096)
		c.wspare = make([]byte, 0, 4096)
		c.done = make(chan struct{})
		go c.readLoop()
	}
	return c
}

func (c *echoConn) pingPong(slot int) error {
	if c.slots == nil {
		if _, err := c.nc.Write(c.frame[:]); err != nil {
			return err
		}
		_, err := io.ReadFull(c.nc, c.reply[:])
		return err
	}
	if err := c.send(slot); err != nil {
		return err
	}
	select {
	case err := <-c.slots[slot]:
		return err
	case <-c.done:
		return errors.New("echo connection closed")
	}
}

// send queues the frame of slot and writes the queue unless another
// goroutine is writing it already.
func (c *echoConn) send(slot int) error {
	c.wmu.Lock()
	n := len(c.wbuf)
	c.wbuf = append(c.wbuf, c.frame[:]...)
	c.wbuf[n+4], c.wbuf[n+5] = byte(slot), byte(slot>>8)
	if c.flushing {
		c.wmu.Unlock()
		return nil
	}
	c.flushing = true
	for len(c.wbuf) > 0 {
		buf := c.wbuf
		c.wbuf = c.wspare[:0]
		c.wmu.Unlock()
		_, err := c.nc.Write(buf)
		c.wmu.Lock()
		c.wspare = buf[:0]
		if err != nil {
			c.wbuf = c.wbuf[:0]
			c.flushing = false
			c.wmu.Unlock()
			return err
		}
	}
	c.flushing = false
	c.wmu.Unlock()
	return nil
}

func (c *echoConn) readLoop() {
	defer close(c.done)
	var rep [echoReplyLen]byte
	br := bufio.NewReaderSize(c.nc, 16<<10)
	for {
		if _, err := io.ReadFull(br, rep[:]); err != nil {
			for _, s := range c.slots {
				select {
				case s <- err:
				default:
				}
			}
			return
		}
		slot := int(rep[4]) | int(rep[5])<<8
		if slot < len(c.slots) {
			c.slots[slot] <- nil
		}
	}
}

func (c *echoConn) close() {
	c.nc.Close()
	if c.done != nil {
		<-c.done
	}
}

// echoWindow is the pipelined floor of one connection: one goroutine keeps
// n requests in flight, reading every reply that has arrived and writing a
// new request for each in one batch, so that nothing but the frames and the
// system calls costs. An operation of the runControl is one ping-pong.
type echoWindow struct {
	conn   *echoConn
	br     *bufio.Reader
	sent   []time.Time
	record []bool
	out    []byte
	ping   hist
	pings  uint64
}

func newEchoWindow(c *echoConn, n int) *echoWindow {
	return &echoWindow{conn: c, br: bufio.NewReaderSize(c.nc, 64<<10),
		sent: make([]time.Time, n), record: make([]bool, n), out: make([]byte, 0, n*echoRequestLen)}
}

// next queues the request of slot if the run goes on, and reports whether
// it did.
func (w *echoWindow) next(ctx context.Context, rc *runControl, slot int, now time.Time) bool {
	run, record := rc.next(ctx)
	if !run {
		return false
	}
	n := len(w.out)
	w.out = append(w.out, w.conn.frame[:]...)
	w.out[n+4], w.out[n+5] = byte(slot), byte(slot>>8)
	w.sent[slot], w.record[slot] = now, record
	return true
}

func (w *echoWindow) run(ctx context.Context, rc *runControl) error {
	inFlight := 0
	w.out = w.out[:0]
	now := time.Now()
	for slot := range w.sent {
		if !w.next(ctx, rc, slot, now) {
			break
		}
		inFlight++
	}
	var rep [echoReplyLen]byte
	for inFlight > 0 {
		if len(w.out) > 0 {
			if _, err := w.conn.nc.Write(w.out); err != nil {
				return err
			}
			w.out = w.out[:0]
		}
		// One reply (waiting for it), then every complete one buffered.
		for first := true; first || w.br.Buffered() >= echoReplyLen; first = false {
			if _, err := io.ReadFull(w.br, rep[:]); err != nil {
				return err
			}
			inFlight--
			slot := int(rep[4]) | int(rep[5])<<8
			if slot >= len(w.sent) {
				return errors.New("echo reply for an unknown slot")
			}
			t := time.Now()
			if w.record[slot] {
				w.ping.Record(int64(t.Sub(w.sent[slot])))
				w.pings++
			}
			if w.next(ctx, rc, slot, t) {
				inFlight++
			}
		}
	}
	return nil
}
