package dlockserver_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
)

// Embedding the server in a program: New with a Config, Serve on any
// listener (TCP, a Unix socket), Shutdown to stop. Clients of the same
// process dial it like any other.
func ExampleNew() {
	srv, err := dlockserver.New(dlockserver.Config{
		MaxClients:     100,
		SessionTimeout: 5 * time.Second,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	ctx := context.Background()
	c, err := dlock.Dial(ctx, ln.Addr().String(), nil)
	if err != nil {
		log.Fatal(err)
	}
	l, err := c.OpenLock(ctx, "config/reload", dlock.LockOptions{Type: dlock.Fair})
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("clients:", srv.Clients(), "locks:", srv.Locks(), "ready:", srv.Ready())
	c.Shutdown(ctx)

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("Serve returned:", <-served)
	// Output:
	// clients: 1 locks: 1 ready: true
	// Serve returned: dlockserver: server closed
}
