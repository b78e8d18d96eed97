package ha_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlockserver/ha"
)

// shardCluster is etcd plus one dlockd per shard (and optional standbys).
type shardCluster struct {
	t      *testing.T
	eps    string
	name   string
	shards []string
	addrs  map[string][]string // shard → member addresses
	procs  map[string][]*proc
}

// newShardCluster starts etcd and, for every shard, members dlockd
// processes, and waits until each shard has a primary.
func newShardCluster(t *testing.T, nshards, members int) *shardCluster {
	t.Helper()
	etcd := startEtcd(t, 1)
	c := &shardCluster{t: t, eps: endpoints(etcd), name: strings.ReplaceAll(t.Name(), "/", "_"),
		addrs: map[string][]string{}, procs: map[string][]*proc{}}
	for i := 0; i < nshards; i++ {
		c.shards = append(c.shards, fmt.Sprintf("s%d", i))
	}
	for m := 0; m < members; m++ {
		for _, s := range c.shards {
			addr := freeAddr(t)
			c.addrs[s] = append(c.addrs[s], addr)
			c.procs[s] = append(c.procs[s], c.start(s, addr))
		}
	}
	c.waitPrimaries(members)
	c.waitMaps(members)
	return c
}

// waitMaps waits until every member serves a map in which every shard has
// its members (the servers learn them from etcd asynchronously).
func (c *shardCluster) waitMaps(members int) {
	c.t.Helper()
	var last error
	for i := 0; i < 300; i++ {
		last = nil
		for _, a := range c.allAddrs() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m, err := dlock.FetchShardMap(ctx, a, nil)
			cancel()
			if err == nil && len(m.Shards) != len(c.shards) {
				err = fmt.Errorf("%d shards", len(m.Shards))
			}
			for j := 0; err == nil && j < len(m.Shards); j++ {
				if len(m.Shards[j].Addrs) < members {
					err = fmt.Errorf("shard %s has %d members", m.Shards[j].Name, len(m.Shards[j].Addrs))
				}
			}
			if err != nil {
				last = fmt.Errorf("%s: %v", a, err)
				break
			}
		}
		if last == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("the members' maps did not show every shard: %v", last)
}

func (c *shardCluster) start(shard, addr string, extra ...string) *proc {
	args := []string{"-addr", addr, "-log-level", "info",
		"-etcd", c.eps, "-cluster", c.name, "-etcd-ttl", ttl.String(), "-session-timeout", "5s",
		"-shard", shard, "-shards", strings.Join(c.shards, ",")}
	return startProc(c.t, "listening", buildDlockd(c.t), append(args, extra...)...)
}

