// Package buildinfo reports the version of the running binary from the
// information the Go toolchain embeds in it (module version, VCS revision).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Info is what the binary knows about its own build.
type Info struct {
	Version   string // module version, "(devel)" for a build from a checkout
	Revision  string // VCS revision, "" if the build did not record one
	Time      string // commit time (RFC 3339), "" if unknown
	Modified  bool   // the working tree had uncommitted changes
	GoVersion string
}

// revision and version may be set at link time for builds without VCS
// information (a source tarball, a container build without .git, a git
// worktree, -buildvcs=false):
//
//	go build -ldflags "-X github.com/dlock-io/dlock/internal/buildinfo.revision=$(git rev-parse HEAD)"
//
// What the toolchain recorded takes precedence.
var revision, version string

// Read returns the build information of the running binary.
func Read() Info {
	info := Info{Version: "(unknown)", GoVersion: runtime.Version()}
	if version != "" {
		info.Version = version
	}
	info.Revision = revision
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if bi.Main.Version != "" && (version == "" || bi.Main.Version != "(devel)") {
		info.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// String formats the information as a -version line for program name.
func (i Info) String() string {
	rev := i.Revision
	if rev == "" {
		rev = "unknown"
	}
	if i.Modified {
		rev += "+dirty"
	}
	s := fmt.Sprintf("version %s, revision %s", i.Version, rev)
	if i.Time != "" {
		s += ", committed " + i.Time
	}
	return s + ", " + i.GoVersion
}
