package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlock-io/dlock/dlockserver/ha"
)

// printShards prints a sharded cluster: the slot map's version, and for
// each shard its slot ranges, primary, standbys, registered clients and
// token mark. It reports false, printing nothing, when the cluster has no
// slot map (not sharded).
func printShards(ctx context.Context, cli *clientv3.Client, name string, w io.Writer) (bool, error) {
	st, err := ha.ReadShards(ctx, cli, name)
	if err != nil {
		return false, fmt.Errorf("etcd: %w", err)
	}
	if st.Version == 0 {
		return false, nil
	}
	fmt.Fprintf(w, "cluster %s  %d shards  slot map version %d", name, len(st.Shards), st.Version)
	if st.Unassigned > 0 {
		fmt.Fprintf(w, "  %d slots unassigned", st.Unassigned)
	}
	fmt.Fprintln(w)
	for _, s := range st.Shards {
		var rs []string
		n := 0
		for _, r := range s.Slots {
			rs = append(rs, fmt.Sprintf("%d-%d", r[0], r[1]))
			n += r[1] - r[0] + 1
		}
		fmt.Fprintf(w, "shard %s  slots %s (%d)\n", s.Name, strings.Join(rs, ","), n)
		if s.Primary == nil {
			fmt.Fprintln(w, "  primary  none elected")
		} else {
			fmt.Fprintf(w, "  primary  %s  epoch %d\n", s.Primary.Addr, s.Primary.Epoch)
		}
		for _, m := range s.Standbys {
			fmt.Fprintf(w, "  standby  %s\n", m.Addr)
		}
		fmt.Fprintf(w, "  clients  %d registered\n", s.Clients)
		fmt.Fprintf(w, "  tokens   saved mark %d\n", s.TokenMark)
	}
	return true, nil
}

// runClusterInit is "dlockctl cluster init": write a sharded cluster's
// slot map, the slots split evenly between -shards, unless it has one.
func runClusterInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	etcd := fs.String("etcd", "http://127.0.0.1:2379", "comma-separated etcd client `URLs`")
	name := fs.String("cluster", "dlock", "cluster `name` (dlockd -cluster)")
	shards := fs.String("shards", "", "comma-separated shard `names` (dlockd -shard): the slots are split evenly between them, in this order")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *shards == "" {
		return usageError("cluster init needs -shards")
	}
	cli, err := ha.Dial(strings.Split(*etcd, ","), nil, *timeout)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	wrote, err := ha.InitSlots(ctx, cli, *name, strings.Split(*shards, ","))
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if !wrote {
		return fmt.Errorf("cluster %s has a slot map already (dlockctl cluster shows it)", *name)
	}
	fmt.Fprintf(stdout, "cluster %s: slots split between %s\n", *name, *shards)
	return nil
}