func (c *shardCluster) read() ha.ShardsStatus {
	c.t.Helper()
	cli, err := ha.Dial(strings.Split(c.eps, ","), nil, 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := ha.ReadShards(ctx, cli, c.name)
	if err != nil {
		c.t.Fatal(err)
	}
	return st
}

// waitPrimaries waits until every shard has a primary and members-1
// standbys.
func (c *shardCluster) waitPrimaries(members int) ha.ShardsStatus {
	c.t.Helper()
	var st ha.ShardsStatus
	for i := 0; i < 300; i++ {
		st = c.read()
		ok := len(st.Shards) == len(c.shards)
		for _, s := range st.Shards {
			ok = ok && s.Primary != nil && 1+len(s.Standbys) >= members
		}
		if ok {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("shards did not elect primaries: %+v", st)
	return st
}

// allAddrs lists every member.
func (c *shardCluster) allAddrs() []string {
	var out []string
	for _, s := range c.shards {
		out = append(out, c.addrs[s]...)
	}
	return out
}

// router dials the cluster knowing only seeds.
func (c *shardCluster) router(ctx context.Context, seeds ...string) *dlock.Router {
	c.t.Helper()
	r, err := dlock.DialRouter(ctx, &dlock.Config{Addrs: seeds, DialTimeout: 2 * time.Second})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { r.Close() })
	return r
}

// openAll opens names through r in batches of up to 31 entries spanning
// shards, checking that every entry is answered in the caller's order.
func openAll(ctx context.Context, t *testing.T, r *dlock.Router, names []string) []*dlock.Lock {
	t.Helper()
	out := make([]*dlock.Lock, 0, len(names))
	for i := 0; i < len(names); i += dlock.MaxBatch {
		part := names[i:min(i+dlock.MaxBatch, len(names))]
		locks := make([]*dlock.Lock, len(part))
		if err := r.BatchOpenLock(ctx, part, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}, locks); err != nil {
			t.Fatalf("batch open at %d: %v", i, err)
		}
		for j, l := range locks {
			if l == nil || l.Name() != part[j] {
				t.Fatalf("batch open entry %d: %v for %s", j, l, part[j])
			}
		}
		out = append(out, locks...)
	}
	return out
}

// TestShardsSpreadExclusiveBatches: three shards, one dlockd each. A client
// that knows one address opens 3 000 locks in batches of 31 spanning the
// shards; each shard's server accepts exactly the names of its slots, and
// each shard gets its third within ±20%. Holds are exclusive across
// clients; a batch of 31 trylocks spanning the shards, where another client
// holds every other lock, is answered entry by entry in the caller's order;
// atomic64 objects are routed by name.
func TestShardsSpreadExclusiveBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 5*time.Minute)
	c := newShardCluster(t, 3, 1)
	a := c.router(ctx, c.addrs["s0"][0])
	b := c.router(ctx, c.addrs["s2"][0])
	m := a.Map()
	if m == nil || len(m.Shards) != 3 {
		t.Fatalf("map: %+v", m)
	}

	const n = 3000
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("orders/%d", i)
	}
	locksA := openAll(ctx, t, a, names)
	per := map[string]int{}
	for _, nm := range names {
		per[a.ShardOf(nm)]++
	}
	for _, s := range c.shards {
		if k := per[s]; k < n/3*8/10 || k > n/3*12/10 {
			t.Errorf("shard %s has %d of %d locks: not within ±20%% of even", s, k, n)
		}
	}
	t.Logf("locks per shard: %v", per)

	// Each server refuses names of other shards' slots: a plain Client
	// gets ErrMoved.
	for _, s := range c.shards {
		cl, err := dlock.Dial(ctx, c.addrs[s][0], &dlock.Config{DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		for _, nm := range names[:60] {
			_, err := cl.OpenLock(ctx, nm, dlock.LockOptions{Type: dlock.Atomic})
			if own := a.ShardOf(nm) == s; own != (err == nil) || !own && !errors.Is(err, dlock.ErrMoved) {
				t.Fatalf("shard %s, %s (owner %s): %v", s, nm, a.ShardOf(nm), err)
			}
		}
		cl.Close()
	}

	// Exclusive across clients; b holds every other lock of the first 31.
	locksB := openAll(ctx, t, b, names[:dlock.MaxBatch])
	var reqs []dlock.LockRequest
	for i, l := range locksB {
		if i%2 == 0 {
			reqs = append(reqs, dlock.LockRequest{Lock: l})
		}
	}
	res := make([]dlock.Result, dlock.MaxBatch)
	if err := b.BatchTryLock(ctx, reqs, res); err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		if res[i].Status != dlock.Success || res[i].Token == 0 {
			t.Fatalf("b entry %d: %v", i, res[i].Status)
		}
	}
	reqs = reqs[:0]
	spanned := map[string]bool{}
	for _, l := range locksA[:dlock.MaxBatch] {
		reqs = append(reqs, dlock.LockRequest{Lock: l})
		spanned[a.ShardOf(l.Name())] = true
	}
	if len(spanned) != 3 {
		t.Fatalf("the batch spans %d shards", len(spanned))
	}
	if err := a.BatchTryLock(ctx, reqs, res); err != nil {
		t.Fatal(err)
	}
	for i := range reqs {
		want := dlock.Success
		if i%2 == 0 {
			want = dlock.ErrFail // held by b
		}
		if res[i].Status != want || (want == dlock.Success) != (res[i].Token != 0) {
			t.Fatalf("a entry %d (%s on %s): %v token %d, want %v", i, names[i], a.ShardOf(names[i]), res[i].Status, res[i].Token, want)
		}
	}
	// b cannot take a's locks; after a's batch unlock it can.
	for i := 1; i < dlock.MaxBatch; i += 2 {
		if ok, err := locksB[i].TryLock(ctx); ok || err != nil {
			t.Fatalf("b took %s while a holds it: %v %v", names[i], ok, err)
		}
	}
	unl := make([]*dlock.Lock, 0, dlock.MaxBatch)
	for i := 1; i < dlock.MaxBatch; i += 2 {
		unl = append(unl, locksA[i])
	}
	if err := a.BatchUnlock(ctx, unl, res); err != nil {
		t.Fatal(err)
	}
	for i := range unl {
		if res[i].Status != dlock.Success {
			t.Fatalf("unlock entry %d: %v", i, res[i].Status)
		}
	}
	for i := 1; i < dlock.MaxBatch; i += 2 {
		if ok, err := locksB[i].TryLock(ctx); !ok || err != nil {
			t.Fatalf("b could not take %s after a's unlock: %v %v", names[i], ok, err)
		}
	}

	// Objects by name: a creates, b adds, a reads.
	for i := 0; i < 30; i++ {
		nm := fmt.Sprintf("{counter}%d/%d", i%3, i)
		oa, err := a.CreateAtomic64(ctx, nm, 100, dlock.Atomic64Options{})
		if err != nil {
			t.Fatalf("create %s: %v", nm, err)
		}
		ob, err := b.OpenAtomic64(ctx, nm, dlock.Atomic64Options{})
		if err != nil {
			t.Fatalf("open %s: %v", nm, err)
		}
		if _, err := ob.FetchAndAdd(ctx, 5); err != nil {
			t.Fatal(err)
		}
		if v, err := oa.Load(ctx); err != nil || v != 105 {
			t.Fatalf("%s: %d %v", nm, v, err)
		}
	}
	// A hash tag keeps names together.
	if a.ShardOf("{x}/1") != a.ShardOf("{x}/2") || a.ShardOf("{x}/1") != a.ShardOf("x") {
		t.Error("hash-tagged names on different shards")
	}
}

