package main

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// installed is one run of the documented build and install command, make
// install-capi, into a temporary prefix, shared by the tests of this file.
var installed struct {
	once   sync.Once
	prefix string
	err    error
}

func installTree(t *testing.T) string {
	t.Helper()
	requireTools(t)
	for _, tool := range []string{"make", "pkg-config"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is required: %v", tool, err)
			}
			t.Skipf("%s not found: %v", tool, err)
		}
	}
	installed.once.Do(func() {
		prefix, err := os.MkdirTemp("", "dlock-install-")
		if err != nil {
			installed.err = err
			return
		}
		installed.prefix = prefix
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		cmd := exec.Command("make", "-C", "..", "install-capi", "GO="+gobin, "PREFIX="+prefix,
			"CAPI_BUILD="+filepath.Join(prefix, "build"))
		if out, err := cmd.CombinedOutput(); err != nil {
			installed.err = fmt.Errorf("make install-capi: %v\n%s", err, out)
		}
	})
	if installed.err != nil {
		t.Fatal(installed.err)
	}
	return installed.prefix
}

// TestInstall checks the installed tree and builds a program the way users
// do: with pkg-config, and with DLock's link line -ldlockc -ldlocks
// -ldlockm; both record our versioned soname.
func TestInstall(t *testing.T) {
	t.Parallel()
	prefix := installTree(t)
	libdir := filepath.Join(prefix, "lib")
	links := map[string]string{
		"libdlock.so.0": "libdlock.so.0.1.0",
		"libdlock.so":   "libdlock.so.0",
		"libdlockc.so":  "libdlock.so",
		"libdlocks.so":  "libdlock.so",
		"libdlockm.so":  "libdlock.so",
	}
	for l, want := range links {
		if target, err := os.Readlink(filepath.Join(libdir, l)); err != nil || target != want {
			t.Errorf("%s: link to %q, %v; want %s", l, target, err, want)
		}
	}
	if soname := elfSoname(t, filepath.Join(libdir, "libdlock.so.0.1.0")); soname != "libdlock.so.0" {
		t.Errorf("libdlock.so.0.1.0: soname %q, want libdlock.so.0", soname)
	}
	for _, h := range []string{"dlock_types.h", "dlock_client_api.h", "dlock_server_api.h"} {
		if _, err := os.Stat(filepath.Join(prefix, "include", "dlock", h)); err != nil {
			t.Error(err)
		}
	}
	pc := exec.Command("pkg-config", "--cflags", "--libs", "dlock")
	pc.Env = append(os.Environ(), "PKG_CONFIG_PATH="+filepath.Join(libdir, "pkgconfig"))
	flags, err := pc.Output()
	if err != nil {
		t.Fatalf("pkg-config: %v", err)
	}
	port := freePorts(t, 1)[0]
	for name, link := range map[string][]string{
		"pkgconfig": strings.Fields(string(flags)),
		"upstream":  {"-I" + filepath.Join(prefix, "include", "dlock"), "-L" + libdir, "-ldlockc", "-ldlocks", "-ldlockm"},
	} {
		out := filepath.Join(t.TempDir(), name)
		args := append([]string{"-std=c++17", "-Wall", "-Werror", "-o", out, filepath.Join("testdata", "cpp_api.cpp")}, link...)
		args = append(args, "-Wl,-rpath,"+libdir)
		if b, err := exec.Command("g++", args...).CombinedOutput(); err != nil {
			t.Fatalf("g++ %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		if needed := elfNeeded(t, out); !slices.Contains(needed, "libdlock.so.0") {
			t.Errorf("%s: needs %v, want libdlock.so.0 among them", name, needed)
		}
		run(t, out, time.Minute, port)
	}
}

// serverAPI are the functions of dlock_server_api.h (DLock's libdlocks.so);
// every other function of ours is in libdlockc.so.
var serverAPI = []string{"dserver_lib_init", "dserver_lib_deinit", "server_start", "server_stop",
	"get_server_debug_stats", "clear_server_debug_stats"}

// TestUpstreamBuiltBinary starts a program built the way one built against
// DLock is: linked with -ldlockc -ldlocks -ldlockm where those libraries
// carry DLock's sonames (libdlockc.so.0, libdlocks.so.0, libdlockm.so.0), so
// the binary asks for those names. Stand-ins for DLock's libraries are made
// here from the symbols the program uses, and removed before the program
// runs against the install tree alone.
func TestUpstreamBuiltBinary(t *testing.T) {
	t.Parallel()
	prefix := installTree(t)
	libdir := filepath.Join(prefix, "lib")
	work := t.TempDir()
	obj := filepath.Join(work, "cpp_api.o")
	compileArgs := []string{"-std=c++17", "-Wall", "-Werror", "-c", "-o", obj, "-I" + filepath.Join(prefix, "include", "dlock"),
		filepath.Join("testdata", "cpp_api.cpp")}
	if b, err := exec.Command("g++", compileArgs...).CombinedOutput(); err != nil {
		t.Fatalf("g++ %s: %v\n%s", strings.Join(compileArgs, " "), err, b)
	}

	// The stand-ins: one empty function per symbol the program takes from
	// us, in libdlocks for the server API and libdlockc for the rest.
	ours := map[string]bool{}
	lib, err := elf.Open(filepath.Join(libdir, "libdlock.so.0.1.0"))
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := lib.DynamicSymbols()
	lib.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range dyn {
		if s.Section != elf.SHN_UNDEF && elf.ST_TYPE(s.Info) == elf.STT_FUNC {
			ours[s.Name] = true
		}
	}
	o, err := elf.Open(obj)
	if err != nil {
		t.Fatal(err)
	}
	syms, err := o.Symbols()
	o.Close()
	if err != nil {
		t.Fatal(err)
	}
	var stub = map[string]*strings.Builder{"libdlockc": {}, "libdlocks": {}, "libdlockm": {}}
	used := 0
	for _, s := range syms {
		if s.Section != elf.SHN_UNDEF || !ours[s.Name] {
			continue
		}
		used++
		lib := "libdlockc"
		if slices.Contains(serverAPI, s.Name) {
			lib = "libdlocks"
		}
		fmt.Fprintf(stub[lib], "void %s(void) {}\n", s.Name)
	}
	if used < 10 || stub["libdlocks"].Len() == 0 {
		t.Fatalf("the program uses %d of our functions; want client and server ones", used)
	}
	stubs := filepath.Join(work, "upstream")
	if err := os.Mkdir(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, src := range stub {
		c := filepath.Join(work, name+".c")
		if err := os.WriteFile(c, []byte(src.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"-shared", "-fPIC", "-o", filepath.Join(stubs, name+".so"), c, "-Wl,-soname," + name + ".so.0"}
		if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
			t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	// One binary finds the install through its run path (which, unlike
	// LD_LIBRARY_PATH, does not apply to the libraries it loads), one
	// through LD_LIBRARY_PATH.
	prog, bare := filepath.Join(work, "prebuilt"), filepath.Join(work, "prebuilt-no-rpath")
	for _, p := range []string{prog, bare} {
		linkArgs := []string{"-o", p, obj, "-L" + stubs, "-Wl,--no-as-needed", "-ldlockc", "-ldlocks", "-ldlockm", "-lpthread"}
		if p == prog {
			linkArgs = append(linkArgs, "-Wl,-rpath,"+libdir)
		}
		if b, err := exec.Command("g++", linkArgs...).CombinedOutput(); err != nil {
			t.Fatalf("g++ %s: %v\n%s", strings.Join(linkArgs, " "), err, b)
		}
	}
	if err := os.RemoveAll(stubs); err != nil {
		t.Fatal(err)
	}
	needed := elfNeeded(t, prog)
	for _, n := range []string{"libdlockc.so.0", "libdlocks.so.0", "libdlockm.so.0"} {
		if !slices.Contains(needed, n) {
			t.Errorf("the program needs %v; want %s among them", needed, n)
		}
	}
	for _, n := range needed {
		if strings.HasPrefix(n, "libdlock.") {
			t.Errorf("the program needs %s: it must only know DLock's names", n)
		}
	}
	run(t, prog, time.Minute, freePorts(t, 1)[0])

	cmd := exec.Command(bare, freePorts(t, 1)[0])
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+libdir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "OK ") {
		t.Errorf("LD_LIBRARY_PATH=%s %s: %v\n%s", libdir, bare, err, out)
	}
}

func elfNeeded(t *testing.T, path string) []string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	return libs
}

func elfSoname(t *testing.T, path string) string {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := f.DynString(elf.DT_SONAME)
	if err != nil || len(s) != 1 {
		t.Fatalf("%s: soname %v, %v", path, s, err)
	}
	return s[0]
}
