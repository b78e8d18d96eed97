package mtls

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// ErrKeyPassword is returned when an encrypted private key does not decrypt
// with the password given: the password is wrong or the file is corrupt.
var ErrKeyPassword = errors.New("wrong private key password (or corrupt key)")

// Object identifiers of PKCS#5 (RFC 8018), PKCS#12 (RFC 7292) and the
// ciphers they use.
var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidScrypt     = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 11591, 4, 11}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	oidDESCBC     = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 7}

	// PBES1 (PKCS#5 v1.5): PBKDF1 and a single-DES key.
	oidPBEMD5DES  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 3}
	oidPBESHA1DES = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 10}
	// PKCS#12 password-based encryption with triple DES.
	oidPBESHA3DES = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}
	oidPBESHA2DES = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 4}
)

// unsupportedSchemes names the password-based schemes that exist but are
// refused: RC2 and RC4 are not in Go's standard library, and OpenSSL 3
// itself reads them only with its legacy provider.
var unsupportedSchemes = map[string]string{
	"1.2.840.113549.1.5.1":    "pbeWithMD2AndDES-CBC",
	"1.2.840.113549.1.5.4":    "pbeWithMD2AndRC2-CBC",
	"1.2.840.113549.1.5.6":    "pbeWithMD5AndRC2-CBC",
	"1.2.840.113549.1.5.11":   "pbeWithSHA1AndRC2-CBC",
	"1.2.840.113549.1.12.1.1": "pbeWithSHAAnd128BitRC4",
	"1.2.840.113549.1.12.1.2": "pbeWithSHAAnd40BitRC4",
	"1.2.840.113549.1.12.1.5": "pbeWithSHAAnd128BitRC2-CBC",
	"1.2.840.113549.1.12.1.6": "pbeWithSHAAnd40BitRC2-CBC",
	"1.2.840.113549.3.2":      "RC2-CBC",
}

// reencrypt is the advice given with every refused encryption.
const reencrypt = "re-encrypt the key with openssl pkcs8 -topk8 -v2 aes-256-cbc"

// maxIterations bounds the key-derivation work a key file can ask for.
const maxIterations = 10_000_000

// ASN.1 structures of an encrypted PKCS#8 key (RFC 5208, RFC 8018, RFC 7292).
type encryptedPrivateKeyInfo struct {
	Algo pkix.AlgorithmIdentifier
	Data []byte
}

type pbes2Params struct {
	KDF    pkix.AlgorithmIdentifier
	Scheme pkix.AlgorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                      `asn1:"optional"`
	PRF        pkix.AlgorithmIdentifier `asn1:"optional"`
}

// pbeParams are the parameters of PBES1 and of PKCS#12 encryption.
type pbeParams struct {
	Salt       []byte
	Iterations int
}

// ParsePrivateKeyPEM returns the first private key in pemData, in any PEM
// form OpenSSL 3 writes by default, and the DES-based ones it writes with
// its legacy provider:
//
//   - "PRIVATE KEY" (PKCS#8), "RSA PRIVATE KEY" (PKCS#1), "EC PRIVATE KEY"
//     (SEC 1);
//   - "ENCRYPTED PRIVATE KEY" (encrypted PKCS#8) with PBES2 (PBKDF2 with
//     HMAC-SHA1 or SHA-2; AES-128/192/256-CBC, DES-EDE3-CBC or DES-CBC), as
//     openssl req -newkey, genpkey -aes256 and pkcs8 -topk8 write it; with
//     PBES1 (pbeWithMD5AndDES-CBC, pbeWithSHA1AndDES-CBC); or with PKCS#12
//     encryption (pbeWithSHAAnd3-KeyTripleDES-CBC and 2-key), as openssl
//     pkcs8 -topk8 -v1 writes it;
//   - legacy encrypted PEM ("Proc-Type: 4,ENCRYPTED" and "DEK-Info"
//     headers) of an RSA, EC or PKCS#8 key, with AES-128/192/256-CBC,
//     DES-EDE3-CBC or DES-CBC, as openssl rsa/ec -traditional -aes256 write
//     it.
//
// RC2, RC4 and scrypt are refused with an error naming them. password is
// called only for an encrypted key; whatever it returns is zeroed before
// ParsePrivateKeyPEM returns, as are the derived key and the decrypted DER.
// A wrong password yields an error wrapping ErrKeyPassword.
func ParsePrivateKeyPEM(pemData []byte, password func() ([]byte, error)) (crypto.Signer, error) {
	rest := pemData
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM private key found")
		}
		if b.Type != "ENCRYPTED PRIVATE KEY" && b.Type != "PRIVATE KEY" && b.Type != "RSA PRIVATE KEY" && b.Type != "EC PRIVATE KEY" {
			continue
		}
		_, legacy := b.Headers["Proc-Type"]
		if legacy && b.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("an ENCRYPTED PRIVATE KEY block with PEM encryption headers: the key is encrypted twice")
		}
		if b.Type != "ENCRYPTED PRIVATE KEY" && !legacy {
			k, err := parseDER(b.Type, b.Bytes)
			clear(b.Bytes)
			return k, err
		}
		if password == nil {
			return nil, errors.New("the private key is encrypted and no password was configured")
		}
		pw, err := password()
		if err != nil {
			clear(pw)
			return nil, fmt.Errorf("private key password: %w", err)
		}
		var der []byte
		if legacy {
			der, err = decryptLegacyPEM(b, pw)
		} else {
			der, err = decryptPKCS8(b.Bytes, pw)
		}
		clear(pw)
		if err != nil {
			return nil, err
		}
		typ := b.Type
		if typ == "ENCRYPTED PRIVATE KEY" {
			typ = "PRIVATE KEY"
		}
		k, err := parseDER(typ, der)
		clear(der)
		if err != nil {
			// The padding happened to check out, but the plaintext is not
			// a key: a wrong password (about 1 in 256 tries) or a corrupt
			// file.
			return nil, fmt.Errorf("%w: %v", ErrKeyPassword, err)
		}
		return k, nil
	}
}