var (
	dlockctlOnce sync.Once
	dlockctlBin  string
	dlockctlErr  error
)

// buildDlockctl compiles cmd/dlockctl once per test binary.
func buildDlockctl(t *testing.T) string {
	t.Helper()
	dlockctlOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dlockctl-ha-")
		if err != nil {
			dlockctlErr = err
			return
		}
		dlockctlBin = filepath.Join(dir, "dlockctl")
		out, err := exec.Command("go", "build", "-o", dlockctlBin, "github.com/dlock-io/dlock/cmd/dlockctl").CombinedOutput()
		if err != nil {
			dlockctlErr = fmt.Errorf("go build ./cmd/dlockctl: %v\n%s", err, out)
		}
	})
	if dlockctlErr != nil {
		t.Fatal(dlockctlErr)
	}
	return dlockctlBin
}

// TestShardsClusterCommand: dlockctl cluster shows every shard with its
// slot ranges, primary and standby.
func TestShardsClusterCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	c := newShardCluster(t, 3, 2)
	out, err := exec.Command(buildDlockctl(t), "cluster", "-etcd", c.eps, "-cluster", c.name).CombinedOutput()
	if err != nil {
		t.Fatalf("dlockctl cluster: %v\n%s", err, out)
	}
	text := string(out)
	t.Logf("dlockctl cluster:\n%s", text)
	for _, want := range []string{"3 shards", "shard s0  slots 0-340 (341)", "shard s1  slots 341-681 (341)",
		"shard s2  slots 682-1023 (342)"} {
		if !strings.Contains(text, want) {
			t.Errorf("no %q in the output", want)
		}
	}
	for _, s := range c.shards {
		for _, a := range c.addrs[s] {
			if !strings.Contains(text, a) {
				t.Errorf("member %s of %s not shown", a, s)
			}
		}
	}
	if n := strings.Count(text, "  primary  "); n != 3 {
		t.Errorf("%d primaries shown", n)
	}
	if n := strings.Count(text, "  standby  "); n != 3 {
		t.Errorf("%d standbys shown", n)
	}

	// dlockctl locks on a shard's primary lists that shard's locks.
	ctx := testCtx(t, time.Minute)
	r := c.router(ctx, c.addrs["s0"][0])
	names := make([]string, 30)
	for i := range names {
		names[i] = fmt.Sprintf("ls/%d", i)
	}
	openAll(ctx, t, r, names)
	st := c.read()
	for _, sh := range st.Shards {
		out, err := exec.Command(buildDlockctl(t), "locks", "-addr", sh.Primary.Addr, "-prefix", "ls/", "-json").CombinedOutput()
		if err != nil {
			t.Fatalf("dlockctl locks: %v\n%s", err, out)
		}
		var listed []struct{ Name string }
		if err := json.Unmarshal(out, &listed); err != nil {
			t.Fatalf("dlockctl locks -json: %v\n%s", err, out)
		}
		got := map[string]bool{}
		for _, l := range listed {
			got[l.Name] = true
		}
		for _, n := range names {
			if got[n] != (r.ShardOf(n) == sh.Name) {
				t.Errorf("dlockctl locks on %s (shard %s): %s listed %v, owner %s", sh.Primary.Addr, sh.Name, n, got[n], r.ShardOf(n))
			}
		}
	}
}

