package dlock_test

import (
	"io"
	"net"
	"sync"
	"testing"
)

// faultProxy is a TCP proxy on loopback between clients and a server that a
// test can black-hole (forward nothing, close nothing: bytes stay where they
// are, as on a link that stopped delivering) and sever (close every
// connection through it, as when the black hole finally breaks them).
type faultProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex
	held    bool          // black-holed
	down    bool          // only the server-to-client direction is held
	resume  chan struct{} // closed when the black hole heals
	refuse  bool          // close new connections at once
	conns   []net.Conn
	wg      sync.WaitGroup
	stopped bool
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{ln: ln, target: target, resume: make(chan struct{})}
	close(p.resume)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the address clients dial instead of the server's.
func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

func (p *faultProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.refuse || p.stopped {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, false)
		go p.pipe(c, s, true)
	}
}

// gate blocks while the proxy is black-holed in that direction.
func (p *faultProxy) gate(toClient bool) {
	p.mu.Lock()
	ch := p.resume
	if p.down && !toClient {
		ch = nil
	}
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (p *faultProxy) pipe(dst, src net.Conn, toClient bool) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		p.gate(toClient)
		n, err := src.Read(buf)
		if n > 0 {
			p.gate(toClient)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

// blackhole stops forwarding in both directions without closing anything.
func (p *faultProxy) blackhole() { p.hold(false) }

// blackholeReplies stops forwarding from the server to the clients only:
// requests arrive, replies do not.
func (p *faultProxy) blackholeReplies() { p.hold(true) }

func (p *faultProxy) hold(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.held {
		p.held = true
		p.down = down
		p.resume = make(chan struct{})
	}
}

// heal resumes forwarding.
func (p *faultProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held {
		p.held, p.down = false, false
		close(p.resume)
	}
}

// sever closes every connection through the proxy and heals the black hole,
// so that new connections are forwarded (unless refusing).
func (p *faultProxy) sever() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.heal()
}

// setRefuse makes the proxy close new connections at once (the server seems
// down) or forward them again.
func (p *faultProxy) setRefuse(v bool) {
	p.mu.Lock()
	p.refuse = v
	p.mu.Unlock()
}

func (p *faultProxy) close() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.ln.Close()
	p.sever()
	p.wg.Wait()
}
