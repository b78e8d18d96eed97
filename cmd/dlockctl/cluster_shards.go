package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
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
	if b, err := ha.ReadBalance(ctx, cli, name); err == nil {
		if len(b.Joined) > 0 {
			fmt.Fprintf(w, "joined   %s (no slots yet: given them by its primary, or by dlockctl cluster rebalance)\n", strings.Join(b.Joined, ","))
		}
		if len(b.Leaving) > 0 {
			fmt.Fprintf(w, "leaving  %s (dlockctl cluster remove hands its slots over)\n", strings.Join(b.Leaving, ","))
		}
		if len(b.Removed) > 0 {
			fmt.Fprintf(w, "removed  %s (no slots, out of the map: stop its processes)\n", strings.Join(b.Removed, ","))
		}
	}
	for _, mv := range st.Moves {
		fmt.Fprintf(w, "moving   slots %s from %s to %s (map version %d)\n", formatRanges(mv.Slots),
			strings.Join(mv.From, ","), mv.To, mv.Version)
	}
	return true, nil
}

// formatRanges prints slot ranges as "first-last,...".
func formatRanges(rs ha.Ranges) string {
	var out []string
	for _, r := range rs {
		if r[0] == r[1] {
			out = append(out, strconv.Itoa(r[0]))
		} else {
			out = append(out, fmt.Sprintf("%d-%d", r[0], r[1]))
		}
	}
	return strings.Join(out, ",")
}

// parseRanges reads slot ranges written "first-last" or "slot", separated
// by commas.
func parseRanges(s string) (ha.Ranges, error) {
	var rs ha.Ranges
	for _, part := range strings.Split(s, ",") {
		a, b, isRange := strings.Cut(strings.TrimSpace(part), "-")
		first, err := strconv.Atoi(a)
		last := first
		if err == nil && isRange {
			last, err = strconv.Atoi(b)
		}
		if err != nil || first < 0 || last < first {
			return nil, fmt.Errorf("slots %q: want slot or first-last ranges separated by commas", s)
		}
		rs = append(rs, [2]int{first, last})
	}
	return rs, nil
}

// runClusterMove is "dlockctl cluster move SLOTS TO": move slots to shard
// TO. The sources stop serving them at once; the target serves them after
// its grace; -wait waits for that.
func runClusterMove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newClusterFlags("cluster move", stderr, 5*time.Second, "give up after this long (with -wait, the target's grace is the session timeout)")
	fs, name := cf.fs, cf.name
	wait := fs.Bool("wait", false, "wait until the target serves the slots")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageError("usage: dlockctl cluster move [flags] SLOTS TO (SLOTS: 100-199,512)")
	}
	slots, err := parseRanges(fs.Arg(0))
	if err != nil {
		return usageError(err.Error())
	}
	to := fs.Arg(1)
	cli, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	st, err := ha.ReadShards(ctx, cli, *name)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	known := false
	for _, s := range st.Shards {
		known = known || s.Name == to
	}
	if !known {
		joined, err := ha.JoinedShards(ctx, cli, *name)
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		for _, j := range joined {
			known = known || j == to
		}
	}
	if !known {
		return fmt.Errorf("cluster %s has no shard %q: start a member with -shard %s first (dlockctl cluster lists the shards)", *name, to, to)
	}
	mv, err := ha.MoveSlots(ctx, cli, *name, slots, to)
	if err != nil {
		return err
	}
	if len(mv.Slots) == 0 {
		fmt.Fprintf(stdout, "shard %s owns these slots already\n", to)
		return nil
	}
	fmt.Fprintf(stdout, "moving slots %s from %s to %s (map version %d)\n", formatRanges(mv.Slots),
		strings.Join(mv.From, ","), to, mv.Version)
	if !*wait {
		return nil
	}
	return waitMove(ctx, cli, *name, mv, stdout)
}

// waitMove waits until the target of mv serves its slots.
func waitMove(ctx context.Context, cli *clientv3.Client, name string, mv ha.Move, stdout io.Writer) error {
	for {
		st, err := ha.ReadShards(ctx, cli, name)
		if err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
		done := true
		for _, m := range st.Moves {
			done = done && m.Version != mv.Version
		}
		if done {
			fmt.Fprintf(stdout, "shard %s serves slots %s\n", mv.To, formatRanges(mv.Slots))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the move to %s is still in progress: %w", mv.To, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runClusterRebalance is "dlockctl cluster rebalance": split the slots
// evenly between the shards of the map and the shards that joined since,
// moving as few slots as it can, one move at a time (each waits for the
// previous one).
func runClusterRebalance(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newClusterFlags("cluster rebalance", stderr, 5*time.Minute, "give up waiting after this long (each move takes at least the target's session timeout)")
	fs, name := cf.fs, cf.name
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError("usage: dlockctl cluster rebalance [flags]")
	}
	cli, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	b, err := ha.ReadBalance(ctx, cli, *name)
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	if b.Status.Version == 0 {
		return fmt.Errorf("cluster %s has no slot map (dlockctl cluster init writes one)", *name)
	}
	plan := ha.Plan(b)
	if len(plan) == 0 {
		fmt.Fprintln(stdout, "the slots are split evenly already")
		return nil
	}
	for _, p := range plan {
		mv, err := ha.StartMove(ctx, cli, *name, b, p)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "moving slots %s from %s to %s (map version %d)\n", formatRanges(mv.Slots),
			strings.Join(mv.From, ","), mv.To, mv.Version)
		if err := waitMove(ctx, cli, *name, mv, stdout); err != nil {
			return err
		}
		// The plan stands (the map changed only by the move just done);
		// the next move needs the current removal markers.
		if b, err = ha.ReadBalance(ctx, cli, *name); err != nil {
			return fmt.Errorf("etcd: %w", err)
		}
	}
	return nil
}

// runClusterRemove is "dlockctl cluster remove SHARD": hand every slot of
// SHARD to the other shards, evenly, one move at a time (each waits for
// SHARD's holds in its slots to end), then drop SHARD from the map. Its
// processes may stop afterwards.
func runClusterRemove(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newClusterFlags("cluster remove", stderr, 5*time.Minute, "give up waiting after this long (each move takes at least the target's session timeout; run the command again to go on)")
	fs, name := cf.fs, cf.name
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError("usage: dlockctl cluster remove [flags] SHARD")
	}
	shard := fs.Arg(0)
	cli, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
	err = ha.RemoveShard(ctx, cli, *name, shard, func(mv ha.Move, done bool) {
		if done {
			fmt.Fprintf(stdout, "shard %s serves slots %s\n", mv.To, formatRanges(mv.Slots))
		} else {
			fmt.Fprintf(stdout, "moving slots %s from %s to %s (map version %d)\n", formatRanges(mv.Slots),
				strings.Join(mv.From, ","), mv.To, mv.Version)
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "shard %s owns no slots and is out of the slot map: its processes may stop\n", shard)
	return nil
}

// runClusterInit is "dlockctl cluster init": write a sharded cluster's
// slot map, the slots split evenly between -shards, unless it has one.
func runClusterInit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cf := newClusterFlags("cluster init", stderr, 5*time.Second, "give up after this long")
	fs, name := cf.fs, cf.name
	shards := fs.String("shards", "", "comma-separated shard `names` (dlockd -shard): the slots are split evenly between them, in this order")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *shards == "" {
		return usageError("cluster init needs -shards")
	}
	cli, ctx, done, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer done()
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
