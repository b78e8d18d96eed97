package lockcore

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dlock-io/dlock"
)

// The scenario scripts in testdata/*.txt drive one lock at a time with server
// commands and assert every reply. Grammar (one statement per line, # starts
// a comment):
//
//	lock atomic|rw|fair          new lock (clients' caches and counters reset)
//	at N | tick N                set the clock / advance it by N seconds
//	cK CMD [k=v...] -> CODE [k=v...]
//	                             Exec command CMD from client cK (id K+1).
//	                             CMD: exclusive-trylock, exclusive-unlock,
//	                             exclusive-lock-extend, exclusive-ticket-trylock,
//	                             shared-trylock, shared-unlock,
//	                             shared-lock-extend, shared-ticket-trylock, cmdN.
//	                             Payload: atomic {id=own, e}, rw {id=own or 0
//	                             for shared, e}, fair: the client's cached value
//	                             (last SUCCESS reply or ticket) with time_out=e;
//	                             any field may be overridden (id, e, nx, ns, mx,
//	                             ms).
//	cK acquire exclusive|shared [e=N] tag=T [ticket] -> queued | CODE [k=v...]
//	cK drop                      Lock.Drop for cK
//	cancel tag=T [keep] -> CODE [k=v...] | notfound
//	advance                      Lock.Advance at the current time
//	woke tag=T CODE [k=v...]     assert the next pending grant
//	next-event -> N | none
//	state k=v...                 assert the lock state
//	set k=v...                   overwrite FAIR counters (nx, ns, mx, ms, rms)
//	holders excl=cK|0 shared=cK,cL|none
//	waiters N
//	stat NAME=N                  assert a server counter (e.g. EAGAIN=1)
//
// State keys: owner, timeout, rcount (atomic, rw); nx, ns, mx, ms, timeout,
// rms, rflag, rcnt (fair); token=0 or token=+ (non-zero, larger than every
// earlier token) on replies. Every grant must be asserted with woke before the
// next command.

func TestScripts(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

type scriptRunner struct {
	t       testing.TB
	file    string
	line    int
	lock    *Lock
	tokens  Tokens
	st      dlock.Stats
	now     uint32
	cache   map[int32]dlock.LockState
	pending []Grant
	lastTok uint64
	tags    map[uint64]int32 // tag → client that queued it
}

func runScript(t *testing.T, file string) {
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r := &scriptRunner{t: t, file: file}
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		r.line++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		r.exec(line)
	}
	if len(r.pending) > 0 {
		r.failf("unasserted grants at end: %+v", r.pending)
	}
}

func (r *scriptRunner) failf(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("%s:%d: %s", r.file, r.line, fmt.Sprintf(format, args...))
}

func (r *scriptRunner) exec(line string) {
	r.t.Helper()
	lhs, rhs, hasArrow := strings.Cut(line, "->")
	words := strings.Fields(lhs)
	var exp []string
	if hasArrow {
		exp = strings.Fields(rhs)
	}
	if words[0] != "woke" && len(r.pending) > 0 {
		r.failf("unasserted grants before %q: %+v", line, r.pending)
	}
	switch words[0] {
	case "lock":
		typ := map[string]dlock.LockType{"atomic": dlock.Atomic, "rw": dlock.RW, "fair": dlock.Fair}[words[1]]
		r.tokens = Tokens{}
		r.lock = NewLock(typ, &r.tokens)
		r.st = dlock.Stats{}
		r.cache = map[int32]dlock.LockState{}
		r.tags = map[uint64]int32{}
		r.lastTok = 0
	case "at":
		r.now = uint32(r.num(words[1]))
	case "tick":
		r.now += uint32(r.num(words[1]))
	case "advance":
		r.pending = r.lock.Advance(r.now, r.pending)
	case "woke":
		if len(r.pending) == 0 {
			r.failf("no pending grant")
		}
		g := r.pending[0]
		r.pending = r.pending[1:]
		kv := r.kv(words[1:2])
		if g.Tag != uint64(kv["tag"]) {
			r.failf("grant tag = %d, want %d", g.Tag, kv["tag"])
		}
		r.checkReply(g.Client, g.Reply, words[2], words[3:], false)
		if g.Reply.Status == dlock.Success {
			r.cache[g.Client] = g.Reply.State
		}
	case "next-event":
		at, ok := r.lock.NextEvent()
		got := "none"
		if ok {
			got = strconv.FormatUint(uint64(at), 10)
		}
		if got != exp[0] {
			r.failf("next-event = %s, want %s", got, exp[0])
		}
	case "set":
		r.set(r.kv(words[1:]))
	case "state":
		r.checkState(r.lock.State(), r.kv(words[1:]))
	case "waiters":
		if got := r.lock.Waiters(); got != int(r.num(words[1])) {
			r.failf("waiters = %d, want %s", got, words[1])
		}
	case "holders":
		r.checkHolders(words[1:])
	case "stat":
		for _, w := range words[1:] {
			name, v, _ := strings.Cut(w, "=")
			c := counterByName(r, name)
			if got := r.st[c]; got != uint64(r.num(v)) {
				r.failf("stat %s = %d, want %s", name, got, v)
			}
		}
	case "cancel":
		kv := r.kv(words[1:2])
		keep := len(words) > 2 && words[2] == "keep"
		var (
			rep   Reply
			found bool
		)
		rep, found, r.pending = r.lock.Cancel(r.now, uint64(kv["tag"]), keep, r.pending)
		if !found {
			if exp[0] != "notfound" {
				r.failf("cancel: not found, want %s", exp[0])
			}
			return
		}
		c := r.tagClient(uint64(kv["tag"]))
		r.checkReply(c, rep, exp[0], exp[1:], false)
		if rep.Status == dlock.ErrAgain {
			r.cache[c] = rep.State
		}
	default:
		if !strings.HasPrefix(words[0], "c") || len(words) < 2 {
			r.failf("unknown statement %q", line)
		}
		client := int32(r.num(words[0][1:])) + 1
		switch words[1] {
		case "drop":
			r.pending = r.lock.Drop(r.now, client, r.pending)
		case "acquire":
			r.acquire(client, words[2:], exp)
		default:
			r.command(client, words[1], words[2:], exp)
		}
	}
}

