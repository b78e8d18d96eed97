package main

import (
	"bufio"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dlock-io/dlock"
)

// goConstants are the values our headers must have: each C constant is
// mapped to the Go constant it mirrors, or to DLock's value where Go has none.
func goConstants(t *testing.T) map[string]int64 {
	want := map[string]int64{
		"MAX_LOCK_DESC_LEN":         dlock.MaxDescLen,
		"MAX_UMO_ATOMIC64_DESC_LEN": dlock.MaxDescLen,
		"MAX_LOCK_BATCH_SIZE":       dlock.MaxBatch,
		"SLEEP_INTERVAL":            sleepInterval.Microseconds(),
		"DLOCK_EID_SIZE":            16,

		"LOCK_EXCLUSIVE":        int64(dlock.OpLockExclusive),
		"LOCK_SHARED":           int64(dlock.OpLockShared),
		"UNLOCK":                int64(dlock.OpUnlock),
		"EXTEND_LOCK_EXCLUSIVE": int64(dlock.OpExtendExclusive),
		"EXTEND_LOCK_SHARED":    int64(dlock.OpExtendShared),
		"LOCK_OPS_MAX":          5,

		"DLOCK_ATOMIC": int64(dlock.Atomic),
		"DLOCK_RW":     int64(dlock.RW),
		"DLOCK_FAIR":   int64(dlock.Fair),
		"DLOCK_MAX":    3,

		"SERVER_PRIMARY": 0, "SERVER_REPLICA": 1, "SERVER_MAX": 2,
		"CTRL_THREAD": 0, "CMD_THREAD": 1,
		"SEPERATE_CONN": 0, "UNI_CONN": 1,
		"CLIENT": 0, "CLIENT_PRIMARY": 1, "REPLICA_PRIMARY": 2,

		"DEBUG_STATS_MAX": int64(dlock.NumCounters),
	}
	for i := 0; i < dlock.NumCounters; i++ {
		want["DEBUG_STATS_"+dlock.Counter(i).String()] = int64(i)
	}
	statuses := []dlock.Status{
		dlock.Success, dlock.Done, dlock.ErrAgain, dlock.ErrNoMem, dlock.ErrTimeout, dlock.ErrInval,
		dlock.ErrTicket, dlock.ErrAsync, dlock.ErrClientNotInit, dlock.ErrLockNotGet, dlock.ErrAlreadyLocked,
		dlock.ErrAlreadyUnlocked, dlock.ErrTicketToUnlock, dlock.ErrBadResponse, dlock.ErrFail,
		dlock.ErrClientMgrNotInit, dlock.ErrNotReady, dlock.ErrNoAsync, dlock.ErrAsyncAgain,
		dlock.ErrReplicaInitFail, dlock.ErrServerNotInit, dlock.ErrClientRemovedByServer,
		dlock.ErrProtoNegotiationFail, dlock.ErrServerNoResource, dlock.ErrObjectAlreadyExisted,
		dlock.ErrObjectAlreadyCreated, dlock.ErrObjectNotCreate, dlock.ErrObjectInvalidOwner,
		dlock.ErrObjectNotGet, dlock.ErrObjectAlreadyDestroyed, dlock.ErrObjectTooMany, dlock.ErrObjectCASFailed,
	}
	for _, st := range statuses {
		if !strings.HasPrefix(st.String(), "DLOCK_") {
			t.Fatalf("status %d has no C name: %q", int32(st), st.String())
		}
		want[st.String()] = int64(st)
	}
	// The bit-field layout of fairlock_state.t_value (PROTOCOL.md §6), as the Go
	// encoder packs it.
	want["fair.rms"] = int64(dlock.FairState{RMs: 0xFFFF}.TValue())
	want["fair.rflag"] = int64(dlock.FairState{RFlag: true}.TValue())
	want["fair.rsvd"] = 0x03FE0000
	want["fair.rcnt"] = int64(dlock.FairState{RCnt: 63}.TValue())
	return want
}

// layout is DLock's (LP64): size and alignment of every struct, and the offset
// of every field.
type layout struct {
	typ         string
	size, align int64
	fields      []string // "field offset"
}

