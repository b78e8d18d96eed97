package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dlock-io/dlock/dlockserver/ha"
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
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	etcd := fs.String("etcd", "http://127.0.0.1:2379", "comma-separated etcd client `URLs`")
	name := fs.String("cluster", "dlock", "cluster `name` (dlockd -cluster)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cli, err := ha.Dial(strings.Split(*etcd, ","), nil, *timeout)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
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