// TestShardKilled: SIGKILL of one shard's only process. The other shards
// keep serving; the dead shard's locks and names fail at once with a clear
// error (ErrConnLost for held handles, ErrShardUnavailable for new names),
// and a batch spanning the shards answers the live shards' entries.
func TestShardKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 3*time.Minute)
	c := newShardCluster(t, 3, 1)
	r := c.router(ctx, c.allAddrs()...)
	names := make([]string, 93)
	for i := range names {
		names[i] = fmt.Sprintf("k/%d", i)
	}
	locks := openAll(ctx, t, r, names)
	for _, l := range locks {
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	c.procs["s1"][0].kill()

	var dead, live []*dlock.Lock
	for _, l := range locks {
		if r.ShardOf(l.Name()) == "s1" {
			dead = append(dead, l)
		} else {
			live = append(live, l)
		}
	}
	if len(dead) == 0 || len(live) == 0 {
		t.Fatal("no lock on s1 or none elsewhere")
	}
	for _, l := range live {
		if err := l.Unlock(ctx); err != nil {
			t.Fatalf("%s on %s: %v", l.Name(), r.ShardOf(l.Name()), err)
		}
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatalf("%s: %v %v", l.Name(), ok, err)
		}
	}
	start := time.Now()
	for _, l := range dead {
		_, err := l.TryLock(ctx)
		if !errors.Is(err, dlock.ErrConnLost) {
			t.Fatalf("%s on the dead shard: %v", l.Name(), err)
		}
	}
	for i := 0; i < 200; i++ {
		nm := fmt.Sprintf("new/%d", i)
		if r.ShardOf(nm) != "s1" {
			continue
		}
		_, err := r.OpenLock(ctx, nm, dlock.LockOptions{Type: dlock.Atomic})
		if !errors.Is(err, dlock.ErrShardUnavailable) {
			t.Fatalf("open %s on the dead shard: %v", nm, err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the dead shard's calls took %v", d)
	}
	t.Logf("%d calls on the dead shard failed in %v", len(dead), time.Since(start))
	// A batch spanning all three shards: the live entries are answered.
	defer func() {
		// Restarted, the shard serves new names to the same router (which
		// dials it again: it has no automatic recovery).
		c.procs["s1"][0] = c.start("s1", c.addrs["s1"][0])
		var l *dlock.Lock
		name := ""
		for i := 0; r.ShardOf(name) != "s1"; i++ {
			name = fmt.Sprintf("again/%d", i)
		}
		err := retry(ctx, 20*time.Second, func(ctx context.Context) error {
			var err error
			l, err = r.OpenLock(ctx, name, dlock.LockOptions{})
			return err
		})
		if err != nil {
			t.Fatalf("open %s on the restarted shard: %v", name, err)
		}
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatalf("%s on the restarted shard: %v %v", name, ok, err)
		}
	}()
	reqs := make([]dlock.LockRequest, 0, dlock.MaxBatch)
	for _, l := range locks[:dlock.MaxBatch] {
		reqs = append(reqs, dlock.LockRequest{Lock: l})
	}
	res := make([]dlock.Result, dlock.MaxBatch)
	err := r.BatchTryLock(ctx, reqs, res)
	if !errors.Is(err, dlock.ErrConnLost) {
		t.Fatalf("batch across a dead shard: %v", err)
	}
	for i, q := range reqs {
		want := dlock.ErrAlreadyLocked // reentrant: held since the loop above
		if r.ShardOf(q.Lock.Name()) == "s1" {
			want = dlock.ErrBadResponse
		}
		if res[i].Status != want {
			t.Errorf("entry %d (%s): %v, want %v", i, r.ShardOf(q.Lock.Name()), res[i].Status, want)
		}
	}
}

