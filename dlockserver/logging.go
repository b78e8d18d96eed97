package dlockserver

import (
	"context"
	"log/slog"
)

// debugOn reports whether debug records are wanted, so that the callers
// build their attributes only then.
func (s *Server) debugOn() bool {
	return s.cfg.Logger.Enabled(context.Background(), slog.LevelDebug)
}

// remote returns the peer address of c for the log.
func (c *conn) remote() string {
	if a := c.raw.RemoteAddr(); a != nil {
		return a.String()
	}
	return ""
}
