package main

/*
#include <unistd.h>
#include "dlock_types.h"
*/
import "C"

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"
)

// eidBytes returns the 16 raw bytes of a dlock_eid_t.
func eidBytes(e *C.dlock_eid_t) [16]byte {
	var b [16]byte
	copy(b[:], unsafe.Slice((*byte)(unsafe.Pointer(e)), 16))
	return b
}

// selectDevice applies the TCP mapping of dev_name and eid (README, "Using
// dlock from C and C++"): a non-zero eid must be an address of a local interface (an IPv4
// address given IPv4-mapped); if it is not, dev_name (if set) is tried
// instead. dev_name must name an existing interface that is up. Both unset is
// fine. The selection does not constrain the addresses TCP uses.
func selectDevice(devName *C.char, eid *C.dlock_eid_t) bool {
	raw := eidBytes(eid)
	if raw != ([16]byte{}) {
		if localAddress(net.IP(raw[:])) {
			return true
		}
		if devName == nil {
			logger.Error("dlock: eid is not a local address", "eid", net.IP(raw[:]).String())
			return false
		}
		logger.Error("dlock: eid is not a local address, trying dev_name", "eid", net.IP(raw[:]).String())
	}
	if devName == nil {
		return true
	}
	ifi, err := net.InterfaceByName(C.GoString(devName))
	if err != nil || ifi.Flags&net.FlagUp == 0 {
		logger.Error("dlock: no such network interface (dev_name)", "dev_name", C.GoString(devName))
		return false
	}
	return true
}

// localAddress reports whether ip is configured on a local interface.
func localAddress(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// validCPUSet checks a ctrl_cpuset / cmd_cpuset string the way upstream does:
// comma-separated tokens "N" or "N-M" with CPU ids below the number
// of configured CPUs. A reversed range passes upstream's syntax check but
// makes its affinity call fail, so it is refused too. The string is not
// modified (upstream tokenises it in place).
func validCPUSet(p *C.char) bool {
	if p == nil {
		return true
	}
	ncpu := int(C.sysconf(C._SC_NPROCESSORS_CONF))
	if ncpu <= 0 {
		return false
	}
	s := C.GoString(p)
	if s == "" || len(s) > 7*ncpu+(ncpu-1) {
		return false
	}
	cpu := func(t string) (int, bool) {
		t = strings.TrimSpace(t)
		if t == "" || strings.TrimLeft(t, "0123456789") != "" {
			return 0, false
		}
		n, err := strconv.Atoi(t)
		return n, err == nil && n < ncpu
	}
	for _, tok := range strings.Split(s, ",") {
		if strings.TrimSpace(tok) == "" || strings.HasPrefix(tok, "-") || strings.Count(tok, "-") > 1 {
			return false
		}
		lo, hi, isRange := strings.Cut(tok, "-")
		a, ok := cpu(lo)
		if !ok {
			return false
		}
		if isRange {
			b, ok := cpu(hi)
			if !ok || b < a {
				return false
			}
		}
	}
	return true
}

// sslSettings is a copy of a struct ssl_cfg, its paths canonicalised.
type sslSettings struct {
	enabled           bool
	caPath, crlPath   string
	certPath, keyPath string
	verifyCB          C.tls_cert_verify_callback_func_t
	pwdCB             C.tls_prkey_pwd_callback_func_t
	eraseCB           C.tls_erase_prkey_callback_func_t
	hasCRL            bool
}

// sslComplete is check 3 of server_start / dclient_lib_init: when TLS is
// enabled, ca_path, cert_path, prkey_path and both password callbacks must
// be set.
func sslComplete(s *C.struct_ssl_cfg) bool {
	if !bool(s.ssl_enable) {
		return true
	}
	return s.ca_path != nil && s.cert_path != nil && s.prkey_path != nil &&
		s.prkey_pwd_cb != nil && s.erase_prkey_cb != nil
}

// readSSL is check 8: copies the configuration and canonicalises every path
// (non-empty, at most PATH_MAX, the file must exist, like realpath()).
func readSSL(s *C.struct_ssl_cfg) (sslSettings, bool) {
	if !bool(s.ssl_enable) {
		return sslSettings{}, true
	}
	out := sslSettings{enabled: true, verifyCB: s.cert_verify_cb, pwdCB: s.prkey_pwd_cb, eraseCB: s.erase_prkey_cb}
	ok := true
	canon := func(p *C.char) string {
		path, good := realPath(C.GoString(p))
		ok = ok && good
		return path
	}
	out.caPath = canon(s.ca_path)
	out.certPath = canon(s.cert_path)
	out.keyPath = canon(s.prkey_path)
	if s.crl_path != nil {
		out.crlPath = canon(s.crl_path)
		out.hasCRL = true
	}
	return out, ok
}

// realPath is realpath(3) for an existing file.
func realPath(p string) (string, bool) {
	const pathMax = 4096
	if p == "" || len(p) > pathMax {
		return "", false
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", false
	}
	r, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", false
	}
	if _, err := os.Stat(r); err != nil {
		return "", false
	}
	return r, true
}
