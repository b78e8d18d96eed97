package mtls

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/pbkdf2"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"unsafe"
)

// ErrKeyPassword is returned when an encrypted private key does not decrypt
// with the password given: the password is wrong or the file is corrupt.
var ErrKeyPassword = errors.New("wrong private key password (or corrupt key)")

// Object identifiers of PKCS#5 v2.1 (RFC 8018) and NIST AES.
var (
	oidPBES2      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACSHA1   = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACSHA224 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 8}
	oidHMACSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// maxIterations bounds the PBKDF2 work a key file can ask for.
const maxIterations = 10_000_000

// ASN.1 structures of an encrypted PKCS#8 key (RFC 5208, RFC 8018).
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

// ParsePrivateKeyPEM returns the first private key in pemData: PKCS#8
// ("PRIVATE KEY"), encrypted PKCS#8 ("ENCRYPTED PRIVATE KEY", PBES2 with
// PBKDF2-HMAC-SHA1/SHA2 and AES-CBC, as openssl pkcs8 -topk8 -v2 and openssl
// genpkey -aes256 write it), PKCS#1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE
// KEY"). password is called only for an encrypted key; whatever it returns
// is zeroed before ParsePrivateKeyPEM returns, as are the derived key and the
// decrypted DER. A wrong password yields an error wrapping ErrKeyPassword.
func ParsePrivateKeyPEM(pemData []byte, password func() ([]byte, error)) (crypto.Signer, error) {
	rest := pemData
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM private key found")
		}
		if _, ok := b.Headers["Proc-Type"]; ok {
			return nil, errors.New("legacy PEM encryption (Proc-Type header) is not supported: convert the key with openssl pkcs8 -topk8 -v2 aes-256-cbc")
		}
		switch b.Type {
		case "ENCRYPTED PRIVATE KEY":
			if password == nil {
				return nil, errors.New("the private key is encrypted and no password was configured")
			}
			pw, err := password()
			if err != nil {
				clear(pw)
				return nil, fmt.Errorf("private key password: %w", err)
			}
			der, err := decryptPKCS8(b.Bytes, pw)
			clear(pw)
			if err != nil {
				return nil, err
			}
			k, err := x509.ParsePKCS8PrivateKey(der)
			clear(der)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrKeyPassword, err)
			}
			return signer(k)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			clear(b.Bytes)
			if err != nil {
				return nil, err
			}
			return signer(k)
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(b.Bytes)
			clear(b.Bytes)
			if err != nil {
				return nil, err
			}
			return k, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(b.Bytes)
			clear(b.Bytes)
			if err != nil {
				return nil, err
			}
			return k, nil
		}
	}
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
	if !info.Algo.Algorithm.Equal(oidPBES2) {
		return nil, fmt.Errorf("unsupported key encryption %v: only PBES2 (openssl pkcs8 -topk8 -v2 aes-256-cbc) is supported", info.Algo.Algorithm)
	}
	var p pbes2Params
	if _, err := asn1.Unmarshal(info.Algo.Parameters.FullBytes, &p); err != nil {
		return nil, errors.New("malformed PBES2 parameters")
	}
	if !p.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, fmt.Errorf("unsupported key derivation %v: only PBKDF2 is supported", p.KDF.Algorithm)
	}
	var kdf pbkdf2Params
	if _, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kdf); err != nil {
		return nil, errors.New("malformed PBKDF2 parameters")
	}
	if kdf.Iterations <= 0 || kdf.Iterations > maxIterations {
		return nil, fmt.Errorf("PBKDF2 iteration count %d outside 1..%d", kdf.Iterations, maxIterations)
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
		return nil, fmt.Errorf("unsupported PBKDF2 pseudo-random function %v", a)
	}
	var keyLen int
	switch a := p.Scheme.Algorithm; {
	case a.Equal(oidAES128CBC):
		keyLen = 16
	case a.Equal(oidAES192CBC):
		keyLen = 24
	case a.Equal(oidAES256CBC):
		keyLen = 32
	default:
		return nil, fmt.Errorf("unsupported key cipher %v: use AES-128/192/256-CBC", a)
	}
	if kdf.KeyLength != 0 && kdf.KeyLength != keyLen {
		return nil, errors.New("PBKDF2 key length does not match the cipher")
	}
	var iv []byte
	if _, err := asn1.Unmarshal(p.Scheme.Parameters.FullBytes, &iv); err != nil || len(iv) != aes.BlockSize {
		return nil, errors.New("malformed AES-CBC parameters")
	}
	if len(info.Data) == 0 || len(info.Data)%aes.BlockSize != 0 {
		return nil, errors.New("encrypted key length is not a multiple of the AES block size")
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
		return nil, fmt.Errorf("PBKDF2: %w", err)
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, len(info.Data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, info.Data)
	// PKCS#7 padding, checked without branching on each byte.
	n := int(out[len(out)-1])
	good := 1
	if n == 0 || n > aes.BlockSize {
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
