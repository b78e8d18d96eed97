// Command dlockd runs a dlock server.
//
//	dlockd [-addr host:port] [-unix path] [-max-clients n] [-max-locks n]
//	       [-max-objects n] [-session-timeout d] [-recovery-clients n]
//	       [-log-level debug|info|warn|error] [-log-format text|json]
//	       [-http-addr host:port]
//	       [-tls-ca file -tls-cert file -tls-key file
//	        [-tls-key-password-file file | -tls-key-password-env name]
//	        [-tls-crl file] [-tls-client-auth=false] [-tls-require-aes256]
//	        [-tls-handshake-timeout d] [-max-pending-handshakes n]]
//	       [-etcd urls [-cluster name] [-advertise host:port] [-etcd-ttl d]
//	        [-etcd-ca file] [-etcd-cert file -etcd-key file] [-durable-objects]
//	        [-shard name [-shards a,b,...] [-auto-rebalance=false]]]
//
// With -etcd, the server joins a highly available cluster: etcd elects one
// primary, the others redirect clients to it and take over when it dies
// (README, "Running a highly available cluster"). With -shard it is a
// member of one shard of a sharded cluster; a shard that joins a running
// cluster is given its even share of the slots unless -auto-rebalance=false
// (README, "Growing a cluster with shards").
//
// With -tls-cert, every connection is TLS 1.3 with mutual authentication
// (README, "Securing dlock"). The TLS files are checked at startup, then
// re-read when they change.
//
// Every flag can also come from an environment variable DLOCKD_<NAME>
// (-max-clients: DLOCKD_MAX_CLIENTS); the command line wins. -version prints
// the version and VCS revision the binary was built from.
//
// It prints a structured line (in the -log-format) on stdout for each address
// it listens on, logs on stderr, and stops gracefully on SIGINT or SIGTERM.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlockserver/dlockhttp"
	"github.com/dlock-io/dlock/internal/buildinfo"
)

