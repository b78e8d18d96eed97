// Command dlockd runs a dlock server.
//
//	dlockd [-addr host:port] [-unix path] [-max-clients n] [-max-locks n]
//	       [-max-objects n] [-session-timeout d] [-recovery-clients n]
//	       [-log-level debug|info|warn|error] [-log-format text|json]
//
// It prints the addresses it listens on and stops gracefully on SIGINT or
// SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dlock-io/dlock/dlockserver"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "dlockd:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dlockd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg dlockserver.Config
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:21616", "TCP `address` to listen on (host:port; port 1024..65535)")
	fs.StringVar(&cfg.UnixSocket, "unix", "", "also listen on this Unix socket `path`")
	fs.IntVar(&cfg.MaxClients, "max-clients", 1000, "registered clients at most")
	fs.IntVar(&cfg.MaxLocks, "max-locks", 51200, "lock objects at most")
	fs.IntVar(&cfg.MaxObjects, "max-objects", 102400, "atomic64 objects at most")
	fs.IntVar(&cfg.MaxConns, "max-conns", 4000, "open connections at most")
	fs.DurationVar(&cfg.SessionTimeout, "session-timeout", 15*time.Second, "how long a disconnected client keeps its locks (negative: until evicted)")
	fs.IntVar(&cfg.RecoveryClients, "recovery-clients", 0, "start in recovery mode and wait for this many clients (0..1000)")
	fs.DurationVar(&cfg.RecoveryTimeout, "recovery-timeout", 0, "end recovery mode after this long even if clients are missing (0: wait forever)")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	format := fs.String("log-format", "text", "log `format`: text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch *format {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, opts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, opts))
	default:
		return fmt.Errorf("-log-format %q: want text or json", *format)
	}

	srv, err := dlockserver.New(cfg)
	if err != nil {
		return err
	}
	addr, err := cfg.ListenAddr()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dlockd listening on %s\n", ln.Addr())
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.UnixSocket != "" {
		_ = os.Remove(cfg.UnixSocket)
		uln, err := net.Listen("unix", cfg.UnixSocket)
		if err != nil {
			srv.Close()
			return err
		}
		fmt.Fprintf(stdout, "dlockd listening on unix:%s\n", cfg.UnixSocket)
		go func() { errc <- srv.Serve(uln) }()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
	case err := <-errc:
		srv.Close()
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, dlockserver.ErrServerClosed) {
		return err
	}
	return nil
}
