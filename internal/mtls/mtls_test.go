package mtls_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/mtls"
)

func password(s string) func() ([]byte, error) {
	return func() ([]byte, error) { return []byte(s), nil }
}

// TestEncryptedKeyGo: keys encrypted by dlocktest.EncryptPKCS8 (the format
// of openssl pkcs8 -topk8 -v2 aes-256-cbc) decrypt with the right password
// only, and the password is zeroed after use either way.
func TestEncryptedKeyGo(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, k := range []any{ec, rk} {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := dlocktest.EncryptPKCS8(der, []byte("correct horse"))
		if err != nil {
			t.Fatal(err)
		}
		var given []byte
		got, err := mtls.ParsePrivateKeyPEM(enc, func() ([]byte, error) {
			given = []byte("correct horse")
			return given, nil
		})
		if err != nil {
			t.Fatalf("%T: %v", k, err)
		}
		want := k.(crypto.Signer).Public()
		if !got.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
			t.Errorf("%T: decrypted key differs", k)
		}
		if !bytes.Equal(given, make([]byte, len(given))) {
			t.Errorf("password not wiped: %q", given)
		}
		_, err = mtls.ParsePrivateKeyPEM(enc, func() ([]byte, error) {
			given = []byte("wrong horse")
			return given, nil
		})
		if !errors.Is(err, mtls.ErrKeyPassword) {
			t.Errorf("%T, wrong password: err = %v, want ErrKeyPassword", k, err)
		}
		if !bytes.Equal(given, make([]byte, len(given))) {
			t.Errorf("wrong password not wiped: %q", given)
		}
		if _, err := mtls.ParsePrivateKeyPEM(enc, nil); err == nil || !strings.Contains(err.Error(), "no password") {
			t.Errorf("no password callback: err = %v", err)
		}
		if _, err := mtls.ParsePrivateKeyPEM(enc, func() ([]byte, error) { return nil, errors.New("vault sealed") }); err == nil || !strings.Contains(err.Error(), "vault sealed") {
			t.Errorf("failing callback: err = %v", err)
		}
	}
}

func TestPlainKeyFormats(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	for typ, der := range map[string][]byte{
		"EC PRIVATE KEY":  sec1,
		"PRIVATE KEY":     pkcs8,
		"RSA PRIVATE KEY": x509.MarshalPKCS1PrivateKey(rk),
	} {
		data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
		if _, err := mtls.ParsePrivateKeyPEM(data, nil); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
	legacy := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00"}, Bytes: []byte{1}})
	if _, err := mtls.ParsePrivateKeyPEM(legacy, password("x")); err == nil || !strings.Contains(err.Error(), "DEK-Info") {
		t.Errorf("legacy encryption with a 1-byte IV: err = %v", err)
	}
	if _, err := mtls.ParsePrivateKeyPEM([]byte("nothing"), nil); err == nil {
		t.Error("no PEM: no error")
	}
}

// TestCRLExpired: a CRL past its next update refuses its issuer's
// certificates, as OpenSSL's CRL checking does.
func TestCRLExpired(t *testing.T) {
	pki := dlocktest.NewPKI(t, "")
	c := pki.Issue("c", dlocktest.CertOptions{})
	crl := pki.WriteCRL("crl.pem")
	src, err := mtls.NewServer(mtls.Options{CAFile: pki.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile, CRLFile: crl})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Config(); err != nil {
		t.Fatal(err)
	}
	if err := mtls.Load(mtls.Options{CAFile: pki.CAFile, CRLFile: filepath.Join(pki.Dir, "missing.pem")}); err == nil {
		t.Error("missing CRL file: no error")
	}
	os.WriteFile(crl, []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), 0o600)
	if _, err := src.Config(); err == nil {
		t.Error("a corrupt CRL file is accepted (want fail closed)")
	}
}

func TestOptionErrors(t *testing.T) {
	for _, tc := range []struct {
		o    mtls.Options
		want error
		text string
	}{
		{mtls.Options{CAFile: "ca"}, mtls.ErrNoCertificate, ""},
		{mtls.Options{CertFile: "c", KeyFile: "k"}, mtls.ErrNoCA, ""},
		{mtls.Options{CertFile: "c"}, nil, "go together"},
		{mtls.Options{CertFile: "c", KeyFile: "k", CAFile: "", CRLFile: "crl", VerifyPeer: func([]*x509.Certificate, string) error { return nil }}, nil, "CRLFile needs CAFile"},
	} {
		_, err := mtls.NewServer(tc.o)
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) || tc.text != "" && !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%+v: err = %v", tc.o, err)
		}
	}
}
