package dlockserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/dlock-io/dlock"
)

// Config configures a Server. The zero value is a working configuration: a
// server on 127.0.0.1:21616 with the DLock limits.
type Config struct {
	// Addr is the TCP address ListenAndServe listens on, "host:port". An
	// empty host means 127.0.0.1; an empty or zero port means 21616. An
	// explicit port must be within 1024..65535.
	Addr string
	// UnixSocket, if set, is a path on which ListenAndServe also accepts
	// clients on the same host.
	UnixSocket string

	// MaxClients bounds registered clients (including abnormal ones whose
	// connection was lost); default 1000.
	MaxClients int
	// MaxLocks bounds lock objects; default 51200.
	MaxLocks int
	// MaxObjects bounds atomic64 objects; default 102400.
	MaxObjects int
	// MaxConns bounds open connections; default 4000. When full, the oldest
	// connection that has not registered a client is closed to make room,
	// else the new one is refused.
	MaxConns int

	// SessionTimeout is how long a client whose connection was lost keeps
	// its locks before the server removes it (releasing its holds and waking
	// whoever waits behind them). Default 15 s; negative keeps abnormal
	// clients until they are evicted, as upstream DLock does. A client that
	// comes back with Reinit within the timeout keeps everything.
	SessionTimeout time.Duration

	// RecoveryClients, when > 0, starts the server in recovery mode: until
	// that many clients have re-registered and finished uploading their
	// locks, every other request is answered DLOCK_NOT_READY. At most 1000.
	RecoveryClients int
	// RecoveryTimeout, when > 0, bounds recovery mode: past it the server
	// becomes ready with the clients that came back, logs how many never
	// did, and keeps every lock that was reported. Zero waits forever, as
	// upstream DLock does.
	RecoveryTimeout time.Duration

	// TPMode is the transport mode (SEPERATE_CONN 0, UNI_CONN 1) clients must
	// announce; it exists for C ABI compatibility and changes nothing else.
	TPMode uint8

	// WriteTimeout bounds one write of replies to a client; a client that
	// does not read for that long is disconnected. Default 10 s.
	WriteTimeout time.Duration

	// RegisterTimeout closes a connection that has not registered a client
	// (an accepted Init or Reinit) this long after it was accepted (after
	// its TLS handshake, with TLS), whatever it sends meanwhile. Default
	// 10 s; negative: never. Each such close is logged once, as a warning.
	RegisterTimeout time.Duration
	// FrameTimeout closes a connection that started a frame and did not
	// send the rest within this long: a peer that trickles a frame byte by
	// byte, or holds a truncated frame open. It applies to registered
	// clients too; a client that is idle between frames is not affected.
	// Default 10 s; negative: never. Logged once, as a warning.
	FrameTimeout time.Duration

	// TLS, if set, makes every TCP and Unix-socket connection TLS 1.3 with
	// mutual authentication (ssl_cfg; see dlock.TLSOptions). Plaintext
	// clients are refused. When a client presents a certificate, its id is
	// bound to the certificate's identity, a hash of its issuer and subject
	// names: a Reinit of that id with another identity fails with -1
	// (README, "Securing dlock").
	TLS *dlock.TLSOptions
	// TLSNoClientAuth turns mutual authentication off: clients are not asked
	// for a certificate (one-way TLS), and client ids are bound to nothing.
	TLSNoClientAuth bool
	// AdminNames are the subject common names of the client certificates
	// allowed to make admin requests (lock listing, top, force-release) on a
	// server with mutual TLS. Empty: nobody may. Without client
	// certificates (plaintext, or TLSNoClientAuth) every client may: limit
	// who reaches the port.
	AdminNames []string
	// HandshakeTimeout bounds a TLS handshake; default 10 s.
	HandshakeTimeout time.Duration
	// MaxPendingHandshakes bounds connections in the TLS handshake; default
	// 256. When full, the oldest pending handshake is closed to make room.
	MaxPendingHandshakes int

	// Cluster, if set, makes the server a member of a highly available
	// cluster driven by that coordinator (package dlockserver/ha): it starts
	// as a standby that redirects clients, serves only once promoted, and
	// stops serving when its fence passes. RecoveryClients is then ignored.
	Cluster Coordinator

	// GoroutineConns serves every connection with a reader and a writer
	// goroutine of its own. By default, on Linux, plain TCP and Unix-socket
	// connections are served by the server's event loops instead (one per
	// GOMAXPROCS, over epoll; see loop_linux.go), which make fewer system
	// calls per request; TLS connections always use goroutines. The
	// behaviour clients see is the same either way.
	GoroutineConns bool

	// WallClock, if set, replaces time.Now as the wall clock the server
	// reads at start: the anchor of its lease seconds and the start of its
	// fencing tokens (for tests of a server whose clock is wrong). Time
	// still advances with the monotonic clock.
	WallClock func() time.Time

	// Logger receives connection-level events. Nil means silent.
	Logger *slog.Logger
}

// Errors returned by New and ListenAndServe for an invalid Config.
var (
	ErrInvalidPort   = errors.New("dlockserver: port must be within 1024..65535")
	ErrInvalidConfig = errors.New("dlockserver: invalid configuration")
	ErrServerClosed  = errors.New("dlockserver: server closed")
)

func (c Config) withDefaults() (Config, error) {
	if c.MaxClients == 0 {
		c.MaxClients = dlock.MaxClients
	}
	if c.MaxLocks == 0 {
		c.MaxLocks = dlock.MaxLocks
	}
	if c.MaxObjects == 0 {
		c.MaxObjects = dlock.MaxObjects
	}
	if c.MaxConns == 0 {
		c.MaxConns = 4000
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 15 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.RegisterTimeout == 0 {
		c.RegisterTimeout = 10 * time.Second
	}
	if c.FrameTimeout == 0 {
		c.FrameTimeout = 10 * time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.MaxPendingHandshakes <= 0 {
		c.MaxPendingHandshakes = 256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.WallClock == nil {
		c.WallClock = wallClock
	}
	switch {
	case c.MaxClients < 0 || c.MaxLocks < 0 || c.MaxObjects < 0 || c.MaxConns < 0:
		return c, fmt.Errorf("%w: negative limit", ErrInvalidConfig)
	case c.RecoveryClients < 0 || c.RecoveryClients > dlock.MaxClients:
		return c, fmt.Errorf("%w: RecoveryClients %d outside 0..%d", ErrInvalidConfig, c.RecoveryClients, dlock.MaxClients)
	case c.TPMode > 1:
		return c, fmt.Errorf("%w: TPMode %d", ErrInvalidConfig, c.TPMode)
	}
	return c, nil
}

// ListenAddr returns Addr with the defaults applied and the port validated:
// the address ListenAndServe listens on.
func (c Config) ListenAddr() (string, error) {
	host, port := "127.0.0.1", dlock.DefaultPort
	if c.Addr != "" {
		h, p, err := net.SplitHostPort(c.Addr)
		if err != nil {
			return "", fmt.Errorf("dlockserver: address %q: %w", c.Addr, err)
		}
		if h != "" {
			host = h
		}
		if p != "" {
			n, err := strconv.Atoi(p)
			if err != nil {
				return "", fmt.Errorf("dlockserver: address %q: %w", c.Addr, err)
			}
			if n != 0 {
				if n < dlock.MinPort || n > dlock.MaxPort {
					return "", ErrInvalidPort
				}
				port = n
			}
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}