// parseDER parses the DER of a PEM block of type typ.
func parseDER(typ string, der []byte) (crypto.Signer, error) {
	switch typ {
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(der)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(der)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	return signer(k)
}

func signer(k any) (crypto.Signer, error) {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T", k)
}

// decryptPKCS8 decrypts the DER of an EncryptedPrivateKeyInfo.
func decryptPKCS8(der, password []byte) ([]byte, error) {
	var info encryptedPrivateKeyInfo
	if rest, err := asn1.Unmarshal(der, &info); err != nil || len(rest) != 0 {
		return nil, errors.New("malformed encrypted PKCS#8 key")
	}
	var (
		block cipher.Block
		iv    []byte
		err   error
	)
	params := info.Algo.Parameters.FullBytes
	switch a := info.Algo.Algorithm; {
	case a.Equal(oidPBES2):
		block, iv, err = pbes2(params, password)
	case a.Equal(oidPBEMD5DES):
		block, iv, err = pbes1(params, md5.New, password)
	case a.Equal(oidPBESHA1DES):
		block, iv, err = pbes1(params, sha1.New, password)
	case a.Equal(oidPBESHA3DES):
		block, iv, err = pkcs12PBE(params, 24, password)
	case a.Equal(oidPBESHA2DES):
		block, iv, err = pkcs12PBE(params, 16, password)
	default:
		if name, ok := unsupportedSchemes[a.String()]; ok {
			return nil, fmt.Errorf("unsupported key encryption %s (%v): %s", name, a, reencrypt)
		}
		return nil, fmt.Errorf("unknown key encryption %v: %s", a, reencrypt)
	}
	if err != nil {
		return nil, err
	}
	return decryptCBC(block, iv, info.Data)
}

// pbes2 derives the cipher of PBES2 parameters: PBKDF2 and a CBC cipher.
func pbes2(params, password []byte) (cipher.Block, []byte, error) {
	var p pbes2Params
	if rest, err := asn1.Unmarshal(params, &p); err != nil || len(rest) != 0 {
		return nil, nil, errors.New("malformed PBES2 parameters")
	}
	if p.KDF.Algorithm.Equal(oidScrypt) {
		return nil, nil, fmt.Errorf("unsupported key derivation scrypt: %s", reencrypt)
	}
	if !p.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, nil, fmt.Errorf("unsupported key derivation %v: only PBKDF2 is supported", p.KDF.Algorithm)
	}
	var kdf pbkdf2Params
	if rest, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kdf); err != nil || len(rest) != 0 {
		return nil, nil, errors.New("malformed PBKDF2 parameters")
	}
	if err := checkIterations(kdf.Iterations); err != nil {
		return nil, nil, err
	}
	var prf func() hash.Hash
	switch a := kdf.PRF.Algorithm; {
	case len(a) == 0 || a.Equal(oidHMACSHA1):
		prf = sha1.New
	case a.Equal(oidHMACSHA224):
		prf = sha256.New224
	case a.Equal(oidHMACSHA256):
		prf = sha256.New
	case a.Equal(oidHMACSHA384):
		prf = sha512.New384
	case a.Equal(oidHMACSHA512):
		prf = sha512.New
	default:
		return nil, nil, fmt.Errorf("unsupported PBKDF2 pseudo-random function %v", a)
	}
	var (
		keyLen    int
		newCipher func([]byte) (cipher.Block, error)
	)
	switch a := p.Scheme.Algorithm; {
	case a.Equal(oidAES128CBC):
		keyLen, newCipher = 16, aes.NewCipher
	case a.Equal(oidAES192CBC):
		keyLen, newCipher = 24, aes.NewCipher
	case a.Equal(oidAES256CBC):
		keyLen, newCipher = 32, aes.NewCipher
	case a.Equal(oidDESEDE3CBC):
		keyLen, newCipher = 24, des.NewTripleDESCipher
	case a.Equal(oidDESCBC):
		keyLen, newCipher = 8, des.NewCipher
	default:
		name := unsupportedSchemes[a.String()]
		if name == "" {
			name = "unknown"
		}
		return nil, nil, fmt.Errorf("unsupported key cipher %s (%v): use AES-CBC or DES-EDE3-CBC", name, a)
	}
	if kdf.KeyLength != 0 && kdf.KeyLength != keyLen {
		return nil, nil, errors.New("PBKDF2 key length does not match the cipher")
	}
	var iv []byte
	if rest, err := asn1.Unmarshal(p.Scheme.Parameters.FullBytes, &iv); err != nil || len(rest) != 0 {
		return nil, nil, errors.New("malformed cipher parameters")
	}
	// The string aliases password instead of copying it, so that zeroing
	// password wipes the only copy we made (crypto/pbkdf2 keeps none; the
	// HMAC state it builds is garbage we cannot reach).
	var pw string
	if len(password) > 0 {
		pw = unsafe.String(&password[0], len(password))
	}
	key, err := pbkdf2.Key(prf, pw, kdf.Salt, kdf.Iterations, keyLen)
	if err != nil {
		return nil, nil, fmt.Errorf("PBKDF2: %w", err)
	}
	block, err := newCipher(key)
	clear(key)
	if err != nil {
		return nil, nil, err
	}
	if len(iv) != block.BlockSize() {
		return nil, nil, errors.New("malformed cipher parameters: wrong IV length")
	}
	return block, iv, nil
}

