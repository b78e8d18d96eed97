// Command capi is the C ABI of dlock: built with -buildmode=c-shared it is a
// drop-in replacement for openEuler UMDK DLock's libdlockc.so and
// libdlocks.so, exporting every function of dlock_client_api.h and
// dlock_server_api.h with the same symbols, struct layouts and return codes
// (README, "Using dlock from C and C++"; SEMANTICS.md). The headers are in
// include/.
//
// One library holds both sides because two Go runtimes cannot share a
// process; install it as libdlock.so with libdlockc.so and libdlocks.so as
// links to it (make capi does).
//
// This is the only package with process-global state: the client library
// (dclient_lib_init) with its client-id registry, and the server library
// (dserver_lib_init) with its server-id registry, as in DLock.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/include
#include "dlock_types.h"
*/
import "C"

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/dlock-io/dlock"
)

func main() {}

// errGeneric is the plain -1 many C calls return.
const errGeneric = C.int(-1)

// code converts a Status to the C return value.
func code(st dlock.Status) C.int { return C.int(st) }

// statusOf maps an error of the Go API to the C return code: a Status (even
// wrapped) is returned as is, anything else is a transport failure,
// DLOCK_BAD_RESPONSE.
func statusOf(err error) C.int {
	if err == nil {
		return 0
	}
	var st dlock.Status
	if errors.As(err, &st) {
		return C.int(st)
	}
	return code(dlock.ErrBadResponse)
}

// connectStatus maps an error of Dial or Reinit the way client_init and
// client_reinit report it: a refused connection is DLOCK_NOT_READY, a
// status the server sent is passed through, anything else is -1.
func connectStatus(err error) C.int {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return code(dlock.ErrNotReady)
	}
	var st dlock.Status
	if errors.As(err, &st) {
		return C.int(st)
	}
	return errGeneric
}

// The library's logger. log_level (syslog 0..7) sets its level; the default is
// 4 (WARNING).
var (
	logLevel slog.LevelVar
	logger   = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: &logLevel}))
)

func init() { logLevel.Set(slog.LevelWarn) }

// setLogLevel applies a syslog level; values outside 0..7 are ignored.
func setLogLevel(l C.int) {
	switch {
	case l < 0 || l > 7:
		logger.Warn("dlock: log_level out of range, ignored", "log_level", int(l))
		return
	case l <= 3: // EMERG, ALERT, CRIT, ERR
		logLevel.Set(slog.LevelError)
	case l == 4: // WARNING
		logLevel.Set(slog.LevelWarn)
	case l <= 6: // NOTICE, INFO
		logLevel.Set(slog.LevelInfo)
	default: // DEBUG
		logLevel.Set(slog.LevelDebug)
	}
}

// validPort reports whether a configured port is acceptable: ≤ 0 (the
// default) or 1024..65535.
func validPort(p C.int) bool {
	return p <= 0 || (p >= dlock.MinPort && p <= dlock.MaxPort)
}

// portOrDefault returns p, or 21616 for p ≤ 0.
func portOrDefault(p C.int) int {
	if p <= 0 {
		return dlock.DefaultPort
	}
	return int(p)
}

// dottedIPv4 parses a dotted-quad IPv4 literal ("%u.%u.%u.%u") and returns
// it normalised.
func dottedIPv4(p *C.char) (string, bool) {
	if p == nil {
		return "", false
	}
	parts := strings.Split(C.GoString(p), ".")
	if len(parts) != 4 {
		return "", false
	}
	var b [4]byte
	for i, part := range parts {
		if part == "" || strings.TrimLeft(part, "0123456789") != "" {
			return "", false
		}
		n, err := strconv.ParseUint(part, 10, 8)
		if err != nil {
			return "", false
		}
		b[i] = byte(n)
	}
	return net.IPv4(b[0], b[1], b[2], b[3]).String(), true
}

// goBytes copies n bytes at p.
func goBytes(p *C.char, n C.uint) []byte {
	return C.GoBytes(unsafe.Pointer(p), C.int(n))
}

// writeState writes a lock value into a caller's result buffer with the
// number of bytes the C API writes for the lock type: 8 for
// ATOMIC, 12 for RW (rsvd untouched), 16 for FAIR.
func writeState(dst unsafe.Pointer, typ dlock.LockType, s dlock.LockState) {
	n := 16
	switch typ {
	case dlock.Atomic:
		n = 8
	case dlock.RW:
		n = 12
	}
	copy(unsafe.Slice((*byte)(dst), n), s[:n])
}