func (r *scriptRunner) tagClient(tag uint64) int32 { return r.tags[tag] }

func (r *scriptRunner) acquire(client int32, args, exp []string) {
	r.t.Helper()
	w := Waiter{Client: client, Expire: 5}
	if args[0] == "shared" {
		w.Mode = dlock.Shared
	}
	for _, a := range args[1:] {
		if a == "ticket" {
			w.HasTicket = true
			w.Ticket = r.cache[client].Fair()
			continue
		}
		kv := r.kv([]string{a})
		if v, ok := kv["e"]; ok {
			w.Expire = uint32(v)
		}
		if v, ok := kv["tag"]; ok {
			w.Tag = uint64(v)
		}
	}
	r.tags[w.Tag] = client
	rep, queued, wake := r.lock.Acquire(r.now, w, &r.st, r.pending)
	r.pending = wake
	if queued {
		if exp[0] != "queued" {
			r.failf("acquire queued, want %s", exp[0])
		}
		return
	}
	r.checkReply(client, rep, exp[0], exp[1:], false)
	if rep.Status == dlock.Success {
		r.cache[client] = rep.State
	}
}

var cmdNames = map[string]dlock.Cmd{
	"exclusive-trylock":        dlock.CmdExclusiveTrylock,
	"exclusive-unlock":         dlock.CmdExclusiveUnlock,
	"exclusive-lock-extend":    dlock.CmdExclusiveExtend,
	"exclusive-ticket-trylock": dlock.CmdExclusiveTicketTrylock,
	"shared-trylock":           dlock.CmdSharedTrylock,
	"shared-unlock":            dlock.CmdSharedUnlock,
	"shared-lock-extend":       dlock.CmdSharedExtend,
	"shared-ticket-trylock":    dlock.CmdSharedTicketTrylock,
}

func (r *scriptRunner) command(client int32, name string, args, exp []string) {
	r.t.Helper()
	cmd, ok := cmdNames[name]
	if !ok {
		if !strings.HasPrefix(name, "cmd") {
			r.failf("unknown command %q", name)
		}
		cmd = dlock.Cmd(r.num(name[3:]))
	}
	kv := r.kv(args)
	var arg dlock.LockState
	switch r.lock.Type() {
	case dlock.Atomic:
		a := dlock.AtomicState{Owner: client, Timeout: uint32(kv["e"])}
		if v, ok := kv["id"]; ok {
			a.Owner = int32(v)
		}
		arg = a.State()
	case dlock.RW:
		a := dlock.RWState{Owner: client, Timeout: uint32(kv["e"])}
		if cmd.Shared() {
			a.Owner = 0
		}
		if v, ok := kv["id"]; ok {
			a.Owner = int32(v)
		}
		arg = a.State()
	default:
		f := r.cache[client].Fair()
		f.Timeout = uint32(kv["e"])
		for k, p := range map[string]*uint16{"nx": &f.Nx, "ns": &f.Ns, "mx": &f.Mx, "ms": &f.Ms} {
			if v, ok := kv[k]; ok {
				*p = uint16(v)
			}
		}
		arg = f.State()
	}
	rep, wake := r.lock.Exec(r.now, client, cmd, arg, &r.st, r.pending)
	r.pending = wake
	isGrant := cmd == dlock.CmdExclusiveTrylock || cmd == dlock.CmdSharedTrylock ||
		cmd == dlock.CmdExclusiveTicketTrylock || cmd == dlock.CmdSharedTicketTrylock
	r.checkReply(client, rep, exp[0], exp[1:], !isGrant)
	if rep.Status == dlock.Success ||
		(rep.Status == dlock.ErrAgain && (cmd == dlock.CmdExclusiveTrylock || cmd == dlock.CmdSharedTrylock)) {
		r.cache[client] = rep.State
	}
}

