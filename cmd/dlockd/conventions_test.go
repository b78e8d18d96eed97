package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/dlocktest"
)

// TestVersionAndHelp: -version prints the revision the binary was built
// from and exits 0; -h prints the usage and exits 0.
func TestVersionAndHelp(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "dlockd")
	const rev = "0123456789abcdef0123456789abcdef01234567"
	out, err := exec.Command("go", "build", "-o", bin,
		"-ldflags", "-X github.com/dlock-io/dlock/internal/buildinfo.revision="+rev, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatalf("dlockd -version: %v", err)
	}
	if !strings.HasPrefix(string(out), "dlockd version ") || !strings.Contains(string(out), "revision "+rev) {
		t.Errorf("dlockd -version printed %q; want the version and revision %s", out, rev)
	}
	// When the toolchain stamped the VCS revision itself, that is what
	// -version reports.
	if m, err := exec.Command("go", "version", "-m", bin).Output(); err == nil {
		for _, line := range strings.Split(string(m), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "build" && strings.HasPrefix(f[1], "vcs.revision=") {
				if want := strings.TrimPrefix(f[1], "vcs.revision="); !strings.Contains(string(out), want) {
					t.Errorf("-version %q lacks the stamped revision %s", out, want)
				}
			}
		}
	}

	cmd := exec.Command(bin, "-h")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("dlockd -h: %v; want exit status 0", err)
	}
	if !strings.Contains(stderr.String(), "DLOCKD_MAX_CLIENTS") || !strings.Contains(stderr.String(), "-max-clients") {
		t.Errorf("dlockd -h printed no usage with the environment variables:\n%s", stderr.String())
	}
	if err := exec.Command(bin, "-no-such-flag").Run(); err == nil {
		t.Error("dlockd -no-such-flag exited 0")
	}
}

func TestFlagsFromEnv(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	n := fs.Int("max-clients", 1, "")
	d := fs.Duration("session-timeout", time.Second, "")
	env := map[string]string{"DLOCKD_MAX_CLIENTS": "7", "DLOCKD_SESSION_TIMEOUT": "3s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := flagsFromEnv(fs, "DLOCKD_", lookup); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-session-timeout", "5s"}); err != nil {
		t.Fatal(err)
	}
	if *n != 7 || *d != 5*time.Second {
		t.Errorf("max-clients %d, session-timeout %v; want 7 from the environment and 5s from the command line", *n, *d)
	}
	env["DLOCKD_MAX_CLIENTS"] = "many"
	if err := flagsFromEnv(fs, "DLOCKD_", lookup); err == nil || !strings.Contains(err.Error(), "DLOCKD_MAX_CLIENTS") {
		t.Errorf("bad value: error %v; want one naming the variable", err)
	}
}

// TestStructuredStartupAndDebugLogs runs dlockd configured only through
// DLOCKD_* variables: the startup line is a JSON record like the log's, and
// the debug log reports connect, register, eviction and deregister with the
// client id and remote address.
func TestStructuredStartupAndDebugLogs(t *testing.T) {
	bin := buildDlockd(t)
	addr := freePort(t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DLOCKD_ADDR="+addr, "DLOCKD_LOG_FORMAT=json", "DLOCKD_LOG_LEVEL=debug",
		"DLOCKD_MAX_CLIENTS=1", "DLOCKD_SESSION_TIMEOUT=-1s")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGKILL)
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		t.Fatalf("no startup line; stderr:\n%s", stderr)
	}
	var start map[string]any
	if err := json.Unmarshal(sc.Bytes(), &start); err != nil {
		t.Fatalf("startup line %q is not a JSON record: %v", sc.Text(), err)
	}
	if start["msg"] != "dlockd listening" || start["addr"] != addr || start["level"] != "INFO" || start["time"] == nil || start["version"] == nil {
		t.Errorf("startup record %v; want msg, level, time, version and addr %s", start, addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.Close() // abnormal: kept until evicted
	for i := 0; !strings.Contains(stderr.String(), `"msg":"client connection lost"`); i++ {
		if i == 500 {
			t.Fatalf("the server did not notice the lost connection:\n%s", stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b, err := dlock.Dial(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	want := []struct {
		msg    string
		client int32
	}{
		{"connection accepted", 0},
		{"client registered", a.ID()},
		{"evicting abnormal client to make room", a.ID()},
		{"client registered", b.ID()},
		{"client deregistered", b.ID()},
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, w := range want {
		for found := false; !found; {
			for _, line := range strings.Split(stderr.String(), "\n") {
				var rec map[string]any
				if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != w.msg {
					continue
				}
				remote, _ := rec["remote"].(string)
				id, _ := rec["client"].(float64)
				if strings.HasPrefix(remote, "127.0.0.1:") && (w.client == 0 || int32(id) == w.client) {
					found = true
				}
			}
			if !found && time.Now().After(deadline) {
				t.Fatalf("no log record %q for client %d with its remote address:\n%s", w.msg, w.client, stderr)
			}
			if !found {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
}

// TestAdminCN: with mutual TLS, only the certificates named by -admin-cn
// may list locks.
func TestAdminCN(t *testing.T) {
	bin := buildDlockd(t)
	pki := dlocktest.NewPKI(t, "")
	server := pki.Issue("server", dlocktest.CertOptions{})
	addr, _ := startDlockd(t, bin, "-tls-ca", pki.CAFile, "-tls-cert", server.CertFile, "-tls-key", server.KeyFile,
		"-admin-cn", "ops-a, operator")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range []struct {
		cn    string
		admin bool
	}{{"client", false}, {"operator", true}} {
		cl, err := dlock.Dial(ctx, addr, &dlock.Config{TLS: pki.TLS(pki.Issue(c.cn, dlocktest.CertOptions{}))})
		if err != nil {
			t.Fatal(err)
		}
		_, err = cl.Locks(ctx, "")
		if c.admin && err != nil || !c.admin && !errors.Is(err, dlock.ErrGeneric) {
			t.Errorf("Locks with certificate %q: %v (admin: %v)", c.cn, err, c.admin)
		}
		cl.Close()
	}
	var out, errw strings.Builder
	if err := run([]string{"-admin-cn", "x"}, &out, &errw); err == nil {
		t.Error("-admin-cn without TLS accepted")
	}
}
