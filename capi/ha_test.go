package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dlock-io/dlock/dlockserver/ha"
)

// TestCHACluster runs testdata/ha_cluster.c against a real cluster: etcd
// (Debian's etcd-server) and two dlockd processes, the primary on
// 127.0.0.1 and the standby on 127.0.0.2 at the same port (the C ABI names
// servers by IPv4 address only). The program kills the primary by pid.
// Without and with -durable-objects.
func TestCHACluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and dlockd processes")
	}
	prog, dlockd, client, _ := clusterSetup(t, "ha_cluster.c", "the C HA test")
	cli, err := ha.Dial([]string{client}, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	for i, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable=%v", durable), func(t *testing.T) {
			cluster := fmt.Sprintf("capi%d", i)
			port := freePorts(t, 1)[0]
			args := func(ip string) []string {
				a := []string{"-addr", net.JoinHostPort(ip, port), "-etcd", client, "-cluster", cluster,
					"-etcd-ttl", "2s", "-session-timeout", "5s"}
				if durable {
					a = append(a, "-durable-objects")
				}
				return a
			}
			primary := startBg(t, dlockd, args("127.0.0.1")...)
			waitCluster(t, cli, cluster, 1)
			startBg(t, dlockd, args("127.0.0.2")...)
			if p := waitCluster(t, cli, cluster, 2); p != net.JoinHostPort("127.0.0.1", port) {
				t.Fatalf("the primary is %s", p)
			}
			d := "0"
			if durable {
				d = "1"
			}
			out := run(t, prog, 2*time.Minute, port, strconv.Itoa(primary.Process.Pid), d)
			t.Log(out)
		})
	}
}

// startBg starts a process that the test kills (by pid) at its end.
func startBg(t *testing.T, bin string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(bin), stderr.String())
		}
	})
	return cmd
}

// waitCluster waits until n members campaign in cluster and returns the
// primary's address.
func waitCluster(t *testing.T, c *clientv3.Client, cluster string, n int) string {
	t.Helper()
	for i := 0; i < 400; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := ha.ReadStatus(ctx, c, cluster)
		cancel()
		if err == nil && st.Primary != nil && 1+len(st.Standbys) >= n {
			return st.Primary.Addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("cluster %s did not reach %d members", cluster, n)
	return ""
}

// clusterSetup prepares a C cluster test: it compiles testdata/src, builds
// dlockd, and starts a one-member etcd (Debian's etcd-server; under CI=true
// a missing etcd fails the test). It returns the program, the dlockd binary,
// etcd's client URL and three free ports, the first two taken by etcd.
func clusterSetup(t *testing.T, src, what string) (prog, dlockd, client string, ports []string) {
	t.Helper()
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("etcd is not installed (apt-get install etcd-server): %s needs a real etcd", what)
		}
		t.Skip("etcd not installed (apt-get install etcd-server)")
	}
	prog = compile(t, filepath.Join("testdata", src))
	dlockd = filepath.Join(t.TempDir(), "dlockd")
	if out, err := exec.Command("go", "build", "-o", dlockd, "github.com/dlock-io/dlock/cmd/dlockd").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dlockd: %v\n%s", err, out)
	}
	ports = freePorts(t, 3)
	client, peer := "http://127.0.0.1:"+ports[0], "http://127.0.0.1:"+ports[1]
	startBg(t, etcdBin, "--name", "m0", "--data-dir", filepath.Join(t.TempDir(), "etcd"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "m0="+peer, "--logger", "zap", "--log-level", "error")
	return prog, dlockd, client, ports
}
