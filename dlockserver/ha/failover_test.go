package ha_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// haClient dials the cluster with automatic recovery and collects its
// recovery reports.
type haClient struct {
	*dlock.Client
	reports chan dlock.RecoveryReport
}

func (c *cluster) dial(ctx context.Context, seed int) *haClient {
	c.t.Helper()
	hc := &haClient{reports: make(chan dlock.RecoveryReport, 64)}
	cfg := &dlock.Config{AutoRecover: true, Addrs: c.addrs, SessionTimeout: 5 * time.Second,
		DialTimeout: 2 * time.Second, OnRecover: func(r dlock.RecoveryReport) { hc.reports <- r }}
	var err error
	for i := 0; i < 100; i++ {
		hc.Client, err = dlock.Dial(ctx, c.addrs[seed], cfg)
		if err == nil {
			c.t.Cleanup(func() { hc.Close() })
			return hc
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("dial: %v", err)
	return nil
}

// awaitReport waits for cl's next recovery report.
func awaitReport(t *testing.T, cl *haClient) dlock.RecoveryReport {
	t.Helper()
	select {
	case r := <-cl.reports:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("no recovery report within 30 s")
		return dlock.RecoveryReport{}
	}
}

// retry runs f until it succeeds, for at most d.
func retry(ctx context.Context, d time.Duration, f func(context.Context) error) error {
	end := time.Now().Add(d)
	var err error
	for time.Now().Before(end) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err = f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return err
}

// firstGrant opens name on c and takes it, retrying through the failover;
// it returns the grant's token.
func firstGrant(ctx context.Context, c *haClient, name string) (uint64, error) {
	var l *dlock.Lock
	var tok uint64
	err := retry(ctx, 20*time.Second, func(ctx context.Context) error {
		var err error
		if l == nil {
			if l, err = c.OpenLock(ctx, name, dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute}); err != nil {
				return err
			}
		}
		ok, err := l.TryLock(ctx)
		if err != nil {
			if errors.Is(err, dlock.ErrLockNotGet) {
				l = nil
			}
			return err
		}
		if !ok {
			return errors.New("not granted")
		}
		tok = l.Token()
		return nil
	})
	return tok, err
}

// held is a lock a client holds and the handle another client has on it.
type held struct {
	own, other *dlock.Lock
	shared     bool
}

// TestFailoverCrash: etcd and two dlockd, eight clients holding about a
// thousand locks of the three types; the primary is killed with SIGKILL,
// again and again (restarted as a standby each time). After each failover
// every hold is kept by its holder and refused to the others, the first new
// grant comes within the lease TTL + 1 s of the kill, and its token is
// above every token issued before.
func TestFailoverCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	rounds := 10
	if s := os.Getenv("DLOCK_HA_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	ctx := testCtx(t, 10*time.Minute)
	c := newCluster(t, 2, nil)
	c.start(0)
	c.waitMembers(1)
	c.start(1)
	c.waitMembers(2)

	const nclients, perClient = 8, 125
	clients := make([]*haClient, nclients)
	for i := range clients {
		clients[i] = c.dial(ctx, i%2)
	}
	probe := c.dial(ctx, 0)
	var holds []held
	var maxToken uint64
	types := []dlock.LockType{dlock.Atomic, dlock.RW, dlock.Fair}
	for i, cl := range clients {
		other := clients[(i+1)%nclients]
		for j := 0; j < perClient; j++ {
			typ := types[j%3]
			name := fmt.Sprintf("c%d/%d", i, j)
			opts := dlock.LockOptions{Type: typ, TTL: 10 * time.Minute}
			own, err := cl.OpenLock(ctx, name, opts)
			if err != nil {
				t.Fatal(err)
			}
			oth, err := other.OpenLock(ctx, name, opts)
			if err != nil {
				t.Fatal(err)
			}
			var ok bool
			shared := typ == dlock.RW && j%2 == 0
			if shared {
				ok, err = own.TryRLock(ctx)
			} else {
				ok, err = own.TryLock(ctx)
			}
			if err != nil || !ok {
				t.Fatalf("lock %s: %v %v", name, ok, err)
			}
			maxToken = max(maxToken, own.Token())
			holds = append(holds, held{own: own, other: oth, shared: shared})
		}
	}
	t.Logf("%d clients hold %d locks", nclients, len(holds))
	// Objects are lost on failover, and the application is told.
	counter, err := clients[0].CreateAtomic64(ctx, "counter", 7, dlock.Atomic64Options{})
	if err != nil {
		t.Fatal(err)
	}

	var times []time.Duration
	for round := 0; round < rounds; round++ {
		p := c.waitMembers(2)
		kill := time.Now()
		c.procs[p].kill()
		tok, err := firstGrant(ctx, probe, fmt.Sprintf("probe/%d", round))
		if err != nil {
			t.Fatalf("round %d: no grant after the kill: %v", round, err)
		}
		d := time.Since(kill)
		times = append(times, d)
		if tok <= maxToken {
			t.Errorf("round %d: token %d after the failover, not above %d issued before", round, tok, maxToken)
		}
		maxToken = tok
		if d > ttl+time.Second {
			t.Errorf("round %d: first grant %v after the kill, beyond TTL + 1 s", round, d)
		}
		// Every client recovered with all its holds.
		for i, cl := range clients {
			var rep dlock.RecoveryReport
			select {
			case rep = <-cl.reports:
			case <-time.After(20 * time.Second):
				t.Fatalf("round %d: client %d did not recover", round, i)
			}
			if rep.Err != nil || len(rep.Lost) != 0 || len(rep.Kept) != perClient {
				t.Fatalf("round %d: client %d: kept %d lost %d err %v", round, i, len(rep.Kept), len(rep.Lost), rep.Err)
			}
			if wantObj := round == 0 && i == 0; (len(rep.LostObjects) == 1 && rep.LostObjects[0] == counter) != wantObj {
				t.Fatalf("round %d: client %d reports lost objects %v", round, i, rep.LostObjects)
			}
		}
		awaitReport(t, probe)
		for _, h := range holds {
			if !h.own.Held() {
				t.Fatalf("round %d: %s not held any more", round, h.own.Name())
			}
			ok, err := h.other.TryLock(ctx)
			if err != nil || ok {
				t.Fatalf("round %d: %s granted to another client (%v, %v)", round, h.own.Name(), ok, err)
			}
		}
		if round == 0 {
			if _, err := counter.FetchAndAdd(ctx, 1); err == nil {
				t.Fatal("an object survived the failover")
			}
		}
		c.start(p)
	}
	t.Logf("kill → first new grant, %d failovers: %v", rounds, times)
}

// TestFailoverStandbyRedirects: a client given only the standby's address
// is redirected to the primary; a raw registration at the standby is
// answered with the redirect status.
func TestFailoverStandbyRedirects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 2*time.Minute)
	c := newCluster(t, 2, nil)
	c.start(0)
	c.waitMembers(1)
	c.start(1)
	p := c.waitMembers(2)
	sb := 1 - p
	cl, err := dlock.Dial(ctx, c.addrs[sb], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if cl.Epoch() == 0 {
		t.Fatal("no epoch from the primary")
	}
	l, err := cl.OpenLock(ctx, "x", dlock.LockOptions{Type: dlock.Atomic})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	addr, st := rawRegister(t, c.addrs[sb])
	if st != redirectStatus || addr != c.addrs[p] {
		t.Fatalf("standby answered status %#x naming %q, want the redirect to %s", st, addr, c.addrs[p])
	}

	// The operator's view.
	out, err := exec.Command("go", "run", "github.com/dlock-io/dlock/cmd/dlockctl", "cluster", "-etcd", c.eps, "-cluster", c.name).CombinedOutput()
	if err != nil {
		t.Fatalf("dlockctl cluster: %v\n%s", err, out)
	}
	want := fmt.Sprintf("primary  %s  epoch %d\nstandby  %s\nclients  1 registered\n", c.addrs[p], cl.Epoch(), c.addrs[sb])
	if !strings.Contains(string(out), want) {
		t.Fatalf("dlockctl cluster printed\n%s\nwant it to contain\n%s", out, want)
	}
}

