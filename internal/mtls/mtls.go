// Package mtls builds the TLS configurations of dlock's client and server
// (README, "Securing dlock"): TLS 1.3 only, mutual authentication against a CA
// bundle, certificates and keys read from PEM files (encrypted PKCS#8 keys
// included, the password wiped after use), a CRL enforced on every handshake
// and re-read when its file changes, an optional peer-verification callback
// that replaces chain verification (the CRL still applies), and an optional
// check of the negotiated cipher suite.
//
// It depends on the standard library only; the dlock and dlockserver
// packages translate their public options into Options.
package mtls

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Options describes one side's TLS setup. See dlock.TLSOptions for the
// meaning of each field.
type Options struct {
	CAFile        string
	CertFile      string
	KeyFile       string
	CRLFile       string
	KeyPassword   func() ([]byte, error)
	VerifyPeer    func(peer []*x509.Certificate, crlFile string) error
	RequireAES256 bool
	ServerName    string // client only
	NoClientAuth  bool   // server only
	Base          *tls.Config
}

// Errors of configuration and verification.
var (
	ErrNoCertificate = errors.New("no certificate configured (set CertFile and KeyFile, or Certificates in the tls.Config)")
	ErrNoCA          = errors.New("no CA configured to verify the peer (set CAFile, a VerifyPeer callback, or the roots in the tls.Config)")
)

// Source loads the files of Options and re-reads each one when its size or
// modification time changes. Its Config method is cheap when nothing
// changed: a few stat calls.
type Source struct {
	o      Options
	server bool
	now    func() time.Time

	mu        sync.Mutex
	caStamp   stamp
	cas       []*x509.Certificate
	pool      *x509.CertPool
	pairStamp [2]stamp
	pair      *tls.Certificate
	crlStamp  stamp
	crl       *crlSet
	cfg       *tls.Config // built from the above; nil when it must be rebuilt
}

// stamp identifies a version of a file.
type stamp struct {
	mod  int64 // ns since the epoch
	size int64
}

func fileStamp(name string) (stamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime().UnixNano(), fi.Size()}, nil
}

// NewServer checks o for a server and returns its Source. Files are read at
// the first handshake, not now, as DLock does (server_start succeeds with a
// wrong key password; connections fail).
func NewServer(o Options) (*Source, error) {
	return newSource(o, true)
}

// NewClient checks o for a client and returns its Source.
func NewClient(o Options) (*Source, error) {
	return newSource(o, false)
}

func newSource(o Options, server bool) (*Source, error) {
	if o.CertFile == "" && o.KeyFile == "" && (o.Base == nil || len(o.Base.Certificates) == 0 && o.Base.GetCertificate == nil && o.Base.GetClientCertificate == nil) {
		if server || o.Base == nil {
			return nil, ErrNoCertificate
		}
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("CertFile and KeyFile go together")
	}
	needCA := o.VerifyPeer == nil && !(server && o.NoClientAuth)
	if needCA && o.CAFile == "" && (o.Base == nil || server && o.Base.ClientCAs == nil) {
		// A client with a ready tls.Config and no RootCAs uses the system
		// roots, as crypto/tls does.
		return nil, ErrNoCA
	}
	if o.CRLFile != "" && o.CAFile == "" {
		return nil, errors.New("CRLFile needs CAFile: the CRL's signature is checked against the CA bundle")
	}
	if o.Base != nil && o.Base.MaxVersion != 0 && o.Base.MaxVersion < tls.VersionTLS13 {
		return nil, errors.New("the tls.Config's MaxVersion is below TLS 1.3: dlock speaks TLS 1.3 only")
	}
	return &Source{o: o, server: server, now: time.Now}, nil
}

// Config re-reads the files that changed and returns the current
// configuration. A file that fails to load makes Config fail (handshakes are
// refused: fail closed) until it loads.
func (s *Source) Config() (*tls.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.refresh(); err != nil {
		return nil, err
	}
	if s.cfg == nil {
		s.cfg = s.build()
	}
	return s.cfg, nil
}

