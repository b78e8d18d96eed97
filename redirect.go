package dlock

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/dlock-io/dlock/internal/wire"
)

// Highly available clusters: several servers, one elected primary, the
// others standbys that answer every registration with a redirect naming the
// primary. The client follows redirects when it registers (Dial, Reinit and
// automatic recovery), so Config.Addrs need only list some of the servers:
// they are seeds.
//
// Every primary has an epoch, the revision of its election, carried in its
// registration reply. A client remembers the highest epoch it has seen and
// refuses a server that answers with a lower one: a primary that was
// replaced and does not know it yet. A connection belongs to one epoch: a
// primary that stops serving closes all of its connections, so the client
// never reads a reply of an older epoch on a connection of a newer one.

// statusRedirect is the reply status of a standby (never returned to
// callers: followed, or reported as ErrNotReady while no primary is known).
const statusRedirect = Status(wire.StatusRedirect)

// errRedirected fails a connection whose server answered a request with a
// redirect: it no longer serves.
var errRedirected = errors.New("server stopped serving (redirect)")

// maxRedirects bounds the redirects followed for one registration.
const maxRedirects = 4

// ErrStaleEpoch is returned (wrapped) when a server answers with an epoch
// older than one the client has seen: a primary that was replaced.
var ErrStaleEpoch = errors.New("dlock: server is a replaced primary (older epoch)")

// regReply is what a registration reply carries.
type regReply struct {
	id       int32
	state    uint8
	flags    uint8 // wire.InitFlag*
	epoch    uint64
	redirect string
}

// connect dials addr and registers with t (TInit, or TReinit of id),
// following standbys' redirects. On success it returns the connection and
// the address that answered; otherwise the connection is closed. A standby
// that knows no primary, or a named primary that cannot be reached, yields
// ErrNotReady: a failover is under way.
func (c *Client) connect(ctx context.Context, addr string, t wire.Type, id int32) (net.Conn, string, regReply, error) {
	from := ""
	for hop := 0; ; hop++ {
		nc, err := c.dial(ctx, addr)
		if err != nil {
			if from != "" {
				return nil, addr, regReply{}, fmt.Errorf("primary %s named by %s: %v: %w", addr, from, err, ErrNotReady)
			}
			return nil, addr, regReply{}, err
		}
		rep, st, err := c.register(ctx, nc, t, id)
		if err == nil && st == statusRedirect {
			nc.Close()
			if rep.redirect == "" || rep.redirect == addr || hop >= maxRedirects {
				return nil, addr, regReply{}, fmt.Errorf("standby %s knows no reachable primary: %w", addr, ErrNotReady)
			}
			from, addr = addr, rep.redirect
			continue
		}
		if err == nil && st != Success {
			err = st
		}
		if err == nil {
			c.mu.Lock()
			if rep.epoch < c.epoch {
				err = fmt.Errorf("%w: epoch %d, seen %d", ErrStaleEpoch, rep.epoch, c.epoch)
			} else {
				c.epoch = rep.epoch
			}
			c.mu.Unlock()
		}
		if err != nil {
			nc.Close()
			return nil, addr, regReply{}, err
		}
		return nc, addr, rep, nil
	}
}

// Epoch returns the highest primary epoch the client has registered with (0
// outside a highly available cluster).
func (c *Client) Epoch() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.epoch
}

// seeds returns addr followed by the other configured addresses.
func (c *Client) seeds(addr string) []string {
	out := []string{addr}
	for _, a := range c.addrs() {
		if a != addr {
			out = append(out, a)
		}
	}
	return out
}
