package dlockserver

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/mtls"
)

// serverTLS returns the tls.Config of a server: it reads o's files at the
// first handshake and again when they change. A file that does not load
// fails the handshake and is logged as an error.
func serverTLS(o *dlock.TLSOptions, noClientAuth bool, log *slog.Logger) (*tls.Config, error) {
	src, err := mtls.NewServer(mtls.Options{
		CAFile:        o.CAFile,
		CertFile:      o.CertFile,
		KeyFile:       o.KeyFile,
		CRLFile:       o.CRLFile,
		KeyPassword:   o.KeyPassword,
		VerifyPeer:    o.VerifyPeer,
		RequireAES256: o.RequireAES256,
		NoClientAuth:  noClientAuth,
		Base:          o.Config,
	})
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg, err := src.Config()
			if err != nil {
				log.Error("TLS configuration", "err", err)
			}
			return cfg, err
		},
	}, nil
}

// startHandshake counts c among the pending handshakes; when there are
// MaxPendingHandshakes already, the oldest is closed to make room (a
// handshake that takes long is more likely a stalled peer than a slow one).
// Called with mu held.
func (s *Server) startHandshake(c *conn) {
	if len(s.shaking) >= s.cfg.MaxPendingHandshakes {
		var oldest *conn
		for p := range s.shaking {
			if oldest == nil || p.seq < oldest.seq {
				oldest = p
			}
		}
		oldest.evicted = true
		delete(s.shaking, oldest)
		delete(s.conns, oldest)
		oldest.raw.Close()
		s.cfg.Logger.Debug("closing a pending TLS handshake to make room", "remote", oldest.raw.RemoteAddr())
	}
	s.shaking[c] = struct{}{}
}

// handshake runs the server side of the TLS handshake, if any, within
// HandshakeTimeout, and records the client certificate's identity. It
// reports whether the connection may go on.
func (c *conn) handshake() bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	s := c.s
	c.raw.SetDeadline(s.clk.now().Add(s.cfg.HandshakeTimeout))
	err := tc.Handshake()
	c.raw.SetDeadline(time.Time{})
	s.mu.Lock()
	delete(s.shaking, c)
	s.mu.Unlock()
	if err != nil {
		log := s.cfg.Logger.Debug
		msg := "TLS handshake failed"
		var rh tls.RecordHeaderError
		var ne net.Error
		var cv *tls.CertificateVerificationError
		switch {
		case errors.As(err, &rh) && rh.RecordHeader[0] == 0x0C && rh.RecordHeader[1] == 0xD1:
			// The dlock magic, 0xD10C little endian: a plaintext client.
			log, msg = s.cfg.Logger.Warn, "refusing a plaintext client: this server requires TLS"
		case errors.As(err, &ne) && ne.Timeout():
			msg = "TLS handshake timed out"
		case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed):
		case errors.As(err, &cv), tc.ConnectionState().Version != 0:
			log = s.cfg.Logger.Warn // a peer that speaks TLS and failed authentication
		}
		log(msg, "remote", c.raw.RemoteAddr(), "err", err)
		return false
	}
	if cs := tc.ConnectionState(); len(cs.PeerCertificates) > 0 {
		c.peerID = mtls.Identity(cs.PeerCertificates[0])
		c.hasPeer = true
	}
	return true
}
