package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

// TestCShards runs testdata/shards.c against a sharded cluster: a real etcd
// (Debian's etcd-server) and three dlockd processes, one shard each, on
// 127.0.0.1, .2 and .3 at the same port (the C ABI names servers by IPv4
// address only). The test picks names from the cluster's slot map — one lock
// per shard, two names with one djb2 hash on different shards, an object on
// a shard other than the first — and checks that the program's batch names
// span the three shards. Shard s1 has a standby on 127.0.0.4: the program
// kills s1's primary and recovers through client_reinit on the standby.
func TestCShards(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	prog, dlockd, client, ports := clusterSetup(t, "shards.c", "the C shards test")
	port := ports[2]
	shards := []string{"s0", "s1", "s2"}
	addrs := make([]string, len(shards)+1)
	procs := make([]*exec.Cmd, len(shards)+1)
	start := func(i int, shard string) {
		addrs[i] = net.JoinHostPort(fmt.Sprintf("127.0.0.%d", i+1), port)
		procs[i] = startBg(t, dlockd, "-addr", addrs[i], "-etcd", client, "-cluster", "capishards",
			"-etcd-ttl", "2s", "-session-timeout", "5s", "-shard", shard, "-shards", "s0,s1,s2")
	}
	for i, s := range shards {
		start(i, s)
	}
	waitShardMaps(t, addrs[:3], map[string]int{"s0": 1, "s1": 1, "s2": 1})
	start(3, "s1") // the standby of s1
	m := waitShardMaps(t, addrs, map[string]int{"s0": 1, "s1": 2, "s2": 1})
	if a := m.Shards[1].Addrs; m.Shards[1].Name != "s1" || a[0] != addrs[1] {
		t.Fatalf("shard s1's members: %v", m.Shards[1])
	}

	owner := func(name string) string { return m.Shards[m.Slots[dlock.SlotOf(name)]].Name }
	// One lock name per shard, in shard order.
	var names []string
	for _, s := range shards {
		for k := 0; k < 1000; k++ {
			n := fmt.Sprintf("capi shard lock %d", k)
			if owner(n) == s {
				names = append(names, n)
				break
			}
		}
	}
	// Two names with one djb2 hash ("..Az" and "..BY": 'A'*33+'z' equals
	// 'B'*33+'Y') that different shards own.
	var coll [2]string
	for k := 0; k < 1000; k++ {
		a, b := fmt.Sprintf("capi collision %d Az", k), fmt.Sprintf("capi collision %d BY", k)
		if djb2([]byte(a)) > 0 && owner(a) != owner(b) {
			coll = [2]string{a, b}
			break
		}
	}
	var object string
	for k := 0; k < 1000; k++ {
		if n := fmt.Sprintf("capi shard counter %d", k); owner(n) != shards[0] {
			object = n
			break
		}
	}
	if len(names) != 3 || coll[0] == "" || object == "" || djb2([]byte(coll[0])) != djb2([]byte(coll[1])) {
		t.Fatalf("could not pick names: %q %q %q", names, coll, object)
	}
	spanned := map[string]int{}
	for i := 0; i < dlock.MaxBatch; i++ {
		spanned[owner(fmt.Sprintf("shard batch %d", i))]++
	}
	if len(spanned) != len(shards) {
		t.Fatalf("the program's batch spans %d shards: %v", len(spanned), spanned)
	}
	t.Logf("locks %q, collision %q (shards %s, %s), object %q (shard %s), batch per shard %v",
		names, coll, owner(coll[0]), owner(coll[1]), object, owner(object), spanned)
	out := run(t, prog, 2*time.Minute, port, names[0], names[1], names[2], coll[0], coll[1], object,
		strconv.Itoa(procs[1].Process.Pid))
	t.Log(out)
}

// waitShardMaps waits until every member serves a slot map with the shards
// of want, each with its number of members, and returns the first member's
// map.
func waitShardMaps(t *testing.T, addrs []string, want map[string]int) *dlock.ShardMap {
	t.Helper()
	var last error
	for i := 0; i < 300; i++ {
		var first *dlock.ShardMap
		last = nil
		for _, a := range addrs {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m, err := dlock.FetchShardMap(ctx, a, nil)
			cancel()
			switch {
			case err != nil:
				last = err
			case len(m.Shards) != len(want):
				last = fmt.Errorf("%s: %d shards", a, len(m.Shards))
			default:
				for _, s := range m.Shards {
					if len(s.Addrs) != want[s.Name] {
						last = fmt.Errorf("%s: shard %s has members %v", a, s.Name, s.Addrs)
					}
				}
			}
			if first == nil && last == nil {
				first = m
			}
		}
		if last == nil {
			return first
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the members' maps did not show the shards %v: %v", want, last)
	return nil
}

// TestCShardMove runs testdata/shards_move.c against two shards (a real etcd,
// one dlockd each on 127.0.0.1 and .2): while the program holds an ATOMIC
// and an RW lock of one of s0's slots, idle, "dlockctl cluster move" moves
// the slot to s1. The move completes although nobody unlocks, and the
// program checks that its holds, its C ids and its unlocks and extends
// survive it, and that the other client never got the locks.
func TestCShardMove(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	prog, dlockd, client, ports := clusterSetup(t, "shards_move.c", "the C slot move test")
	dlockctl := filepath.Join(t.TempDir(), "dlockctl")
	if out, err := exec.Command("go", "build", "-o", dlockctl, "github.com/dlock-io/dlock/cmd/dlockctl").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dlockctl: %v\n%s", err, out)
	}
	port := ports[2]
	var addrs []string
	for i, s := range []string{"s0", "s1"} {
		addrs = append(addrs, net.JoinHostPort(fmt.Sprintf("127.0.0.%d", i+1), port))
		startBg(t, dlockd, "-addr", addrs[i], "-etcd", client, "-cluster", "capimove",
			"-etcd-ttl", "2s", "-session-timeout", "5s", "-shard", s, "-shards", "s0,s1")
	}
	m := waitShardMaps(t, addrs, map[string]int{"s0": 1, "s1": 1})
	var tag string
	for k := 0; k < 1000 && tag == ""; k++ {
		if n := fmt.Sprintf("{capi move %d}", k); m.Shards[m.Slots[dlock.SlotOf(n)]].Name == "s0" {
			tag = n
		}
	}
	slot := dlock.SlotOf(tag)
	dir := t.TempDir()
	held, moved := filepath.Join(dir, "held"), filepath.Join(dir, "moved")
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	pctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(pctx, prog, port, tag+"/atomic", tag+"/rw", held, moved)
	go func() {
		out, err := cmd.CombinedOutput()
		done <- result{out, err}
	}()
	defer func() {
		cancel()
		<-done
	}()
	for i := 0; i < 600; i++ {
		if _, err := os.Stat(held); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(held); err != nil {
		t.Fatalf("the program did not take its locks: %v", err)
	}
	start := time.Now()
	out, err := exec.Command(dlockctl, "cluster", "move", "-etcd", client, "-cluster", "capimove",
		"-wait", "-timeout", "60s", strconv.Itoa(slot), "s1").CombinedOutput()
	if err != nil {
		t.Fatalf("dlockctl cluster move: %v\n%s", err, out)
	}
	t.Logf("the move took %v with the program's holds in the slot", time.Since(start).Round(time.Millisecond))
	if err := os.WriteFile(moved, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	res := <-done
	done <- res
	if res.err != nil || !strings.Contains(string(res.out), "OK ") {
		t.Fatalf("shards_move: %v\n%s", res.err, res.out)
	}
	t.Log(string(res.out))
}
