package mtls_test

import (
	"bytes"
	"crypto"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dlock-io/dlock/dlocktest"
	"github.com/dlock-io/dlock/internal/mtls"
)

// openssl runs the openssl command with args in dir.
func openssl(t testing.TB, dir string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(dlocktest.RequireOpenSSL(t), args...)
	cmd.Dir = dir
	return cmd.CombinedOutput()
}

// legacyProvider are the options that let OpenSSL 3 use its legacy
// algorithms (single DES, RC2, PBKDF1).
var legacyProvider = []string{"-provider", "legacy", "-provider", "default"}

// keyFormat is one way openssl writes an encrypted private key file.
type keyFormat struct {
	name   string
	legacy bool // needs OpenSSL's legacy provider
	// args convert "plain.pem" (unencrypted) into "enc.pem" with the
	// password in pass:, or, when gen is set, make enc.pem from scratch.
	args []string
	// want is the encryption the file must declare: the DEK-Info cipher of
	// legacy PEM, else the OID of the PKCS#8 scheme (for PBES2, of its
	// cipher).
	want string
}

func encryptedFormats(pass string, ec bool) []keyFormat {
	pout := "pass:" + pass
	topk8 := func(extra ...string) []string {
		return append([]string{"pkcs8", "-topk8", "-in", "plain.pem", "-out", "enc.pem", "-passout", pout}, extra...)
	}
	trad := "rsa"
	if ec {
		trad = "ec"
	}
	traditional := func(cipher string) []string {
		args := []string{trad, "-in", "plain.pem", "-out", "enc.pem", "-passout", pout, cipher}
		if !ec {
			args = append(args, "-traditional") // openssl ec writes SEC 1 anyway
		}
		return args
	}
	return []keyFormat{
		{name: "PBES2 AES-256-CBC", want: "2.16.840.1.101.3.4.1.42", args: topk8("-v2", "aes-256-cbc")},
		{name: "PBES2 AES-128-CBC HMAC-SHA1", want: "2.16.840.1.101.3.4.1.2", args: topk8("-v2", "aes-128-cbc", "-v2prf", "hmacWithSHA1")},
		{name: "PBES2 AES-192-CBC HMAC-SHA512", want: "2.16.840.1.101.3.4.1.22", args: topk8("-v2", "aes-192-cbc", "-v2prf", "hmacWithSHA512", "-iter", "1000")},
		{name: "PBES2 DES-EDE3-CBC", want: "1.2.840.113549.3.7", args: topk8("-v2", "des3")},
		{name: "PBES2 DES-CBC", want: "1.3.14.3.2.7", legacy: true, args: topk8("-v2", "des-cbc")},
		{name: "PKCS#12 SHA1 3-key 3DES", want: "1.2.840.113549.1.12.1.3", args: topk8("-v1", "PBE-SHA1-3DES")},
		{name: "PKCS#12 SHA1 2-key 3DES", want: "1.2.840.113549.1.12.1.4", args: topk8("-v1", "PBE-SHA1-2DES")},
		{name: "PBES1 MD5 DES", want: "1.2.840.113549.1.5.3", legacy: true, args: topk8("-v1", "PBE-MD5-DES")},
		{name: "PBES1 SHA1 DES", want: "1.2.840.113549.1.5.10", legacy: true, args: topk8("-v1", "PBE-SHA1-DES")},
		{name: "legacy PEM AES-256-CBC", want: "AES-256-CBC", args: traditional("-aes256")},
		{name: "legacy PEM AES-128-CBC", want: "AES-128-CBC", args: traditional("-aes128")},
		{name: "legacy PEM DES-EDE3-CBC", want: "DES-EDE3-CBC", args: traditional("-des3")},
		{name: "legacy PEM DES-CBC", want: "DES-CBC", legacy: true, args: traditional("-des")},
	}
}

// makeKey writes plain.pem in dir: an RSA 2048 or EC P-256 key by openssl
// genpkey.
func makeKey(t *testing.T, dir string, ec bool) crypto.PublicKey {
	t.Helper()
	args := []string{"genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "plain.pem"}
	if ec {
		args = []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "plain.pem"}
	}
	if out, err := openssl(t, dir, args...); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "plain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := mtls.ParsePrivateKeyPEM(data, nil)
	if err != nil {
		t.Fatalf("openssl genpkey output: %v", err)
	}
	return k.Public()
}

