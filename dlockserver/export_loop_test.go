package dlockserver

// EventLoops returns how many event loops s runs and how many of them
// have stopped, for tests.
func EventLoops(s *Server) (n, stopped int) {
	s.mu.Lock()
	loops := s.loops
	s.mu.Unlock()
	for _, l := range loops {
		if l.isStopped() {
			stopped++
		}
	}
	return len(loops), stopped
}

// HoldStripe locks the stripe of lock id, so that a request on a lock of
// that stripe (and the event loop handling it) waits until release is
// called. For tests.
func HoldStripe(s *Server, id int32) (release func()) {
	st := s.stripeOf(id)
	st.mu.Lock()
	return st.mu.Unlock
}

// LoopOf returns the event loop serving the connection of client id (nil
// if none), for tests to compare.
func LoopOf(s *Server, id int32) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	cl := s.clients[id]
	if cl == nil || cl.conn == nil || cl.conn.lp == nil {
		return nil
	}
	return cl.conn.lp
}

// LoopProbe returns, for the connection of client id, a probe that
// reports whether its event loop is in a pass and how many bytes its
// socket holds unread (-1: not served by a loop). The probe takes none of
// the server's locks. For tests.
func LoopProbe(s *Server, id int32) func() (busy bool, unread int) {
	s.mu.Lock()
	cl := s.clients[id]
	var c *conn
	fd := -1
	if cl != nil && cl.conn != nil && cl.conn.lp != nil {
		c = cl.conn
		fd = loopConnFD(c)
	}
	s.mu.Unlock()
	return func() (bool, int) {
		if c == nil {
			return false, -1
		}
		return loopBusy(c), unreadBytes(fd)
	}
}

// NumStripes is the number of stripes of the lock ids: lock id i is on
// stripe i % NumStripes.
const NumStripes = numStripes

// HomeStripe returns the stripe that every request of client id's
// connection holds while it looks its client up (-1 if none).
func HomeStripe(s *Server, id int32) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	cl := s.clients[id]
	if cl == nil || cl.conn == nil {
		return -1
	}
	return int(uint32(int32(cl.conn.seq)) % numStripes)
}
