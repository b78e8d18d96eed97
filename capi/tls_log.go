package main

import (
	"errors"

	"github.com/dlock-io/dlock"
)

// logTLSConfig logs, at the error level, a connection that failed because
// the TLS files did not load (a key that does not decrypt, a missing or
// unreadable file...): the C API returns only -1, so the log is where a C
// program's operator learns which file and why.
func logTLSConfig(err error) {
	if errors.Is(err, dlock.ErrTLSConfig) {
		logger.Error("dlock: TLS setup failed", "err", err)
	}
}
