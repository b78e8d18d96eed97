package dlocktest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

// PKI is a throwaway certificate authority: an ECDSA P-256 CA whose
// certificate is written to CAFile in a temporary directory, issuing
// certificates and CRLs for tests of TLS.
type PKI struct {
	// Dir is the directory of every file the PKI writes.
	Dir string
	// CAFile is the CA certificate, PEM.
	CAFile string
	// CA is the CA certificate.
	CA *x509.Certificate

	tb     testing.TB
	key    *ecdsa.PrivateKey
	serial atomic.Int64
}

// NewPKI makes a CA named name ("dlocktest CA" if empty), valid from an hour
// ago for a day.
func NewPKI(tb testing.TB, name string) *PKI {
	tb.Helper()
	if name == "" {
		name = "dlocktest CA"
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	p := &PKI{Dir: tb.TempDir(), CA: ca, tb: tb, key: key}
	p.serial.Store(1)
	p.CAFile = p.write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return p
}

// CertOptions describes a certificate to issue. The zero value is a
// certificate valid from an hour ago for a day, for TLS clients and servers,
// with an unencrypted key.
type CertOptions struct {
	// NotBefore and NotAfter default to an hour ago and a day from now.
	NotBefore, NotAfter time.Time
	// Password, if set, encrypts the key file as PKCS#8 with PBES2
	// (PBKDF2-HMAC-SHA256, AES-256-CBC), as openssl pkcs8 -topk8 -v2
	// aes-256-cbc does.
	Password []byte
}

// Cert is an issued certificate and its files.
type Cert struct {
	Cert     *x509.Certificate
	CertFile string // PEM certificate
	KeyFile  string // PEM private key, encrypted if Password is set
	Password []byte
}

// Issue makes a certificate with common name cn (used in file names too),
// valid for clients and servers and for the names localhost and 127.0.0.1.
func (p *PKI) Issue(cn string, o CertOptions) Cert {
	p.tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.tb.Fatal(err)
	}
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    o.NotBefore,
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.key)
	if err != nil {
		p.tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		p.tb.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.tb.Fatal(err)
	}
	var keyPEM []byte
	if o.Password != nil {
		keyPEM, err = EncryptPKCS8(pkcs8, o.Password)
		if err != nil {
			p.tb.Fatal(err)
		}
	} else {
		keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8})
	}
	return Cert{
		Cert:     cert,
		CertFile: p.write(cn+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyFile:  p.write(cn+".key", keyPEM),
		Password: o.Password,
	}
}

// WriteCRL writes (or rewrites) file name in Dir with a PEM CRL of the CA
// revoking certs, valid for a day, and returns its path.
func (p *PKI) WriteCRL(name string, certs ...Cert) string {
	p.tb.Helper()
	now := time.Now()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(p.serial.Add(1)),
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(24 * time.Hour),
	}
	for _, c := range certs {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber:   c.Cert.SerialNumber,
			RevocationTime: now.Add(-time.Minute),
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.CA, p.key)
	if err != nil {
		p.tb.Fatal(err)
	}
	return p.write(name, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

// TLS returns options presenting c and trusting the CA. An encrypted key's
// password comes from a callback returning a fresh copy of c.Password.
func (p *PKI) TLS(c Cert) *dlock.TLSOptions {
	o := &dlock.TLSOptions{CAFile: p.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile}
	if c.Password != nil {
		pw := c.Password
		o.KeyPassword = func() ([]byte, error) { return append([]byte(nil), pw...), nil }
	}
	return o
}

// write replaces file name in Dir atomically and returns its path.
func (p *PKI) write(name string, data []byte) string {
	p.tb.Helper()
	path := filepath.Join(p.Dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		p.tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		p.tb.Fatal(err)
	}
	return path
}

// Object identifiers for EncryptPKCS8.
var (
	oidPBES2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// EncryptPKCS8 encrypts a PKCS#8 private key (DER) with password and returns
// the "ENCRYPTED PRIVATE KEY" PEM block that openssl pkcs8 -topk8 -v2
// aes-256-cbc writes: PBES2 with PBKDF2-HMAC-SHA256 (2048 iterations, 16-byte
// salt) and AES-256-CBC.
func EncryptPKCS8(der, password []byte) ([]byte, error) {
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	rand.Read(salt)
	rand.Read(iv)
	const iterations = 2048
	key, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	n := aes.BlockSize - len(der)%aes.BlockSize
	data := append(append([]byte(nil), der...), make([]byte, n)...)
	for i := len(der); i < len(data); i++ {
		data[i] = byte(n)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)

	type algo struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters asn1.RawValue `asn1:"optional"`
	}
	raw := func(v any) asn1.RawValue {
		b, err := asn1.Marshal(v)
		if err != nil {
			panic(err)
		}
		return asn1.RawValue{FullBytes: b}
	}
	kdf := struct {
		Salt       []byte
		Iterations int
		PRF        algo
	}{salt, iterations, algo{Algorithm: oidHMACWithSHA256, Parameters: asn1.NullRawValue}}
	params := struct {
		KDF    algo
		Scheme algo
	}{algo{oidPBKDF2, raw(kdf)}, algo{oidAES256CBC, raw(iv)}}
	out, err := asn1.Marshal(struct {
		Algo algo
		Data []byte
	}{algo{oidPBES2, raw(params)}, data})
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: out}), nil
}
