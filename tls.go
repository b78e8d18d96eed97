package dlock

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/dlock-io/dlock/internal/mtls"
)

// TLSOptions turns on TLS for a client ([Config].TLS) or a server
// (dlockserver.Config.TLS): the fields of DLock's struct ssl_cfg
// (README, "Securing dlock") plus what closes the gaps DLock leaves open.
//
// The connection is TLS 1.3 only, and authentication is mutual: each side
// presents CertFile/KeyFile and verifies the peer's certificate chain against
// CAFile. As in DLock, the server's name is not checked unless ServerName is
// set (certificates from a private CA need no SAN).
//
// Files are read when a connection is set up (a client: at each Dial and
// reconnection; a server: at the first handshake, then again whenever a
// file's size or modification time changes), not when the configuration is
// made, so a wrong key password makes connections fail, not
// dlockserver.New (DLock's server_start succeeds too). Call
// [TLSOptions.Check] to find such problems early.
type TLSOptions struct {
	// CAFile is a PEM file of one or more CA certificates: the peer's
	// certificate must chain to one of them (ssl_cfg.ca_path).
	CAFile string
	// CertFile is this side's PEM certificate, followed by any intermediate
	// certificates (ssl_cfg.cert_path).
	CertFile string
	// KeyFile is the PEM private key of CertFile (ssl_cfg.prkey_path):
	// PKCS#8, optionally encrypted as openssl pkcs8 -topk8 -v2 aes-256-cbc
	// or openssl genpkey -aes256 write it (PBES2, PBKDF2 with HMAC-SHA1 or
	// SHA-2, AES-CBC), PKCS#1 or SEC 1.
	KeyFile string
	// KeyPassword returns the password of an encrypted KeyFile
	// (ssl_cfg.prkey_pwd_cb). It is called each time the key is loaded, and
	// the slice it returns is zeroed right after use, whether decryption
	// succeeded or not: return a fresh copy.
	KeyPassword func() ([]byte, error)
	// CRLFile is a PEM or DER certificate revocation list
	// (ssl_cfg.crl_path). Unlike DLock, which ignores it unless a
	// verification callback is set, it is enforced on every handshake
	// whenever it is set, and re-read when the file changes: a peer whose
	// certificate (or an intermediate) is listed is refused, and so is
	// every peer whose issuer's CRL is past its next-update time. Each CRL
	// must be signed by a CA of CAFile. Replace the file atomically
	// (rename): a file that does not parse refuses every handshake.
	CRLFile string
	// VerifyPeer, if set, replaces chain verification against CAFile, as
	// DLock's cert_verify_cb does: it receives the peer's certificates,
	// leaf first, and CRLFile, and returns nil to accept the peer. The CRL
	// is still enforced after it.
	VerifyPeer func(peer []*x509.Certificate, crlFile string) error
	// RequireAES256 refuses a connection whose negotiated cipher suite is
	// not TLS_AES_256_GCM_SHA384, the only suite DLock allows. Go cannot
	// restrict the TLS 1.3 suites it offers or accepts, and two Go peers
	// always negotiate TLS_AES_128_GCM_SHA256 (or
	// TLS_CHACHA20_POLY1305_SHA256 without AES hardware), so setting it on
	// either side of a Go client and a Go server makes every connection
	// fail. It is for a Go server whose clients are DLock (OpenSSL) clients
	// that offer only TLS_AES_256_GCM_SHA384, or a Go client of such a
	// server: it proves that suite is in use. See README, "Securing dlock".
	RequireAES256 bool
	// ServerName (client only), if set, must be a name the server's
	// certificate is valid for.
	ServerName string
	// Config, if set, is the starting point: a ready configuration
	// (certificates, roots, GetCertificate...). It is copied; the fields
	// above that are set override it; TLS 1.3 is forced; a server still
	// requires and verifies client certificates against its ClientCAs
	// (unless dlockserver.Config.TLSNoClientAuth); a client verifies the
	// server as crypto/tls does with this Config (its ServerName defaults to
	// the host dialed). CRLFile, VerifyPeer and RequireAES256 apply on top
	// of its own VerifyConnection.
	Config *tls.Config
}

// ErrKeyPassword is wrapped by the error of a connection whose encrypted
// private key did not decrypt with the password from KeyPassword.
var ErrKeyPassword = mtls.ErrKeyPassword

// mtlsOptions translates o for the internal package.
func (o *TLSOptions) mtlsOptions() mtls.Options {
	return mtls.Options{
		CAFile:        o.CAFile,
		CertFile:      o.CertFile,
		KeyFile:       o.KeyFile,
		CRLFile:       o.CRLFile,
		KeyPassword:   o.KeyPassword,
		VerifyPeer:    o.VerifyPeer,
		RequireAES256: o.RequireAES256,
		ServerName:    o.ServerName,
		Base:          o.Config,
	}
}

// Check loads every file of o as a connection would (calling KeyPassword)
// and reports the first problem: a missing file, a key that does not
// decrypt or match its certificate, a CRL not signed by the CA. dlockd runs
// it at startup.
func (o *TLSOptions) Check() error {
	return mtls.Load(o.mtlsOptions())
}

// clientTLS loads o's files and returns the configuration of one
// connection.
func clientTLS(o *TLSOptions) (*tls.Config, error) {
	src, err := mtls.NewClient(o.mtlsOptions())
	if err != nil {
		return nil, err
	}
	return src.Config()
}

// handshakeTLS runs the client side of the TLS handshake on nc, within ctx.
// In TLS 1.3 the server checks the client's certificate after the client
// finished its handshake, so a refusal shows up at the first read, as
// "remote error: tls: ...".
func handshakeTLS(ctx context.Context, nc net.Conn, address string, o *TLSOptions) (net.Conn, error) {
	cfg, err := clientTLS(o)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("TLS configuration: %w", err)
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg = cfg.Clone()
		if host, _, err := net.SplitHostPort(address); err == nil {
			cfg.ServerName = host
		} else {
			cfg.ServerName = address
		}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		var rh tls.RecordHeaderError
		switch {
		case errors.As(err, &rh):
			return nil, fmt.Errorf("TLS handshake: the server did not answer in TLS (a plaintext dlock server?): %w", err)
		case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
			return nil, fmt.Errorf("TLS handshake: the server closed the connection (a plaintext dlock server closes at the first TLS byte): %w", err)
		}
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}
