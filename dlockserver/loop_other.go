//go:build !linux

package dlockserver

import "net"

// Without Linux's epoll every connection is served by its goroutines.

type loop struct{}

type loopConn struct{}

func (s *Server) loopFD(net.Conn) int                 { return -1 }
func (s *Server) adoptLoop(*conn, int, net.Conn) bool { return false }
func (s *Server) stopLoops()                          {}
func (c *conn) loopPush()                             {}
func closeFD(int)                                     {}

func (l *loop) isStopped() bool { return true }