// TestShardFailover: three shards of two dlockd each. SIGKILL of one
// shard's primary: its standby takes over and the router's Client of that
// shard recovers every hold (kept by the holder, refused to another
// client), while the other shards serve throughout.
func TestShardFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 3*time.Minute)
	c := newShardCluster(t, 3, 2)
	reports := make(chan dlock.RecoveryReport, 16)
	r, err := dlock.DialRouter(ctx, &dlock.Config{Addrs: []string{c.addrs["s0"][1]}, AutoRecover: true,
		SessionTimeout: 5 * time.Second, DialTimeout: 2 * time.Second,
		OnRecover: func(rep dlock.RecoveryReport) { reports <- rep }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	names := make([]string, 93)
	for i := range names {
		names[i] = fmt.Sprintf("f/%d", i)
	}
	locks := openAll(ctx, t, r, names)
	for _, l := range locks {
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	st := c.read()
	var victim string
	for _, s := range st.Shards {
		if s.Name == "s1" {
			victim = s.Primary.Addr
		}
	}
	for i, a := range c.addrs["s1"] {
		if a == victim {
			c.procs["s1"][i].kill()
		}
	}
	killed := time.Now()
	// The other shards serve throughout s1's failover.
	stop := make(chan struct{})
	served := make(chan error, 1)
	calls := 0
	go func() {
		for {
			for _, l := range locks {
				select {
				case <-stop:
					served <- nil
					return
				default:
				}
				if r.ShardOf(l.Name()) == "s1" {
					continue
				}
				if err := l.Unlock(ctx); err != nil {
					served <- fmt.Errorf("%s during s1's failover: %v", l.Name(), err)
					return
				}
				if ok, err := l.TryLock(ctx); !ok || err != nil {
					served <- fmt.Errorf("%s during s1's failover: %v %v", l.Name(), ok, err)
					return
				}
				calls += 2
			}
		}
	}()
	for done := false; !done; {
		select {
		case rep := <-reports:
			if rep.Retrying {
				continue
			}
			if len(rep.Lost) != 0 || rep.Err != nil || !rep.NewPrimary || rep.Shard != "s1" {
				t.Fatalf("recovery of s1: shard %q, lost %d, err %v, new primary %v", rep.Shard, len(rep.Lost), rep.Err, rep.NewPrimary)
			}
			done = true
		case <-time.After(30 * time.Second):
			t.Fatal("s1's client did not recover within 30 s")
		}
	}
	recovered := time.Since(killed)
	close(stop)
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Fatal("no call on the other shards during the failover")
	}
	t.Logf("other shards served %d calls during s1's failover; s1 recovered %v after the kill", calls, recovered)
	other := c.router(ctx, c.allAddrs()...)
	others := openAll(ctx, t, other, names)
	for i, l := range locks {
		if !l.Held() {
			t.Fatalf("%s lost", l.Name())
		}
		if ok, err := others[i].TryLock(ctx); ok || err != nil {
			t.Fatalf("%s on %s after the failover: granted to another client %v, %v", l.Name(), r.ShardOf(l.Name()), ok, err)
		}
	}
}

// TestShardRestart: a shard's only process is killed and started again.
// The router's Client of that shard (AutoRecover) re-registers with it and
// re-uploads its holds, which are kept; the shard serves new names again.
func TestShardRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 3*time.Minute)
	c := newShardCluster(t, 3, 1)
	reports := make(chan dlock.RecoveryReport, 16)
	r, err := dlock.DialRouter(ctx, &dlock.Config{Addrs: c.allAddrs(), AutoRecover: true,
		SessionTimeout: 5 * time.Second, DialTimeout: 2 * time.Second,
		OnRecover: func(rep dlock.RecoveryReport) { reports <- rep }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	names := make([]string, 62)
	for i := range names {
		names[i] = fmt.Sprintf("r/%d", i)
	}
	locks := openAll(ctx, t, r, names)
	held := 0
	for _, l := range locks {
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatal(ok, err)
		}
		if r.ShardOf(l.Name()) == "s1" {
			held++
		}
	}
	c.procs["s1"][0].kill()
	c.procs["s1"][0] = c.start("s1", c.addrs["s1"][0])
	for done := false; !done; {
		select {
		case rep := <-reports:
			if rep.Retrying {
				continue
			}
			if len(rep.Lost) != 0 || rep.Err != nil || len(rep.Kept) != held {
				t.Fatalf("recovery of s1: kept %d of %d, lost %d, err %v", len(rep.Kept), held, len(rep.Lost), rep.Err)
			}
			done = true
		case <-time.After(30 * time.Second):
			t.Fatal("s1's client did not recover within 30 s")
		}
	}
	other := c.router(ctx, c.allAddrs()...)
	others := openAll(ctx, t, other, names)
	for i, l := range locks {
		if ok, err := others[i].TryLock(ctx); ok || err != nil || !l.Held() {
			t.Fatalf("%s on %s after the restart: held %v, other got %v %v", l.Name(), r.ShardOf(l.Name()), l.Held(), ok, err)
		}
	}
	for i := 0; i < 100; i++ {
		nm := fmt.Sprintf("after/%d", i)
		if r.ShardOf(nm) != "s1" {
			continue
		}
		l, err := r.OpenLock(ctx, nm, dlock.LockOptions{})
		if err != nil {
			t.Fatalf("open %s on the restarted shard: %v", nm, err)
		}
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatalf("%s: %v %v", nm, ok, err)
		}
	}
}