// refresh reloads changed files. Called with mu held.
func (s *Source) refresh() error {
	o := &s.o
	if o.CAFile != "" {
		st, err := fileStamp(o.CAFile)
		if err != nil {
			return fmt.Errorf("CA file: %w", err)
		}
		if st != s.caStamp || s.pool == nil {
			cas, err := loadCerts(o.CAFile)
			if err != nil {
				return fmt.Errorf("CA file: %w", err)
			}
			s.pool = x509.NewCertPool()
			for _, c := range cas {
				s.pool.AddCert(c)
			}
			s.cas, s.caStamp, s.cfg = cas, st, nil
			s.crlStamp = stamp{} // re-check the CRL's signature
		}
	}
	if o.CertFile != "" {
		cst, err := fileStamp(o.CertFile)
		if err != nil {
			return fmt.Errorf("certificate file: %w", err)
		}
		kst, err := fileStamp(o.KeyFile)
		if err != nil {
			return fmt.Errorf("key file: %w", err)
		}
		if st := [2]stamp{cst, kst}; st != s.pairStamp || s.pair == nil {
			pair, err := LoadKeyPair(o.CertFile, o.KeyFile, o.KeyPassword)
			if err != nil {
				return err
			}
			s.pair, s.pairStamp, s.cfg = pair, st, nil
		}
	}
	if o.CRLFile != "" {
		st, err := fileStamp(o.CRLFile)
		if err != nil {
			return fmt.Errorf("CRL file: %w", err)
		}
		if st != s.crlStamp || s.crl == nil {
			crl, err := loadCRL(o.CRLFile, s.cas)
			if err != nil {
				return err
			}
			s.crl, s.crlStamp, s.cfg = crl, st, nil
		}
	}
	return nil
}

// build makes the configuration for the loaded files. Called with mu held.
func (s *Source) build() *tls.Config {
	o := &s.o
	var cfg *tls.Config
	if o.Base != nil {
		cfg = o.Base.Clone()
	} else {
		cfg = &tls.Config{}
	}
	cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	cfg.GetConfigForClient = nil
	cfg.SessionTicketsDisabled = true // every connection verifies the peer's certificate afresh
	if pair := s.pair; pair != nil && s.server {
		cfg.Certificates = []tls.Certificate{*pair}
	} else if pair != nil {
		// Present the certificate whatever CAs the server says it accepts,
		// as OpenSSL does, so that a refusal comes with the server's reason
		// (crypto/tls would otherwise send no certificate).
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return pair, nil }
	}
	ownChain := false // we verify the chain in VerifyConnection
	if s.server {
		if s.pool != nil {
			cfg.ClientCAs = s.pool
		}
		switch {
		case o.NoClientAuth:
			cfg.ClientAuth = tls.NoClientCert
		case o.VerifyPeer != nil:
			cfg.ClientAuth = tls.RequireAnyClientCert
		default:
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	} else {
		if s.pool != nil {
			cfg.RootCAs = s.pool
		}
		switch {
		case o.VerifyPeer != nil:
			cfg.InsecureSkipVerify = true // replaced by the callback
		case o.Base == nil:
			// As DLock: the server's certificate must chain to the CA
			// bundle; its name is checked only if ServerName is set.
			cfg.InsecureSkipVerify = true
			ownChain = true
		}
		if o.ServerName != "" {
			cfg.ServerName = o.ServerName
		}
	}
	check := &checker{
		server:        s.server,
		verifyPeer:    o.VerifyPeer,
		crlFile:       o.CRLFile,
		crl:           s.crl,
		requireAES256: o.RequireAES256,
		noClientAuth:  s.server && o.NoClientAuth,
		next:          cfg.VerifyConnection,
		now:           s.now,
	}
	if ownChain {
		check.roots = s.pool
		check.serverName = o.ServerName
	}
	cfg.VerifyConnection = check.verify
	return cfg
}

// checker is the VerifyConnection hook of one configuration.
type checker struct {
	server        bool
	roots         *x509.CertPool // set when the chain is verified here
	serverName    string
	verifyPeer    func([]*x509.Certificate, string) error
	crlFile       string
	crl           *crlSet
	requireAES256 bool
	noClientAuth  bool
	next          func(tls.ConnectionState) error
	now           func() time.Time
}

func (k *checker) verify(cs tls.ConnectionState) error {
	if cs.Version != tls.VersionTLS13 {
		return fmt.Errorf("dlock: negotiated %s; only TLS 1.3 is allowed", tls.VersionName(cs.Version))
	}
	if k.requireAES256 && cs.CipherSuite != tls.TLS_AES_256_GCM_SHA384 {
		return fmt.Errorf("dlock: negotiated cipher suite %s, but only TLS_AES_256_GCM_SHA384 is allowed (RequireAES256)", tls.CipherSuiteName(cs.CipherSuite))
	}
	peer := cs.PeerCertificates
	if len(peer) == 0 {
		if k.noClientAuth {
			return k.chain(cs)
		}
		return errors.New("dlock: the peer presented no certificate")
	}
	chains := cs.VerifiedChains
	if k.roots != nil {
		opts := x509.VerifyOptions{
			Roots:         k.roots,
			Intermediates: x509.NewCertPool(),
			CurrentTime:   k.now(),
			DNSName:       k.serverName,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		for _, c := range peer[1:] {
			opts.Intermediates.AddCert(c)
		}
		var err error
		if chains, err = peer[0].Verify(opts); err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: peer, Err: err}
		}
	}
	if k.verifyPeer != nil {
		if err := k.verifyPeer(peer, k.crlFile); err != nil {
			return fmt.Errorf("dlock: peer certificate %q refused by the verification callback: %w", peer[0].Subject, err)
		}
	}
	if k.crl != nil {
		if err := k.crl.check(peer, k.now()); err != nil {
			return err
		}
		if len(chains) > 0 && len(chains[0]) > 1 {
			if err := k.crl.check(chains[0][:len(chains[0])-1], k.now()); err != nil {
				return err
			}
		}
	}
	return k.chain(cs)
}