// TestFailoverTLS: a cluster whose members require mutual TLS; a client
// given the standby's address is redirected to the primary over TLS, and
// after a SIGKILL of the primary recovers on the other member, keeping its
// lock.
func TestFailoverTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	ctx := testCtx(t, 2*time.Minute)
	pki := dlocktest.NewPKI(t, "")
	srvCert, cliCert := pki.Issue("server", dlocktest.CertOptions{}), pki.Issue("client", dlocktest.CertOptions{})
	c := newCluster(t, 2, nil)
	for i := range c.extra {
		c.extra[i] = []string{"-tls-ca", pki.CAFile, "-tls-cert", srvCert.CertFile, "-tls-key", srvCert.KeyFile}
	}
	c.start(0)
	c.waitMembers(1)
	c.start(1)
	p := c.waitMembers(2)
	reports := make(chan dlock.RecoveryReport, 4)
	cl, err := dlock.Dial(ctx, c.addrs[1-p], &dlock.Config{TLS: pki.TLS(cliCert), AutoRecover: true, Addrs: c.addrs,
		OnRecover: func(r dlock.RecoveryReport) { reports <- r }})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	l, err := cl.OpenLock(ctx, "x", dlock.LockOptions{Type: dlock.Atomic, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(ctx); !ok || err != nil {
		t.Fatal(ok, err)
	}
	c.procs[p].kill()
	select {
	case r := <-reports:
		if r.Err != nil || len(r.Kept) != 1 || !r.NewPrimary {
			t.Fatalf("recovery over TLS: %+v", r)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no recovery over TLS")
	}
}