var abiLayouts = []layout{
	{"struct lock_desc", 24, 8, []string{"p_desc 0", "len 8", "lock_type 12", "lease_time 16"}},
	{"struct lock_request", 12, 4, []string{"lock_id 0", "lock_op 4", "expire_time 8"}},
	{"atomic_state", 8, 4, []string{"client_id 0", "time_out 4"}},
	{"rw_state", 16, 4, []string{"time_out 0", "client_id 4", "rcount 8", "rsvd 12"}},
	{"fairlock_state", 16, 4, []string{"n_exclusive 0", "n_shared 2", "m_exclusive 4", "m_shared 6",
		"time_out 8", "t_value 12", "bs 12"}},
	{"lock_state", 16, 8, []string{"atomic 0", "rw 0", "fl 0", "base 0"}},
	{"struct lock_op_res", 20, 4, []string{"atomic 0", "rw 0", "fl 0", "op_ret 16"}},
	{"struct lock_context", 32, 8, []string{"lock_type 0", "lock_id 4", "lease_time 8", "ref_count 12", "ls 16"}},
	{"struct err_event", 1, 1, []string{"err_type 0"}},
	{"struct ssl_cfg", 64, 8, []string{"ssl_enable 0", "ca_path 8", "crl_path 16", "cert_path 24",
		"prkey_path 32", "cert_verify_cb 40", "prkey_pwd_cb 48", "erase_prkey_cb 56"}},
	{"dlock_eid_t", 16, 8, []string{"raw 0", "in4.reserved 0", "in4.prefix 8", "in4.addr 12",
		"in6.subnet_prefix 0", "in6.interface_id 8"}},
	{"struct client_cfg", 104, 8, []string{"dev_name 0", "eid 8", "log_level 24", "primary_port 28",
		"ssl 32", "tp_mode 96", "ub_token_disable 100"}},
	{"struct primary_cfg", 48, 8, []string{"num_of_replica 0", "recovery_client_num 4", "ctrl_cpuset 8",
		"cmd_cpuset 16", "server_ip_str 24", "server_port 32", "replica_port 36", "replica_enable 40"}},
	{"struct replica_cfg", 16, 8, []string{"primary_ip_str 0", "primary_port 8"}},
	{"struct server_cfg", 160, 8, []string{"type 0", "dev_name 8", "eid 16", "log_level 32",
		"sleep_mode_enable 36", "primary 40", "replica 40", "ssl 88", "tp_mode 152", "ub_token_disable 156"}},
	{"struct umo_atomic64_desc", 16, 8, []string{"p_desc 0", "len 8", "lease_time 12"}},
	{"struct debug_stats", 360, 8, []string{"stats 0"}},
	{"dlock_status_t", 4, 4, nil},
	{"debug_stats_code_t", 4, 4, nil},
	{"enum lock_ops", 4, 4, nil},
	{"enum dlock_type", 4, 4, nil},
	{"trans_mode_t", 4, 4, nil},
	{"bool", 1, 1, nil},
}

