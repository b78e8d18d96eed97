package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dlock-io/dlock/dlockserver/ha"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// runCluster prints a highly available cluster as etcd knows it: the
// primary and its epoch, the standbys, the registered clients and the saved
// fencing-token mark.
func runCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "init" {
		return runClusterInit(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "move" {
		return runClusterMove(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "rebalance" {
		return runClusterRebalance(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "remove" {
		return runClusterRemove(ctx, args[1:], stdout, stderr)
	}
	cf := newClusterFlags("cluster", stderr, 5*time.Second, "give up after this long")
	fs, name := cf.fs, cf.name
	if err := fs.Parse(args); err != nil {
		return err
	}
	cli, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	if sharded, err := printShards(ctx, cli, *name, stdout); sharded || err != nil {
		return err
	}
	st, err := ha.ReadStatus(ctx, cli, *name)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	fmt.Fprintf(stdout, "cluster %s\n", *name)
	if st.Primary == nil {
		fmt.Fprintln(stdout, "primary  none elected")
	} else {
		fmt.Fprintf(stdout, "primary  %s  epoch %d\n", st.Primary.Addr, st.Primary.Epoch)
	}
	for _, m := range st.Standbys {
		fmt.Fprintf(stdout, "standby  %s\n", m.Addr)
	}
	fmt.Fprintf(stdout, "clients  %d registered\n", st.Clients)
	fmt.Fprintf(stdout, "tokens   saved mark %d\n", st.TokenMark)
	return nil
}

// clusterFlags are the flags every cluster command takes: where etcd is,
// which cluster, and how long to try.
type clusterFlags struct {
	fs      *flag.FlagSet
	etcd    *string
	name    *string
	timeout *time.Duration
}

// newClusterFlags makes command cmd's flag set with the cluster flags; its
// -timeout defaults to timeout and says timeoutUsage.
func newClusterFlags(cmd string, stderr io.Writer, timeout time.Duration, timeoutUsage string) *clusterFlags {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return &clusterFlags{
		fs:      fs,
		etcd:    fs.String("etcd", "http://127.0.0.1:2379", "comma-separated etcd client `URLs`"),
		name:    fs.String("cluster", "dlock", "cluster `name` (dlockd -cluster)"),
		timeout: fs.Duration("timeout", timeout, timeoutUsage),
	}
}

// dial connects to etcd. It returns the client, ctx bounded by -timeout,
// and done, which closes the client and ends that ctx.
func (f *clusterFlags) dial(ctx context.Context) (*clientv3.Client, context.Context, func(), error) {
	cli, err := ha.Dial(strings.Split(*f.etcd, ","), nil, *f.timeout)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, *f.timeout)
	return cli, ctx, func() { cancel(); cli.Close() }, nil
}