// pbes1 derives the DES cipher of PBES1 (PBKDF1 with hash h, RFC 8018
// section 6.1).
func pbes1(params []byte, h func() hash.Hash, password []byte) (cipher.Block, []byte, error) {
	p, err := parsePBEParams(params)
	if err != nil {
		return nil, nil, err
	}
	if len(p.Salt) != 8 {
		return nil, nil, errors.New("malformed PBES1 parameters: the salt is not 8 bytes")
	}
	d := h()
	d.Write(password)
	d.Write(p.Salt)
	t := d.Sum(nil)
	for i := 1; i < p.Iterations; i++ {
		d.Reset()
		d.Write(t)
		t = d.Sum(t[:0])
	}
	block, err := des.NewCipher(t[:8])
	iv := bytes.Clone(t[8:16])
	clear(t)
	return block, iv, err
}

// pkcs12PBE derives the triple-DES cipher (keyLen 24: three keys; 16: two)
// of PKCS#12 password-based encryption with SHA-1 (RFC 7292 appendix B).
func pkcs12PBE(params []byte, keyLen int, password []byte) (cipher.Block, []byte, error) {
	p, err := parsePBEParams(params)
	if err != nil {
		return nil, nil, err
	}
	// The password is a BMPString: UTF-16 big endian with a final NUL, as
	// OpenSSL makes it from UTF-8.
	if !utf8.Valid(password) {
		return nil, nil, fmt.Errorf("%w: the password is not UTF-8", ErrKeyPassword)
	}
	var units []uint16
	for s := password; len(s) > 0; {
		r, n := utf8.DecodeRune(s)
		units = utf16.AppendRune(units, r)
		s = s[n:]
	}
	bmp := make([]byte, 0, 2*len(units)+2)
	for _, u := range units {
		bmp = append(bmp, byte(u>>8), byte(u))
	}
	bmp = append(bmp, 0, 0)
	clear(units)
	key := pkcs12KDF(bmp, p.Salt, p.Iterations, 1, keyLen)
	iv := pkcs12KDF(bmp, p.Salt, p.Iterations, 2, des.BlockSize)
	clear(bmp)
	if keyLen == 16 { // two-key triple DES: K1 K2 K1
		key = append(key, key[:8]...)
	}
	block, err := des.NewTripleDESCipher(key)
	clear(key)
	return block, iv, err
}