// headerConstants lists every constant our headers define (enumerators,
// constexpr constants, value macros).
func headerConstants(t *testing.T) []string {
	enumerator := regexp.MustCompile(`^\s+([A-Z][A-Z0-9_]*)\s*(=[^,]*)?,?\s*(/\*.*)?$`)
	constexpr := regexp.MustCompile(`^constexpr\s+[a-z ]+\s([A-Z][A-Z0-9_]*)\s*=`)
	define := regexp.MustCompile(`^#define\s+([A-Z][A-Z0-9_]*)\s+\S`)
	seen := map[string]bool{}
	files, _ := filepath.Glob("include/*.h")
	if len(files) != 3 {
		t.Fatalf("include/ has %d headers, want 3", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			for _, re := range []*regexp.Regexp{enumerator, constexpr, define} {
				if m := re.FindStringSubmatch(line); m != nil {
					seen[m[1]] = true
				}
			}
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// layoutProgram writes a program that prints every constant and the
// layout of every struct, one "key value" line each.
func layoutProgram(t *testing.T, consts []string) string {
	var b strings.Builder
	b.WriteString(`#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "dlock_client_api.h"
#include "dlock_server_api.h"
#ifdef __cplusplus
using namespace dlock;
#define ALIGNOF alignof
#else
#define ALIGNOF _Alignof
#endif
int main(void)
{
    fairlock_state f;
`)
	for _, c := range consts {
		if strings.HasPrefix(c, "fair.") {
			continue
		}
		fmt.Fprintf(&b, "    printf(\"%s %%lld\\n\", (long long)(%s));\n", c, c)
	}
	for _, l := range abiLayouts {
		fmt.Fprintf(&b, "    printf(\"sizeof(%s) %%zu\\n\", sizeof(%s));\n", l.typ, l.typ)
		fmt.Fprintf(&b, "    printf(\"alignof(%s) %%zu\\n\", (size_t)ALIGNOF(%s));\n", l.typ, l.typ)
		for _, f := range l.fields {
			name, _, _ := strings.Cut(f, " ")
			fmt.Fprintf(&b, "    printf(\"offsetof(%s, %s) %%zu\\n\", offsetof(%s, %s));\n", l.typ, name, l.typ, name)
		}
	}
	for _, bf := range []struct{ field, value string }{{"rms", "0xFFFF"}, {"rflag", "1"}, {"rsvd", "511"}, {"rcnt", "63"}} {
		fmt.Fprintf(&b, "    memset(&f, 0, sizeof(f));\n    f.bs.%s = %s;\n    printf(\"fair.%s %%lld\\n\", (long long)f.t_value);\n",
			bf.field, bf.value, bf.field)
	}
	b.WriteString("    printf(\"OK layout\\n\");\n    return 0;\n}\n")
	return b.String()
}

// TestHeaderConstantsAndLayout checks that every constant of our headers
// equals the Go constant it mirrors and that struct sizes, alignments and
// field offsets are DLock's — compiled as C and as C++.
func TestHeaderConstantsAndLayout(t *testing.T) {
	t.Parallel()
	want := goConstants(t)
	names := headerConstants(t)
	for _, n := range names {
		if _, ok := want[n]; !ok {
			t.Errorf("header constant %s has no expected value", n)
		}
	}
	var consts []string
	for n := range want {
		consts = append(consts, n)
	}
	sort.Strings(consts)
	for _, l := range abiLayouts {
		want["sizeof("+l.typ+")"] = l.size
		want["alignof("+l.typ+")"] = l.align
		for _, f := range l.fields {
			name, off, _ := strings.Cut(f, " ")
			n, _ := strconv.ParseInt(off, 10, 64)
			want["offsetof("+l.typ+", "+name+")"] = n
		}
	}
	src := layoutProgram(t, consts)
	dir := t.TempDir()
	for _, ext := range []string{".c", ".cpp"} {
		path := filepath.Join(dir, "layout"+ext)
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		prog := compile(t, path)
		out := run(t, prog, time.Minute)
		got := map[string]int64{}
		sc := bufio.NewScanner(strings.NewReader(out))
		for sc.Scan() {
			line := sc.Text()
			i := strings.LastIndexByte(line, ' ')
			if i < 0 || line == "OK layout" {
				continue
			}
			v, err := strconv.ParseInt(line[i+1:], 10, 64)
			if err != nil {
				t.Fatalf("%s: bad line %q", ext, line)
			}
			got[line[:i]] = v
		}
		for k, w := range want {
			if g, ok := got[k]; !ok {
				t.Errorf("%s: %s not printed", ext, k)
			} else if g != w {
				t.Errorf("%s: %s = %d (%#x), want %d (%#x)", ext, k, g, g, w, w)
			}
		}
	}
}

// TestExportedSymbols checks that the library exports every function our
// headers declare, under its plain C name.
func TestExportedSymbols(t *testing.T) {
	t.Parallel()
	f, err := elf.Open(filepath.Join(libDir(t), "libdlock.so"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Section != elf.SHN_UNDEF {
			exported[s.Name] = true
		}
	}
	decl := regexp.MustCompile(`^(?:int|void)\s+([a-z_0-9]+)\(`)
	n := 0
	for _, h := range []string{"include/dlock_client_api.h", "include/dlock_server_api.h"} {
		b, err := os.ReadFile(h)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			m := decl.FindStringSubmatch(line)
			if m == nil || seen[m[1]] {
				continue
			}
			seen[m[1]] = true
			n++
			if !exported[m[1]] {
				t.Errorf("%s: %s is not exported", h, m[1])
			}
		}
	}
	if n != 36 { // 30 client + 6 server functions, as DLock's headers
		t.Errorf("headers declare %d functions, want 36", n)
	}
}
