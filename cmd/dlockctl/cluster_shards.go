package main

import (
	"context"
	"fmt"
	"io"
	"strings"

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