// runFormat makes enc.pem in dir as f says. ok is false when f needs the
// legacy provider and this openssl has none (a failure under CI=true).
func runFormat(t *testing.T, dir string, f keyFormat) (data []byte, ok bool) {
	t.Helper()
	args := f.args
	if f.legacy {
		args = append(append([]string{args[0]}, legacyProvider...), args[1:]...)
	}
	out, err := openssl(t, dir, args...)
	if err != nil {
		if f.legacy && os.Getenv("CI") == "" && bytes.Contains(out, []byte("legacy")) {
			t.Logf("%s: openssl has no legacy provider; skipped:\n%s", f.name, out)
			return nil, false
		}
		t.Fatalf("%s: openssl %v: %v\n%s", f.name, args, err, out)
	}
	data, err = os.ReadFile(filepath.Join(dir, "enc.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return data, true
}

func equalKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// TestOpenSSLKeyFormats: every encrypted key format OpenSSL 3 writes (by
// default or with its legacy provider), for RSA and EC keys, decrypts to
// the key it was made from with the right password, and is ErrKeyPassword
// with a wrong one. The key files are made by the openssl command.
func TestOpenSSLKeyFormats(t *testing.T) {
	dlocktest.RequireOpenSSL(t)
	const pass = "open sesame"
	for _, ec := range []bool{false, true} {
		kind := "RSA"
		if ec {
			kind = "EC"
		}
		dir := t.TempDir()
		want := makeKey(t, dir, ec)
		for _, f := range encryptedFormats(pass, ec) {
			t.Run(kind+" "+f.name, func(t *testing.T) {
				data, ok := runFormat(t, dir, f)
				if !ok {
					t.Skip("no legacy provider")
				}
				if got := declared(t, data); got != f.want {
					t.Fatalf("openssl wrote %s, want %s", got, f.want)
				}
				var given []byte
				k, err := mtls.ParsePrivateKeyPEM(data, func() ([]byte, error) {
					given = []byte(pass)
					return given, nil
				})
				if err != nil {
					t.Fatalf("right password: %v\n%s", err, firstLines(data))
				}
				if !equalKey(k.Public(), want) {
					t.Error("the decrypted key is not the key openssl encrypted")
				}
				if !bytes.Equal(given, make([]byte, len(given))) {
					t.Errorf("password not wiped: %q", given)
				}
				for _, wrong := range []string{"open sesamE", "", "x"} {
					if _, err := mtls.ParsePrivateKeyPEM(data, password(wrong)); !errors.Is(err, mtls.ErrKeyPassword) {
						t.Errorf("password %q: err = %v, want ErrKeyPassword", wrong, err)
					}
				}
			})
		}
	}
}

// TestOpenSSLReqKey: the key of openssl req -newkey rsa:2048 -passout
// (OpenSSL 3's default: PBES2, PBKDF2-HMAC-SHA256, DES-EDE3-CBC) loads.
func TestOpenSSLReqKey(t *testing.T) {
	dir := t.TempDir()
	if out, err := openssl(t, dir, "req", "-newkey", "rsa:2048", "-passout", "pass:req secret", "-keyout", "k.pem", "-subj", "/CN=dlock", "-out", "k.csr"); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(dir, "k.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatalf("openssl req wrote no encrypted PKCS#8 key:\n%s", firstLines(data))
	}
	if got := declared(t, data); got != "1.2.840.113549.3.7" {
		t.Fatalf("openssl req encrypted with %s, not DES-EDE3-CBC: OpenSSL's default changed", got)
	}
	if _, err := mtls.ParsePrivateKeyPEM(data, password("req secret")); err != nil {
		t.Fatal(err)
	}
	if _, err := mtls.ParsePrivateKeyPEM(data, password("req secreT")); !errors.Is(err, mtls.ErrKeyPassword) {
		t.Errorf("wrong password: err = %v, want ErrKeyPassword", err)
	}
}

// TestOpenSSLRefusedFormats: encryptions dlock does not implement (RC2,
// scrypt) are refused with an error that names them and says what to do,
// never as a wrong password.
func TestOpenSSLRefusedFormats(t *testing.T) {
	dlocktest.RequireOpenSSL(t)
	dir := t.TempDir()
	makeKey(t, dir, true)
	for _, f := range []struct {
		keyFormat
		want string
	}{
		{keyFormat{name: "PBES2 scrypt", args: []string{"pkcs8", "-topk8", "-scrypt", "-in", "plain.pem", "-out", "enc.pem", "-passout", "pass:x"}}, "scrypt"},
		{keyFormat{name: "PBES1 SHA1 RC2", legacy: true, args: []string{"pkcs8", "-topk8", "-v1", "PBE-SHA1-RC2-64", "-in", "plain.pem", "-out", "enc.pem", "-passout", "pass:x"}}, "RC2"},
		{keyFormat{name: "legacy PEM Camellia", args: []string{"ec", "-camellia256", "-in", "plain.pem", "-out", "enc.pem", "-passout", "pass:x"}}, "CAMELLIA-256-CBC"},
	} {
		t.Run(f.name, func(t *testing.T) {
			data, ok := runFormat(t, dir, f.keyFormat)
			if !ok {
				t.Skip("no legacy provider")
			}
			_, err := mtls.ParsePrivateKeyPEM(data, password("x"))
			if err == nil || errors.Is(err, mtls.ErrKeyPassword) || !strings.Contains(err.Error(), f.want) || !strings.Contains(err.Error(), "openssl pkcs8") {
				t.Errorf("err = %v, want one naming %s with advice", err, f.want)
			}
		})
	}
}

// declared returns the encryption an encrypted key file declares: the
// cipher of DEK-Info, or the OID of the PKCS#8 scheme (of the cipher for
// PBES2).
func declared(t *testing.T, data []byte) string {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatalf("no PEM block:\n%s", firstLines(data))
	}
	if dek := b.Headers["DEK-Info"]; dek != "" {
		name, _, _ := strings.Cut(dek, ",")
		return name
	}
	var info struct {
		Algo pkix.AlgorithmIdentifier
		Data []byte
	}
	if _, err := asn1.Unmarshal(b.Bytes, &info); err != nil {
		t.Fatalf("%s block: %v", b.Type, err)
	}
	if info.Algo.Algorithm.String() != "1.2.840.113549.1.5.13" {
		return info.Algo.Algorithm.String()
	}
	var pbes2 struct{ KDF, Scheme pkix.AlgorithmIdentifier }
	if _, err := asn1.Unmarshal(info.Algo.Parameters.FullBytes, &pbes2); err != nil {
		t.Fatalf("PBES2 parameters: %v", err)
	}
	return pbes2.Scheme.Algorithm.String()
}

func firstLines(data []byte) string {
	lines := strings.SplitN(string(data), "\n", 4)
	return strings.Join(lines[:min(3, len(lines))], "\n")
}

// FuzzParsePrivateKeyPEM: the key parser reads files users point it at.
// Whatever the input, it does not panic, wipes the password it was given,
// and returns either an error or a usable key. The seed corpus
// (testdata/fuzz/FuzzParsePrivateKeyPEM) holds one file per key format,
// made by openssl with the password "fuzz"; regenerate it with
// DLOCK_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus.
func FuzzParsePrivateKeyPEM(f *testing.F) {
	f.Add([]byte("-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: DES-EDE3-CBC,0011223344556677\n\nAAAAAAAAAAA=\n-----END RSA PRIVATE KEY-----\n"), "fuzz")
	f.Fuzz(func(t *testing.T, data []byte, pass string) {
		var given []byte
		k, err := mtls.ParsePrivateKeyPEM(data, func() ([]byte, error) {
			given = []byte(pass)
			return given, nil
		})
		if !bytes.Equal(given, make([]byte, len(given))) {
			t.Errorf("password not wiped: %q", given)
		}
		if err == nil && (k == nil || k.Public() == nil) {
			t.Errorf("no error and no usable key: %v", k)
		}
	})
}

// TestWriteFuzzCorpus regenerates the checked-in seed corpus of
// FuzzParsePrivateKeyPEM when DLOCK_WRITE_FUZZ_CORPUS is set.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("DLOCK_WRITE_FUZZ_CORPUS") == "" {
		t.Skip("set DLOCK_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz/FuzzParsePrivateKeyPEM")
	}
	corpus := filepath.Join("testdata", "fuzz", "FuzzParsePrivateKeyPEM")
	if err := os.MkdirAll(corpus, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		seed := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\nstring(\"fuzz\")\n"
		if err := os.WriteFile(filepath.Join(corpus, name), []byte(seed), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, ec := range []bool{false, true} {
		dir := t.TempDir()
		makeKey(t, dir, ec)
		kind := "rsa"
		if ec {
			kind = "ec"
		}
		plain, err := os.ReadFile(filepath.Join(dir, "plain.pem"))
		if err != nil {
			t.Fatal(err)
		}
		write(kind+"-plain", plain)
		for _, f := range encryptedFormats("fuzz", ec) {
			if f.args[0] == "pkcs8" {
				f.args = append(f.args, "-iter", "1") // quick to derive
			}
			data, ok := runFormat(t, dir, f)
			if !ok {
				t.Fatalf("%s: the corpus needs the legacy provider", f.name)
			}
			name := kind + "-" + strings.NewReplacer(" ", "-", "#", "").Replace(strings.ToLower(f.name))
			write(name, data)
		}
	}
}

// TestFuzzCorpusDecrypts keeps the seed corpus meaningful: every seed is a
// key that decrypts with its password, so the fuzzer starts from inputs
// that reach the end of each decoding path.
func TestFuzzCorpusDecrypts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzParsePrivateKeyPEM", "*"))
	if err != nil || len(files) < 20 {
		t.Fatalf("seed corpus: %d files, %v", len(files), err)
	}
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(raw), "\n")
		if len(lines) < 3 || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasPrefix(lines[2], "string(") {
			t.Fatalf("%s: not a fuzz seed", name)
		}
		data, err1 := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		pass, err2 := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "string("), ")"))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", name, err1, err2)
		}
		if _, err := mtls.ParsePrivateKeyPEM([]byte(data), password(pass)); err != nil {
			t.Errorf("%s: %v", filepath.Base(name), err)
		}
	}
}
