package dlock_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules keeps the project's layering checkable: each package
// may import directly only the project packages listed for it (and the
// standard library). The client (root package) stays standard-library only
// apart from internal/wire, internal/mtls and internal/cshim, the door
// through which only the C ABI layer (capi) reaches the client's C
// semantics.
func TestImportRules(t *testing.T) {
	const mod = "github.com/dlock-io/dlock"
	allowed := map[string][]string{
		"internal/wire":       {},
		"internal/mtls":       {},
		"internal/cshim":      {},
		"internal/clientmap":  {},
		"internal/lockcore":   {"", "internal/clientmap"},
		"internal/umo":        {"", "internal/clientmap"},
		"internal/scripttest": {},
		"":                    {"internal/wire", "internal/mtls", "internal/cshim"},
		"dlockserver":         {"", "internal/wire", "internal/mtls", "internal/lockcore", "internal/umo"},
		"dlockserver/ha":      {"dlockserver"},
		"capi":                {"", "dlockserver", "internal/cshim"},
	}
	for pkg, ok := range allowed {
		path := mod
		if pkg != "" {
			path += "/" + pkg
		}
		out, err := exec.Command("go", "list", "-f", `{{join .Imports " "}}`, path).Output()
		if err != nil {
			t.Fatalf("go list %s: %v", path, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if !strings.HasPrefix(dep, mod) {
				continue
			}
			rel := strings.TrimPrefix(strings.TrimPrefix(dep, mod), "/")
			permitted := false
			for _, a := range ok {
				permitted = permitted || a == rel
			}
			if !permitted {
				t.Errorf("%s depends on %s, which the layering does not allow", path, dep)
			}
		}
	}
}

// TestScripttestOnlyInTests: the script-test harness is linked only into
// test binaries.
func TestScripttestOnlyInTests(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, " github.com/dlock-io/dlock/internal/scripttest") {
			t.Errorf("%s imports internal/scripttest outside its tests", strings.Fields(line)[0])
		}
	}
}

// TestNoThirdPartyInLibraries: the client library, the embeddable server
// and dlocktest link only the standard library and the module: the
// Prometheus client stays in dlockserver/dlockhttp and the etcd client in
// dlockserver/ha, which only the daemon and embedders that want them import.
func TestNoThirdPartyInLibraries(t *testing.T) {
	const mod = "github.com/dlock-io/dlock"
	for _, path := range []string{mod, mod + "/dlockserver", mod + "/dlocktest"} {
		out, err := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.ImportPath}}{{end}}`, path).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", path, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if dep != mod && !strings.HasPrefix(dep, mod+"/") {
				t.Errorf("%s depends on %s, outside the standard library", path, dep)
			}
		}
	}
	out, err := exec.Command("go", "list", "-deps", mod+"/dlockserver/ha").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "go.etcd.io/etcd/client/v3") {
		t.Error("dlockserver/ha no longer uses the etcd client: update this test")
	}
}
