//go:build !linux

package dlockserver

func loopConnFD(*conn) int { return -1 }

func unreadBytes(int) int { return -1 }

func loopBusy(*conn) bool { return false }