func main() {
	err := run(os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h asked for the usage and got it.
	case err != nil:
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
	fs.DurationVar(&cfg.RegisterTimeout, "register-timeout", 10*time.Second, "close connections that have not registered a client this long after connecting (negative: never)")
	fs.DurationVar(&cfg.FrameTimeout, "frame-timeout", 10*time.Second, "close connections that started a frame and did not finish it within this long (negative: never)")
	fs.BoolVar(&cfg.GoroutineConns, "goroutine-conns", false, "serve every connection with goroutines of its own instead of the event loops (which serve plain TCP and Unix-socket connections on Linux)")
	var tlsOpts dlock.TLSOptions
	fs.StringVar(&tlsOpts.CAFile, "tls-ca", "", "PEM `file` of the CAs client certificates must chain to (turns on TLS with -tls-cert)")
	fs.StringVar(&tlsOpts.CertFile, "tls-cert", "", "PEM certificate `file` of the server; turns on TLS")
	fs.StringVar(&tlsOpts.KeyFile, "tls-key", "", "PEM private key `file` of -tls-cert (PKCS#8, PKCS#1 or SEC 1; plain or encrypted as OpenSSL writes it)")
	pwFile := fs.String("tls-key-password-file", "", "read the password of an encrypted -tls-key from this `file` (first line)")
	pwEnv := fs.String("tls-key-password-env", "", "read the password of an encrypted -tls-key from this environment `variable`")
	fs.StringVar(&tlsOpts.CRLFile, "tls-crl", "", "PEM or DER certificate revocation list `file`, enforced on every handshake and re-read when it changes")
	clientAuth := fs.Bool("tls-client-auth", true, "require and verify client certificates (mutual TLS)")
	fs.BoolVar(&tlsOpts.RequireAES256, "tls-require-aes256", false, "refuse connections that did not negotiate TLS_AES_256_GCM_SHA384 (Go clients never do: for OpenSSL clients)")
	fs.DurationVar(&cfg.HandshakeTimeout, "tls-handshake-timeout", 10*time.Second, "close connections whose TLS handshake takes longer")
	fs.IntVar(&cfg.MaxPendingHandshakes, "max-pending-handshakes", 256, "TLS handshakes in progress at most (the oldest is closed to make room)")
	adminCN := fs.String("admin-cn", "", "with mutual TLS: comma-separated subject common `names` of the client certificates allowed to list locks and force-release them (default: nobody; without client certificates: everyone)")
	httpAddr := fs.String("http-addr", "", "serve /healthz, /readyz, /metrics and /debug/pprof/ over HTTP on this `address` (off if empty; no authentication: bind it where only operators reach)")
	var haf haFlags
	haf.register(fs)
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	format := fs.String("log-format", "text", "log `format`: text or json")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: dlockd [flags]\n\nEvery flag can also be set by an environment variable: -max-clients by\nDLOCKD_MAX_CLIENTS and so on; the command line wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := flagsFromEnv(fs, "DLOCKD_", os.LookupEnv); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	bi := buildinfo.Read()
	if *version {
		fmt.Fprintln(stdout, "dlockd", bi)
		return nil
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	// The startup lines go to stdout in the format of the log (on stderr),
	// whatever the level.
	startOpts := &slog.HandlerOptions{Level: slog.LevelInfo}
	var startup *slog.Logger
	switch *format {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, opts))
		startup = slog.New(slog.NewTextHandler(stdout, startOpts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, opts))
		startup = slog.New(slog.NewJSONHandler(stdout, startOpts))
	default:
		return fmt.Errorf("-log-format %q: want text or json", *format)
	}
	startup = startup.With("version", bi.Version, "revision", bi.Revision, "pid", os.Getpid())

	if tlsOpts.CertFile != "" || tlsOpts.KeyFile != "" || tlsOpts.CAFile != "" || tlsOpts.CRLFile != "" || tlsOpts.RequireAES256 {
		if tlsOpts.CertFile == "" || tlsOpts.KeyFile == "" {
			return errors.New("TLS needs -tls-cert and -tls-key")
		}
		if *clientAuth && tlsOpts.CAFile == "" {
			return errors.New("-tls-client-auth needs -tls-ca")
		}
		switch {
		case *pwFile != "" && *pwEnv != "":
			return errors.New("-tls-key-password-file and -tls-key-password-env exclude each other")
		case *pwFile != "":
			tlsOpts.KeyPassword = passwordFromFile(*pwFile)
		case *pwEnv != "":
			tlsOpts.KeyPassword = passwordFromEnv(*pwEnv)
		}
		if err := tlsOpts.Check(); err != nil {
			return err // "TLS configuration: <file>: <reason>"
		}
		cfg.TLS = &tlsOpts
		cfg.TLSNoClientAuth = !*clientAuth
		for _, n := range strings.Split(*adminCN, ",") {
			if n = strings.TrimSpace(n); n != "" {
				cfg.AdminNames = append(cfg.AdminNames, n)
			}
		}
	} else if *pwFile != "" || *pwEnv != "" || !*clientAuth || *adminCN != "" {
		return errors.New("TLS flags given without -tls-cert and -tls-key")
	}

	addr, err := cfg.ListenAddr()
	if err != nil {
		return err
	}
	node, err := haf.node(addr, cfg.Logger)
	if err != nil {
		return err
	}
	if node != nil {
		if cfg.RecoveryClients > 0 || cfg.RecoveryTimeout > 0 {
			node.Close()
			return errors.New("-recovery-clients and -recovery-timeout do not apply with -etcd: a new primary waits for the clients registered in etcd, for at most -session-timeout")
		}
		cfg.Cluster = node
	}
	if haf.skew != 0 {
		cfg.WallClock = haf.wallClock()
	}
	srv, err := dlockserver.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	startup.Info("dlockd listening", "network", "tcp", "addr", ln.Addr().String(), "tls", cfg.TLS != nil)
	errc := make(chan error, 3)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.UnixSocket != "" {
		_ = os.Remove(cfg.UnixSocket)
		uln, err := net.Listen("unix", cfg.UnixSocket)
		if err != nil {
			srv.Close()
			return err
		}
		startup.Info("dlockd listening", "network", "unix", "addr", cfg.UnixSocket, "tls", cfg.TLS != nil)
		go func() { errc <- srv.Serve(uln) }()
	}

	var web *http.Server
	if *httpAddr != "" {
		hln, err := net.Listen("tcp", *httpAddr)
		if err != nil {
			srv.Close()
			return fmt.Errorf("-http-addr: %w", err)
		}
		web = &http.Server{Handler: dlockhttp.NewHandler(srv), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
		startup.Info("dlockd listening", "network", "http", "addr", hln.Addr().String())
		go func() {
			if err := web.Serve(hln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("HTTP: %w", err)
			}
		}()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hactx, hacancel := context.WithCancel(context.Background())
	waitHA := runHA(hactx, node, srv)
	defer waitHA()
	defer hacancel()
	select {
	case <-ctx.Done():
		cfg.Logger.Info("shutting down")
	case err := <-errc:
		srv.Close()
		if web != nil {
			web.Close()
		}
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if web != nil {
		defer web.Shutdown(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, dlockserver.ErrServerClosed) {
		return err
	}
	return nil
}

// passwordFromFile returns a key-password callback that reads the first
// line of name each time the key is loaded, so that no copy of the password
// outlives its use (the caller wipes what it returns).
func passwordFromFile(name string) func() ([]byte, error) {
	return func() ([]byte, error) {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		n := len(data)
		if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
			n = i
		}
		pw := append([]byte(nil), data[:n]...)
		clear(data)
		return pw, nil
	}
}

// passwordFromEnv returns a key-password callback that reads the
// environment variable name. The copy it returns is wiped after use; the
// environment itself cannot be (prefer a password file).
func passwordFromEnv(name string) func() ([]byte, error) {
	return func() ([]byte, error) {
		v, ok := os.LookupEnv(name)
		if !ok {
			return nil, fmt.Errorf("environment variable %s is not set", name)
		}
		return []byte(v), nil
	}
}

// flagsFromEnv sets every flag of fs for which an environment variable
// prefix+NAME is set, NAME being the flag's name in upper case with "-"
// turned into "_" (-max-clients: DLOCKD_MAX_CLIENTS). Call it before
// fs.Parse so that the command line wins.
func flagsFromEnv(fs *flag.FlagSet, prefix string, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || f.Name == "version" {
			return
		}
		name := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment variable %s=%q: %v", name, v, e)
			}
		}
	})
	return err
}
