package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	i := Info{Version: "v1.2.3", Revision: "abc123", Time: "2026-01-02T03:04:05Z", Modified: true, GoVersion: "go1.25.0"}
	if got, want := i.String(), "version v1.2.3, revision abc123+dirty, committed 2026-01-02T03:04:05Z, go1.25.0"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	if got := (Info{Version: "(devel)", GoVersion: "go1.25.0"}).String(); got != "version (devel), revision unknown, go1.25.0" {
		t.Errorf("without a revision: %q", got)
	}
}

// TestLinkTimeRevision: a revision set at link time is reported when the
// toolchain recorded none (as in this test binary).
func TestLinkTimeRevision(t *testing.T) {
	old := revision
	defer func() { revision = old }()
	revision = "feedface"
	i := Read()
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	want := "feedface"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				want = s.Value // what the toolchain recorded wins
			}
		}
	}
	if i.Revision != want {
		t.Errorf("Revision %q, want %q", i.Revision, want)
	}
	if !strings.Contains(i.String(), "revision "+i.Revision) {
		t.Errorf("String() %q lacks the revision %q", i.String(), i.Revision)
	}
}