// pkcs12KDF is the key derivation of RFC 7292 appendix B.2 with SHA-1:
// n bytes of purpose id (1 key, 2 IV) from a BMPString password.
func pkcs12KDF(password, salt []byte, iterations int, id byte, n int) []byte {
	const u, v = sha1.Size, 64
	fill := func(s []byte) []byte { // s repeated to a multiple of v bytes
		if len(s) == 0 {
			return nil
		}
		out := make([]byte, v*((len(s)+v-1)/v))
		for i := range out {
			out[i] = s[i%len(s)]
		}
		return out
	}
	S, P := fill(salt), fill(password)
	I := append(S, P...)
	clear(P)
	D := bytes.Repeat([]byte{id}, v)
	out := make([]byte, 0, n+u)
	h := sha1.New()
	B := make([]byte, v)
	for len(out) < n {
		h.Reset()
		h.Write(D)
		h.Write(I)
		A := h.Sum(nil)
		for i := 1; i < iterations; i++ {
			h.Reset()
			h.Write(A)
			A = h.Sum(A[:0])
		}
		out = append(out, A...)
		if len(out) >= n {
			clear(A)
			break
		}
		for i := range B {
			B[i] = A[i%u]
		}
		clear(A)
		// Each v-byte block of I becomes (I_j + B + 1) mod 2^(8v).
		for j := 0; j < len(I); j += v {
			carry := uint16(1)
			for k := v - 1; k >= 0; k-- {
				x := uint16(I[j+k]) + uint16(B[k]) + carry
				I[j+k] = byte(x)
				carry = x >> 8
			}
		}
	}
	clear(I)
	clear(B)
	key := bytes.Clone(out[:n])
	clear(out)
	return key
}

func parsePBEParams(params []byte) (pbeParams, error) {
	var p pbeParams
	if rest, err := asn1.Unmarshal(params, &p); err != nil || len(rest) != 0 {
		return p, errors.New("malformed password-based encryption parameters")
	}
	return p, checkIterations(p.Iterations)
}

func checkIterations(n int) error {
	if n <= 0 || n > maxIterations {
		return fmt.Errorf("key derivation iteration count %d outside 1..%d", n, maxIterations)
	}
	return nil
}

// decryptLegacyPEM decrypts a PEM block with OpenSSL's traditional
// encryption headers: the key is EVP_BytesToKey with MD5 and one iteration
// over the password and the first 8 bytes of the IV.
func decryptLegacyPEM(b *pem.Block, password []byte) ([]byte, error) {
	if pt := b.Headers["Proc-Type"]; pt != "4,ENCRYPTED" {
		return nil, fmt.Errorf("unsupported PEM Proc-Type %q", pt)
	}
	name, ivHex, ok := strings.Cut(b.Headers["DEK-Info"], ",")
	if !ok {
		return nil, errors.New("malformed PEM DEK-Info header")
	}
	var (
		keyLen    int
		newCipher func([]byte) (cipher.Block, error)
	)
	switch strings.ToUpper(strings.TrimSpace(name)) {
	case "AES-128-CBC":
		keyLen, newCipher = 16, aes.NewCipher
	case "AES-192-CBC":
		keyLen, newCipher = 24, aes.NewCipher
	case "AES-256-CBC":
		keyLen, newCipher = 32, aes.NewCipher
	case "DES-EDE3-CBC":
		keyLen, newCipher = 24, des.NewTripleDESCipher
	case "DES-CBC":
		keyLen, newCipher = 8, des.NewCipher
	default:
		return nil, fmt.Errorf("unsupported PEM encryption %q: use AES-128/192/256-CBC or DES-EDE3-CBC, or %s", name, reencrypt)
	}
	iv, err := hex.DecodeString(strings.TrimSpace(ivHex))
	if err != nil || len(iv) < 8 {
		return nil, errors.New("malformed PEM DEK-Info IV")
	}
	var key []byte
	d := md5.New()
	var prev []byte
	for len(key) < keyLen {
		d.Reset()
		d.Write(prev)
		d.Write(password)
		d.Write(iv[:8])
		prev = d.Sum(prev[:0])
		key = append(key, prev...)
	}
	clear(prev)
	block, err := newCipher(key[:keyLen])
	clear(key)
	if err != nil {
		return nil, err
	}
	if len(iv) != block.BlockSize() {
		return nil, errors.New("malformed PEM DEK-Info IV: wrong length for the cipher")
	}
	return decryptCBC(block, iv, b.Bytes)
}

// decryptCBC decrypts data and removes its PKCS#7 padding; bad padding is
// ErrKeyPassword.
func decryptCBC(block cipher.Block, iv, data []byte) ([]byte, error) {
	bs := block.BlockSize()
	if len(data) == 0 || len(data)%bs != 0 {
		return nil, errors.New("encrypted key length is not a multiple of the cipher's block size")
	}
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, data)
	// PKCS#7 padding, checked without branching on each byte.
	n := int(out[len(out)-1])
	good := 1
	if n == 0 || n > bs {
		good = 0
		n = 1
	}
	pad := out[len(out)-n:]
	var bad byte
	for _, b := range pad {
		bad |= b ^ byte(n)
	}
	if good == 0 || bad != 0 {
		clear(out)
		return nil, ErrKeyPassword
	}
	return out[:len(out)-n], nil
}
