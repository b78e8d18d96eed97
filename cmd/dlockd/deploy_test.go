package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const repoRoot = "../.."

// TestDockerfile checks deploy/Dockerfile: a multi-stage build of static
// binaries run as a non-root user. The binaries are built the way it
// builds them (without -trimpath, to share the build cache) and checked to
// be static; the image itself is built and run
// when Docker is available (the test says so and skips the build if not).
func TestDockerfile(t *testing.T) {
	df, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(df)
	if n := len(regexp.MustCompile(`(?m)^FROM `).FindAllString(text, -1)); n < 2 {
		t.Errorf("Dockerfile has %d stages, want a multi-stage build", n)
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(text)
	if user == nil || strings.HasPrefix(user[1], "root") || strings.HasPrefix(user[1], "0") {
		t.Errorf("Dockerfile USER %v; want a non-root user", user)
	}
	if !strings.Contains(text, "CGO_ENABLED=0 go build") {
		t.Error("Dockerfile does not build with CGO_ENABLED=0")
	}

	// The same build, here: the binary must need no dynamic loader.
	bin := filepath.Join(t.TempDir(), "dlockd")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the CGO_ENABLED=0 build has a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the CGO_ENABLED=0 build links %v", libs)
	}

	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("Docker is not available (docker info: %v; %s): the image was not built", err, firstLine(out))
	}
	tag := fmt.Sprintf("dlock-test:%d", time.Now().UnixNano())
	build := exec.Command("docker", "build", "-f", "deploy/Dockerfile", "--build-arg", "REVISION=feedface", "-t", tag, ".")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	defer exec.Command("docker", "rmi", "-f", tag).Run()
	out, err := exec.Command("docker", "run", "--rm", tag, "-version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "revision feedface") {
		t.Errorf("docker run %s -version: %v\n%s", tag, err, out)
	}
	out, err = exec.Command("docker", "image", "inspect", "-f", "{{.Config.User}}", tag).Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.HasPrefix(string(out), "root") {
		t.Errorf("image user %q, %v; want a non-root user", out, err)
	}
}

// firstLine returns docker's error line (the client prints its own
// information first).
func firstLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "error") || strings.Contains(l, "Cannot connect") {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(lines[len(lines)-1])
}

// TestSystemdUnit verifies deploy/dlockd.service with systemd-analyze,
// pointed at a freshly built dlockd: no unknown keys, no errors.
func TestSystemdUnit(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing (Debian package systemd; .ci/run installs it)")
		}
		t.Skip("systemd-analyze is missing (Debian package systemd)")
	}
	unit, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "dlockd.service"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := buildDlockd(t)
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/dlockd\n") {
		t.Fatal("the unit does not start /usr/local/bin/dlockd")
	}
	path := filepath.Join(dir, "dlockd.service")
	if err := os.WriteFile(path, []byte(strings.Replace(string(unit), "/usr/local/bin/dlockd", bin, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "dlockd.service") {
			t.Errorf("systemd-analyze: %s", line)
		}
	}
}
