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
