package ha_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-io/dlock/dlockserver/ha"
	"github.com/dlock-io/dlock/internal/wire"
)

// The tests run a real etcd (Debian's etcd-server package, the etcd binary
// on PATH) and real dlockd processes, signalled by pid.

func etcdPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("etcd is not installed (apt-get install etcd-server): the HA tests need a real etcd")
		}
		t.Skip("etcd not installed (apt-get install etcd-server)")
	}
	return p
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// etcdMember is one etcd process.
type etcdMember struct {
	name, client, peer, dir string
	cluster                 string // --initial-cluster
	proc                    *proc
}

// startEtcd starts an etcd cluster of n members on loopback.
func startEtcd(t testing.TB, n int) []*etcdMember {
	t.Helper()
	bin := etcdPath(t)
	ms := make([]*etcdMember, n)
	var parts []string
	for i := range ms {
		ms[i] = &etcdMember{name: fmt.Sprintf("m%d", i), client: "http://" + freeAddr(t), peer: "http://" + freeAddr(t),
			dir: filepath.Join(t.TempDir(), "etcd")}
		parts = append(parts, ms[i].name+"="+ms[i].peer)
	}
	for _, m := range ms {
		m.cluster = strings.Join(parts, ",")
		m.start(t, bin, "new")
	}
	waitEtcd(t, ms)
	return ms
}

func (m *etcdMember) start(t testing.TB, bin, state string) {
	t.Helper()
	m.proc = startProc(t, "", bin, "--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", m.cluster, "--initial-cluster-state", state,
		"--initial-cluster-token", "dlock-test", "--logger", "zap", "--log-level", "error",
		"--heartbeat-interval", "50", "--election-timeout", "500")
}

func endpoints(ms []*etcdMember) string {
	var eps []string
	for _, m := range ms {
		eps = append(eps, m.client)
	}
	return strings.Join(eps, ",")
}

func waitEtcd(t testing.TB, ms []*etcdMember) {
	t.Helper()
	cli, err := ha.Dial(strings.Split(endpoints(ms), ","), nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i := 0; i < 200; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err = cli.Get(ctx, "ready")
		cancel()
		if err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("etcd did not start: %v", err)
}

// proc is a process the test started; it is killed by pid at the end.
type proc struct {
	cmd  *exec.Cmd
	pid  int
	done chan struct{}
}

func startProc(t testing.TB, ready string, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &prefixWriter{t: t, name: filepath.Base(bin)}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	br := bufio.NewReader(stdout)
	if ready != "" {
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, ready) {
			syscall.Kill(p.pid, syscall.SIGKILL)
			t.Fatalf("%s did not start: %q %v", bin, line, err)
		}
	}
	go func() {
		io.Copy(io.Discard, br)
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.kill)
	return p
}

func (p *proc) signal(sig syscall.Signal) { syscall.Kill(p.pid, sig) }

// kill sends SIGKILL (after SIGCONT, in case it is stopped) and waits.
func (p *proc) kill() {
	syscall.Kill(p.pid, syscall.SIGKILL)
	syscall.Kill(p.pid, syscall.SIGCONT)
	<-p.done
}

// prefixWriter sends a process's stderr to the test log.
type prefixWriter struct {
	t    testing.TB
	name string
	mu   sync.Mutex
	done bool
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && os.Getenv("DLOCK_HA_VERBOSE") != "" {
		w.t.Logf("%s: %s", w.name, strings.TrimRight(string(b), "\n"))
	}
	return len(b), nil
}

var (
	dlockdOnce sync.Once
	dlockdBin  string
	dlockdErr  error
)

// buildDlockd compiles cmd/dlockd once per test binary.
func buildDlockd(t *testing.T) string {
	t.Helper()
	dlockdOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dlockd-ha-")
		if err != nil {
			dlockdErr = err
			return
		}
		dlockdBin = filepath.Join(dir, "dlockd")
		out, err := exec.Command("go", "build", "-o", dlockdBin, "github.com/dlock-io/dlock/cmd/dlockd").CombinedOutput()
		if err != nil {
			dlockdErr = fmt.Errorf("go build ./cmd/dlockd: %v\n%s", err, out)
		}
	})
	if dlockdErr != nil {
		t.Fatal(dlockdErr)
	}
	return dlockdBin
}

// cluster is etcd plus dlockd members.
type cluster struct {
	t     *testing.T
	etcd  []*etcdMember
	eps   string
	name  string
	addrs []string
	procs []*proc
	extra [][]string // per member extra flags
}

const ttl = 2 * time.Second

func newCluster(t *testing.T, members int, etcd []*etcdMember) *cluster {
	t.Helper()
	if etcd == nil {
		etcd = startEtcd(t, 1)
	}
	c := &cluster{t: t, etcd: etcd, eps: endpoints(etcd), name: strings.ReplaceAll(t.Name(), "/", "_")}
	for i := 0; i < members; i++ {
		c.addrs = append(c.addrs, freeAddr(t))
		c.procs = append(c.procs, nil)
		c.extra = append(c.extra, nil)
	}
	return c
}

// start starts member i (again) with the cluster's flags plus extra.
func (c *cluster) start(i int, extra ...string) *proc {
	c.t.Helper()
	args := []string{"-addr", c.addrs[i], "-log-level", "info", "-etcd", c.eps, "-cluster", c.name,
		"-etcd-ttl", ttl.String(), "-session-timeout", "5s"}
	args = append(args, c.extra[i]...)
	args = append(args, extra...)
	p := startProc(c.t, "listening", buildDlockd(c.t), args...)
	c.procs[i] = p
	return p
}

// status reads the cluster from etcd.
func (c *cluster) status() ha.Status {
	c.t.Helper()
	cli, err := ha.Dial(strings.Split(c.eps, ","), nil, 5*time.Second)
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	// A read can stall for seconds on a loaded machine (etcd fsyncs on a
	// shared disk): three tries before giving up.
	for try := 0; try < 3; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var st ha.Status
		st, err = ha.ReadStatus(ctx, cli, c.name)
		cancel()
		if err == nil {
			return st
		}
	}
	c.t.Fatal(err)
	return ha.Status{}
}

// waitMembers waits until n members campaign and returns the primary's
// index.
func (c *cluster) waitMembers(n int) int {
	c.t.Helper()
	for i := 0; i < 300; i++ {
		st := c.status()
		if st.Primary != nil && 1+len(st.Standbys) >= n {
			for j, a := range c.addrs {
				if a == st.Primary.Addr {
					return j
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("cluster did not reach %d members", n)
	return -1
}

const redirectStatus = wire.StatusRedirect

// rawRegister sends a TInit to addr and returns the reply status and, for
// a redirect, the address it names.
func rawRegister(t *testing.T, addr string) (string, int32) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	m := wire.Init{MinVersion: wire.Version}
	if _, err := nc.Write(m.Append(nil, wire.TInit, 1, 0)); err != nil {
		t.Fatal(err)
	}
	var h wire.Header
	body, err := wire.ReadFrame(nc, &h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.Status() != wire.StatusRedirect {
		return "", h.Status()
	}
	var r wire.Redirect
	if err := r.Decode(body); err != nil {
		t.Fatal(err)
	}
	return r.Addr, h.Status()
}
