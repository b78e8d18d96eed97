package dlocktest

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RequireOpenSSL returns the path of the openssl command. Without it, the
// test fails when the environment variable CI is set and is skipped
// elsewhere.
func RequireOpenSSL(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("openssl is required by this test (CI is set): %v", err)
		}
		tb.Skipf("openssl not installed: %v", err)
	}
	return path
}

// IssueOpenSSL makes a key pair with the openssl command exactly as
// OpenSSL's documentation and DLock's users do,
//
//	openssl req -newkey rsa:2048 -passout pass:<password> -keyout <cn>.key
//
// (with OpenSSL 3: an encrypted PKCS#8 key, PBES2 with DES-EDE3-CBC), and
// a certificate of the PKI for it, valid like Issue's. See RequireOpenSSL
// for a machine without openssl.
func (p *PKI) IssueOpenSSL(cn, password string) Cert {
	p.tb.Helper()
	openssl := RequireOpenSSL(p.tb)
	keyFile := filepath.Join(p.Dir, cn+".key")
	csrFile := filepath.Join(p.Dir, cn+".csr")
	cmd := exec.Command(openssl, "req", "-newkey", "rsa:2048", "-passout", "pass:"+password,
		"-keyout", keyFile, "-subj", "/CN="+cn, "-out", csrFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		p.tb.Fatalf("openssl req: %v\n%s", err, out)
	}
	data, err := os.ReadFile(csrFile)
	if err != nil {
		p.tb.Fatal(err)
	}
	b, _ := pem.Decode(data)
	if b == nil {
		p.tb.Fatalf("openssl req wrote no PEM request:\n%s", data)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		p.tb.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, csr.PublicKey, p.key)
	if err != nil {
		p.tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		p.tb.Fatal(err)
	}
	return Cert{
		Cert:     cert,
		CertFile: p.write(cn+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		KeyFile:  keyFile,
		Password: []byte(password),
	}
}
