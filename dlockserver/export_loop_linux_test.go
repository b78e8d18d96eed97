package dlockserver

import (
	"syscall"
	"unsafe"
)

// loopConnFD returns the socket of a connection served by a loop.
func loopConnFD(c *conn) int { return c.lst.fd }

// loopBusy reports whether c's loop is in a pass.
func loopBusy(c *conn) bool {
	c.lp.mu.Lock()
	defer c.lp.mu.Unlock()
	return c.lp.busy
}

// fionread is the ioctl that reports a socket's unread bytes (FIONREAD,
// also SIOCINQ), which package syscall does not name.
const fionread = 0x541B

// unreadBytes returns how many bytes socket fd holds unread.
func unreadBytes(fd int) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), fionread, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return -1
	}
	return int(n)
}