func (k *checker) chain(cs tls.ConnectionState) error {
	if k.next != nil {
		return k.next(cs)
	}
	return nil
}

// LoadKeyPair reads a PEM certificate chain (leaf first) and its private
// key, decrypting an encrypted PKCS#8 key with the password from password
// (wiped after use).
func LoadKeyPair(certFile, keyFile string, password func() ([]byte, error)) (*tls.Certificate, error) {
	certs, err := loadCerts(certFile)
	if err != nil {
		return nil, fmt.Errorf("certificate file: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	key, err := ParsePrivateKeyPEM(keyPEM, password)
	clear(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", keyFile, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(certs[0].PublicKey) {
		return nil, fmt.Errorf("key file %s does not match the certificate in %s", keyFile, certFile)
	}
	pair := &tls.Certificate{PrivateKey: key, Leaf: certs[0]}
	for _, c := range certs {
		pair.Certificate = append(pair.Certificate, c.Raw)
	}
	return pair, nil
}

// loadCerts reads every CERTIFICATE block of a PEM file.
func loadCerts(name string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate found", name)
	}
	return certs, nil
}

// crlSet is the content of a CRL file: one or more CRLs, each signed by a CA
// of the bundle.
type crlSet struct {
	file    string
	lists   []*x509.RevocationList
	revoked map[string]struct{} // issuer DN DER + serial
}

func revokedKey(issuer []byte, serial []byte) string {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(issuer)))
	return string(n[:]) + string(issuer) + string(serial)
}

// loadCRL reads a PEM ("X509 CRL" blocks) or DER CRL file and checks each
// CRL's signature against cas.
func loadCRL(name string, cas []*x509.Certificate) (*crlSet, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("CRL file: %w", err)
	}
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		for rest := data; ; {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type == "X509 CRL" {
				ders = append(ders, b.Bytes)
			}
		}
	} else {
		ders = [][]byte{data}
	}
	if len(ders) == 0 {
		return nil, fmt.Errorf("CRL file %s: no X509 CRL block", name)
	}
	set := &crlSet{file: name, revoked: make(map[string]struct{})}
	for _, der := range ders {
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("CRL file %s: %w", name, err)
		}
		signed := false
		for _, ca := range cas {
			if bytes.Equal(ca.RawSubject, l.RawIssuer) && l.CheckSignatureFrom(ca) == nil {
				signed = true
				break
			}
		}
		if !signed {
			return nil, fmt.Errorf("CRL file %s: the CRL of %q is not signed by a CA of the CA file", name, l.Issuer)
		}
		set.lists = append(set.lists, l)
		for _, e := range l.RevokedCertificateEntries {
			set.revoked[revokedKey(l.RawIssuer, e.SerialNumber.Bytes())] = struct{}{}
		}
	}
	return set, nil
}

// check refuses a certificate listed as revoked by the CRL of its issuer,
// and any certificate whose issuer's CRL is past its next update (as OpenSSL
// does with CRL checking on). A certificate whose issuer has no CRL in the
// file passes.
func (c *crlSet) check(certs []*x509.Certificate, now time.Time) error {
	for _, cert := range certs {
		for _, l := range c.lists {
			if bytes.Equal(l.RawIssuer, cert.RawIssuer) && !l.NextUpdate.IsZero() && now.After(l.NextUpdate) {
				return fmt.Errorf("dlock: the CRL of %q in %s expired at %s", l.Issuer, c.file, l.NextUpdate.Format(time.RFC3339))
			}
		}
		if _, ok := c.revoked[revokedKey(cert.RawIssuer, cert.SerialNumber.Bytes())]; ok {
			return fmt.Errorf("dlock: certificate %q (serial %x) is revoked by the CRL in %s", cert.Subject, cert.SerialNumber, c.file)
		}
	}
	return nil
}

// Identity is the principal a certificate names: a hash of its issuer's
// and its subject's distinguished names. Certificates re-issued to the same
// subject by the same CA (renewal, new key) keep the identity.
func Identity(cert *x509.Certificate) [32]byte {
	h := sha256.New()
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(cert.RawIssuer)))
	h.Write(n[:])
	h.Write(cert.RawIssuer)
	h.Write(cert.RawSubject)
	var id [32]byte
	h.Sum(id[:0])
	return id
}

// Load reads every file of o once, as a handshake would, whatever side o
// is for, and reports the first problem.
func Load(o Options) error {
	s := &Source{o: o, now: time.Now}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh()
}
