package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/dlock-io/dlock/dlockserver"
	"github.com/dlock-io/dlock/dlockserver/ha"
)

// haFlags are the flags of a highly available cluster member.
type haFlags struct {
	etcd, cluster, advertise string
	ttl                      time.Duration
	ca, cert, key            string
	skew                     time.Duration
	shard                    shardFlags
	durableObjects           bool
}

// wallClock returns the wall clock with -clock-skew applied.
func (f *haFlags) wallClock() func() time.Time {
	skew := f.skew
	return func() time.Time { return time.Now().Add(skew) }
}

func (f *haFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.etcd, "etcd", "", "comma-separated etcd client `URLs`: join a highly available cluster (README, \"Running a highly available cluster\")")
	fs.StringVar(&f.cluster, "cluster", "dlock", "cluster `name` (its keys live under /dlock/NAME/ in etcd)")
	fs.StringVar(&f.advertise, "advertise", "", "`address` clients are redirected to when this server is the primary (default: the listen address)")
	fs.DurationVar(&f.ttl, "etcd-ttl", 2*time.Second, "etcd lease TTL (whole seconds): a failover takes about this long")
	fs.StringVar(&f.ca, "etcd-ca", "", "PEM `file` of the CAs that sign etcd's certificates (TLS to etcd)")
	fs.StringVar(&f.cert, "etcd-cert", "", "PEM client certificate `file` for etcd")
	fs.StringVar(&f.key, "etcd-key", "", "PEM private key `file` of -etcd-cert")
	f.shard.register(fs)
	fs.BoolVar(&f.durableObjects, "durable-objects", false, "keep atomic64 objects in etcd: their changes are committed before the reply, and they survive a failover (every member must agree)")
	fs.DurationVar(&f.skew, "clock-skew", 0, "testing: shift the wall clock this server reads at start by this much (e.g. -1h)")
}

// node connects to etcd when -etcd is set (nil otherwise).
func (f *haFlags) node(listen string, logger *slog.Logger) (*ha.Node, error) {
	if f.etcd == "" {
		if f.ca != "" || f.cert != "" || f.key != "" || f.advertise != "" || f.durableObjects {
			return nil, errors.New("-etcd-ca, -etcd-cert, -etcd-key, -advertise and -durable-objects need -etcd")
		}
		return nil, f.shard.check()
	}
	cfg := ha.Config{Endpoints: strings.Split(f.etcd, ","), Cluster: f.cluster, Advertise: f.advertise,
		TTL: f.ttl, Logger: logger, Now: f.wallClock(), DurableObjects: f.durableObjects}
	if cfg.Advertise == "" {
		cfg.Advertise = listen
	}
	if err := f.shard.apply(&cfg); err != nil {
		return nil, err
	}
	if f.ca != "" || f.cert != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if f.ca != "" {
			pem, err := os.ReadFile(f.ca)
			if err != nil {
				return nil, err
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-etcd-ca %s: no certificate", f.ca)
			}
		}
		if f.cert != "" {
			c, err := tls.LoadX509KeyPair(f.cert, f.key)
			if err != nil {
				return nil, fmt.Errorf("-etcd-cert: %w", err)
			}
			t.Certificates = []tls.Certificate{c}
		}
		cfg.TLS = t
	}
	return ha.New(cfg)
}

// runHA campaigns for srv until ctx ends; the returned function waits for
// the campaign to stop.
func runHA(ctx context.Context, node *ha.Node, srv *dlockserver.Server) func() {
	if node == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		node.Run(ctx, srv)
	}()
	return func() {
		<-done
		node.Close()
	}
}