func (r *scriptRunner) checkReply(client int32, rep Reply, code string, exp []string, noToken bool) {
	r.t.Helper()
	want := statusByName(r, code)
	if rep.Status != want {
		r.failf("c%d: status = %v, want %v (state %+v)", client-1, rep.Status, want, r.decode(rep.State))
	}
	kv := r.kv(exp)
	if tok, ok := kv["token"]; ok {
		if tok == 0 && rep.Token != 0 {
			r.failf("token = %d, want 0", rep.Token)
		}
		if tok != 0 && rep.Token <= r.lastTok {
			r.failf("token = %d, want > %d", rep.Token, r.lastTok)
		}
		delete(kv, "token")
	}
	if noToken && rep.Token != 0 {
		r.failf("token %d on a non-grant", rep.Token)
	}
	if rep.Status == dlock.Success && !noToken && rep.Token <= r.lastTok {
		r.failf("grant token %d not above %d", rep.Token, r.lastTok)
	}
	if rep.Token != 0 {
		r.lastTok = rep.Token
	}
	r.checkState(rep.State, kv)
}

func (r *scriptRunner) decode(s dlock.LockState) any {
	switch r.lock.Type() {
	case dlock.Atomic:
		return s.Atomic()
	case dlock.RW:
		return s.RW()
	}
	return s.Fair()
}

func (r *scriptRunner) checkState(s dlock.LockState, kv map[string]int64) {
	r.t.Helper()
	got := map[string]int64{}
	switch r.lock.Type() {
	case dlock.Atomic:
		a := s.Atomic()
		got["owner"], got["timeout"] = int64(a.Owner), int64(a.Timeout)
	case dlock.RW:
		a := s.RW()
		got["owner"], got["timeout"], got["rcount"] = int64(a.Owner), int64(a.Timeout), int64(a.RCount)
	default:
		f := s.Fair()
		got["nx"], got["ns"], got["mx"], got["ms"] = int64(f.Nx), int64(f.Ns), int64(f.Mx), int64(f.Ms)
		got["timeout"], got["rms"], got["rcnt"] = int64(f.Timeout), int64(f.RMs), int64(f.RCnt)
		got["rflag"] = 0
		if f.RFlag {
			got["rflag"] = 1
		}
	}
	for k, v := range kv {
		g, ok := got[k]
		if !ok {
			r.failf("unknown state key %q", k)
		}
		if g != v {
			r.failf("%s = %d, want %d (state %+v)", k, g, v, r.decode(s))
		}
	}
}

func (r *scriptRunner) set(kv map[string]int64) {
	r.t.Helper()
	f := &r.lock.f
	for k, v := range kv {
		switch k {
		case "nx":
			f.nx = uint16(v)
		case "ns":
			f.ns = uint16(v)
		case "mx":
			f.mx = uint16(v)
		case "ms":
			f.ms = uint16(v)
		case "rms":
			f.rms = uint16(v)
		default:
			r.failf("cannot set %q", k)
		}
	}
}

func (r *scriptRunner) checkHolders(args []string) {
	r.t.Helper()
	excl, shared := r.lock.Holders(nil)
	for _, a := range args {
		k, v, _ := strings.Cut(a, "=")
		switch k {
		case "excl":
			if want := r.clientID(v); excl != want {
				r.failf("exclusive holder = %d, want %d", excl, want)
			}
		case "shared":
			var want []int32
			if v != "none" {
				for _, c := range strings.Split(v, ",") {
					want = append(want, r.clientID(c))
				}
			}
			if fmt.Sprint(sortedIDs(shared)) != fmt.Sprint(sortedIDs(want)) {
				r.failf("shared holders = %v, want %v", shared, want)
			}
		}
	}
}

func sortedIDs(s []int32) []int32 {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func (r *scriptRunner) clientID(v string) int32 {
	if strings.HasPrefix(v, "c") {
		return int32(r.num(v[1:])) + 1
	}
	return int32(r.num(v))
}

func (r *scriptRunner) kv(args []string) map[string]int64 {
	r.t.Helper()
	m := map[string]int64{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			r.failf("expected key=value, got %q", a)
		}
		switch {
		case k == "token" && v == "+":
			m[k] = 1
		case k == "owner" && strings.HasPrefix(v, "c"):
			m[k] = int64(r.clientID(v))
		default:
			m[k] = r.num(v)
		}
	}
	return m
}

func (r *scriptRunner) num(s string) int64 {
	r.t.Helper()
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		r.failf("bad number %q", s)
	}
	return n
}

func statusByName(r *scriptRunner, name string) dlock.Status {
	r.t.Helper()
	for _, s := range []dlock.Status{dlock.Success, dlock.ErrAgain, dlock.ErrTimeout, dlock.ErrInval,
		dlock.ErrFail, dlock.ErrLockNotGet, dlock.ErrGeneric} {
		if strings.TrimPrefix(s.String(), "DLOCK_") == name {
			return s
		}
	}
	r.failf("unknown status %q", name)
	return 0
}

func counterByName(r *scriptRunner, name string) dlock.Counter {
	r.t.Helper()
	for c := dlock.Counter(0); int(c) < dlock.NumCounters; c++ {
		if c.String() == name {
			return c
		}
	}
	r.failf("unknown counter %q", name)
	return 0
}
