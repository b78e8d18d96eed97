package main

/*
#include <stdlib.h>
#include <string.h>
#include "dlock_types.h"

// Trampolines: Go cannot call C function pointers directly.
static int call_cert_verify(tls_cert_verify_callback_func_t f, void *ctx, const char *crl_path)
{
	return f(ctx, crl_path);
}
static void call_prkey_pwd(tls_prkey_pwd_callback_func_t f, char **pwd, int *len)
{
	f(pwd, len);
}
static void call_erase_prkey(tls_erase_prkey_callback_func_t f, void *pwd, int len)
{
	f(pwd, len);
}
*/
import "C"

import (
	"crypto/x509"
	"errors"
	"unsafe"

	"github.com/dlock-io/dlock"
)

// maxPasswordLen is the longest private-key password upstream accepts.
const maxPasswordLen = 64

var (
	errPassword   = errors.New("dlock: prkey_pwd_cb returned no password, or one longer than 64 characters or not matching its length")
	errVerifyPeer = errors.New("dlock: cert_verify_cb rejected the peer")
)

// tlsOptions turns an ssl_cfg into the Go TLS options (README, "Securing dlock"):
// mutual TLS 1.3 with ca/cert/prkey, the key password from prkey_pwd_cb
// (wiped with erase_prkey_cb right after it is copied), and, when set,
// cert_verify_cb replacing the chain verification. As upstream, the CRL is
// only used through cert_verify_cb, which receives its path ("" when
// unset); the ctx argument is NULL (there is no OpenSSL X509_STORE_CTX).
// Files and password are read for every connection, not here.
func tlsOptions(s sslSettings) *dlock.TLSOptions {
	if !s.enabled {
		return nil
	}
	o := &dlock.TLSOptions{
		CAFile:      s.caPath,
		CertFile:    s.certPath,
		KeyFile:     s.keyPath,
		KeyPassword: keyPassword(s.pwdCB, s.eraseCB),
	}
	if s.verifyCB != nil {
		verify, crl := s.verifyCB, s.crlPath
		o.VerifyPeer = func(_ []*x509.Certificate, _ string) error {
			cs := C.CString(crl)
			defer C.free(unsafe.Pointer(cs))
			if C.call_cert_verify(verify, nil, cs) < 0 {
				return errVerifyPeer
			}
			return nil
		}
	}
	return o
}

// keyPassword returns the KeyPassword callback: it asks prkey_pwd_cb for the
// password, checks it (non-NULL, NUL-terminated, at most 64 characters,
// strlen equal to the length reported), copies it and hands it to
// erase_prkey_cb. A password that fails the checks is not erased, as
// upstream.
func keyPassword(pwdCB C.tls_prkey_pwd_callback_func_t, eraseCB C.tls_erase_prkey_callback_func_t) func() ([]byte, error) {
	return func() ([]byte, error) {
		var pwd *C.char
		var n C.int
		C.call_prkey_pwd(pwdCB, &pwd, &n)
		if pwd == nil || n < 0 || n > maxPasswordLen || C.strnlen(pwd, maxPasswordLen+1) != C.size_t(n) {
			return nil, errPassword
		}
		b := C.GoBytes(unsafe.Pointer(pwd), n)
		C.call_erase_prkey(eraseCB, unsafe.Pointer(pwd), n)
		return b, nil
	}
}
