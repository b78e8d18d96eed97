package main

import (
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestDaemonConnectionDeadlines: dlockd's -register-timeout and
// -frame-timeout close a connection that never registers and one that
// holds a truncated frame open, and log each.
func TestDaemonConnectionDeadlines(t *testing.T) {
	bin := buildDlockd(t)
	addr, log := startDlockd(t, bin, "-register-timeout", "400ms", "-frame-timeout", "200ms")
	for _, tc := range []struct {
		name    string
		send    []byte
		message string
	}{
		{"idle", nil, "no client registered in time"},
		{"truncated frame", []byte{0x0C, 0xD1, 2}, "frame was not completed in time"},
	} {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := nc.Write(tc.send); err != nil {
			t.Fatal(err)
		}
		if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("%s: read = %v, want the server to close the connection", tc.name, err)
		}
		for end := time.Now().Add(5 * time.Second); !strings.Contains(log.String(), tc.message) && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		if !strings.Contains(log.String(), tc.message) {
			t.Errorf("%s: dlockd did not log %q:\n%s", tc.name, tc.message, log)
		}
	}
}