// TestShardsInitCommand: dlockctl cluster init writes the slot map before
// any server runs (a second init is refused), and dlockd -shard without
// -shards serves its part of it.
func TestShardsInitCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 2*time.Minute)
	etcd := startEtcd(t, 1)
	c := &shardCluster{t: t, eps: endpoints(etcd), name: t.Name(), shards: []string{"x", "y"},
		addrs: map[string][]string{}, procs: map[string][]*proc{}}
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command(buildDlockctl(t), append([]string{"cluster"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := ctl("init", "-etcd", c.eps, "-cluster", c.name, "-shards", "x,y"); err != nil {
		t.Fatalf("cluster init: %v\n%s", err, out)
	}
	if out, err := ctl("init", "-etcd", c.eps, "-cluster", c.name, "-shards", "x,y,z"); err == nil || !strings.Contains(out, "already") {
		t.Fatalf("a second cluster init: %v\n%s", err, out)
	}
	for _, s := range c.shards {
		addr := freeAddr(t)
		c.addrs[s] = []string{addr}
		c.procs[s] = []*proc{startProc(t, "listening", buildDlockd(t), "-addr", addr, "-etcd", c.eps,
			"-cluster", c.name, "-etcd-ttl", ttl.String(), "-shard", s)}
	}
	st := c.waitPrimaries(1)
	if len(st.Shards) != 2 || st.Shards[0].Slots[0] != [2]int{0, 511} || st.Shards[1].Slots[0] != [2]int{512, 1023} {
		t.Fatalf("map: %+v", st)
	}
	c.waitMaps(1)
	r := c.router(ctx, c.addrs["y"][0])
	names := make([]string, 62)
	per := map[string]int{}
	for i := range names {
		names[i] = fmt.Sprintf("i/%d", i)
		per[r.ShardOf(names[i])]++
	}
	for _, l := range openAll(ctx, t, r, names) {
		if ok, err := l.TryLock(ctx); !ok || err != nil {
			t.Fatal(ok, err)
		}
	}
	if per["x"] == 0 || per["y"] == 0 {
		t.Fatalf("names per shard: %v", per)
	}
}
