package lockcore

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/dlock-io/dlock"
	"github.com/dlock-io/dlock/internal/scripttest"
)

// The scenario scripts in testdata/*.txt drive one lock at a time with server
// commands; internal/scripttest runs them and compares every output (go test
// -rewrite regenerates the expectations). Commands:
//
//	lock atomic|rw|fair          new lock (clients' caches and counters reset)
//	at N | tick N                set the clock / advance it by N seconds
//	cK CMD [k=v...] -> REPLY     Exec command CMD from client cK (id K+1).
//	                             CMD: exclusive-trylock, exclusive-unlock,
//	                             exclusive-lock-extend, exclusive-ticket-trylock,
//	                             shared-trylock, shared-unlock,
//	                             shared-lock-extend, shared-ticket-trylock, cmdN.
//	                             Payload: atomic {id=own, e}, rw {id=own or 0
//	                             for shared, e}, fair: the client's cached value
//	                             (last SUCCESS reply or ticket) with time_out=e;
//	                             any field may be overridden (id, e, nx, ns, mx,
//	                             ms).
//	cK acquire exclusive|shared [e=N] tag=T [ticket] -> queued | REPLY
//	cK drop                      Lock.Drop for cK
//	cancel tag=T [keep] -> REPLY | notfound
//	advance                      Lock.Advance at the current time
//	woke -> tag=T REPLY          the next pending grant
//	next-event -> N | none
//	state -> STATE               the lock state
//	set k=v...                   overwrite FAIR counters (nx, ns, mx, ms, rms)
//	holders -> excl=cK|0 shared=cK,cL|none
//	waiters -> N
//	stat NAME... -> NAME=N...    server counters (e.g. stat EAGAIN -> EAGAIN=1)
//
// A REPLY is the status name then the STATE it carries, then token=+ when it
// carries a fencing token (which must be larger than every earlier one).
// STATE is owner, timeout (atomic); owner, timeout, rcount (rw); nx, ns, mx,
// ms, timeout, rms, rflag, rcnt (fair). An owner is written cK. Invariants
// (a token on a non-grant, a token that does not grow, a grant left
// unasserted before the next command) fail the script outright.

func TestScripts(t *testing.T) {
	scripttest.Run(t, "testdata/*.txt", func() scripttest.Script { return &scriptRunner{} })
}

// TestScriptRewrite: a wrong expectation is reported on its line, and the
// rewrite mode puts the actual output back.
func TestScriptRewrite(t *testing.T) {
	orig, err := os.ReadFile("testdata/atomic.txt")
	if err != nil {
		t.Fatal(err)
	}
	const right = "c1 exclusive-trylock e=5 -> SUCCESS owner=c1 timeout=1011 token=+"
	line := slices.Index(strings.Split(string(orig), "\n"), right) + 1
	if line == 0 {
		t.Fatalf("testdata/atomic.txt has no line %q", right)
	}
	wrong := strings.Replace(string(orig), right, "c1 exclusive-trylock e=5 -> FAIL owner=c0 timeout=1005", 1)
	file := filepath.Join(t.TempDir(), "atomic.txt")
	if err := os.WriteFile(file, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	mism, _, err := scripttest.Execute([]byte(wrong), &scriptRunner{})
	if err != nil || len(mism) != 1 || mism[0].Line != line || mism[0].Got != "SUCCESS owner=c1 timeout=1011 token=+" {
		t.Fatalf("wrong expectation: mismatches %v, error %v; want one on line %d", mism, err, line)
	}
	t.Run("rewrite", func(t *testing.T) {
		scripttest.Files(t, file, func() scripttest.Script { return &scriptRunner{} }, scripttest.Options{Rewrite: true})
	})
	fixed, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(fixed) != string(orig) {
		t.Fatalf("rewritten script differs from the original:\n%s", fixed)
	}
	if mism, _, err := scripttest.Execute(fixed, &scriptRunner{}); len(mism) != 0 || err != nil {
		t.Fatalf("rewritten script: mismatches %v, error %v", mism, err)
	}
}

type scriptRunner struct {
	lock    *Lock
	tokens  Tokens
	st      dlock.Stats
	now     uint32
	cache   map[int32]dlock.LockState
	pending []Grant
	lastTok uint64
	tags    map[uint64]int32 // tag → client that queued it
}

// scriptError carries a failure out of the helpers to Exec.
type scriptError struct{ err error }

func (r *scriptRunner) failf(format string, args ...any) {
	panic(scriptError{fmt.Errorf(format, args...)})
}

func (r *scriptRunner) End() error {
	if len(r.pending) > 0 {
		return fmt.Errorf("unasserted grants at end: %+v", r.pending)
	}
	return nil
}

func (r *scriptRunner) Exec(line, _ string) (out string, err error) {
	defer func() {
		if e := recover(); e != nil {
			se, ok := e.(scriptError)
			if !ok {
				panic(e)
			}
			err = se.err
		}
	}()
	return r.exec(line), nil
}

func (r *scriptRunner) exec(line string) string {
	words := strings.Fields(line)
	if words[0] != "woke" && len(r.pending) > 0 {
		r.failf("unasserted grants: %+v", r.pending)
	}
	if words[0] != "lock" && r.lock == nil {
		r.failf("no lock yet")
	}
	switch words[0] {
	case "lock":
		typ, ok := map[string]dlock.LockType{"atomic": dlock.Atomic, "rw": dlock.RW, "fair": dlock.Fair}[words[1]]
		if !ok {
			r.failf("unknown lock type %q", words[1])
		}
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
		if g.Reply.Status == dlock.Success {
			r.cache[g.Client] = g.Reply.State
		}
		return fmt.Sprintf("tag=%d %s", g.Tag, r.reply(g.Reply, false))
	case "next-event":
		if at, ok := r.lock.NextEvent(); ok {
			return strconv.FormatUint(uint64(at), 10)
		}
		return "none"
	case "set":
		r.set(r.kv(words[1:]))
	case "state":
		return r.state(r.lock.State())
	case "waiters":
		return strconv.Itoa(r.lock.Waiters())
	case "holders":
		return r.holders()
	case "stat":
		var out []string
		for _, name := range words[1:] {
			out = append(out, fmt.Sprintf("%s=%d", name, r.st[counterByName(r, name)]))
		}
		return strings.Join(out, " ")
	case "cancel":
		kv := r.kv(words[1:2])
		keep := len(words) > 2 && words[2] == "keep"
		var (
			rep   Reply
			found bool
		)
		rep, found, r.pending = r.lock.Cancel(r.now, uint64(kv["tag"]), keep, r.pending)
		if !found {
			return "notfound"
		}
		if rep.Status == dlock.ErrAgain {
			r.cache[r.tags[uint64(kv["tag"])]] = rep.State
		}
		return r.reply(rep, true)
	default:
		if !strings.HasPrefix(words[0], "c") || len(words) < 2 {
			r.failf("unknown statement %q", line)
		}
		client := int32(r.num(words[0][1:])) + 1
		switch words[1] {
		case "drop":
			r.pending = r.lock.Drop(r.now, client, r.pending)
		case "acquire":
			return r.acquire(client, words[2:])
		default:
			return r.command(client, words[1], words[2:])
		}
	}
	return ""
}

func (r *scriptRunner) acquire(client int32, args []string) string {
	w := Waiter{Client: client, Expire: 5}
	if len(args) == 0 {
		r.failf("acquire needs a mode")
	}
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
		return "queued"
	}
	if rep.Status == dlock.Success {
		r.cache[client] = rep.State
	}
	return r.reply(rep, false)
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

func (r *scriptRunner) command(client int32, name string, args []string) string {
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
	if rep.Status == dlock.Success ||
		(rep.Status == dlock.ErrAgain && (cmd == dlock.CmdExclusiveTrylock || cmd == dlock.CmdSharedTrylock)) {
		r.cache[client] = rep.State
	}
	return r.reply(rep, !isGrant)
}

// reply renders a reply and checks its token: none on a non-grant, and a
// grant's larger than every earlier one.
func (r *scriptRunner) reply(rep Reply, noToken bool) string {
	if noToken && rep.Token != 0 {
		r.failf("token %d on a non-grant", rep.Token)
	}
	if rep.Status == dlock.Success && !noToken && rep.Token <= r.lastTok {
		r.failf("grant token %d not above %d", rep.Token, r.lastTok)
	}
	out := strings.TrimPrefix(rep.Status.String(), "DLOCK_") + " " + r.state(rep.State)
	if rep.Token != 0 {
		if rep.Token <= r.lastTok {
			r.failf("token %d not above %d", rep.Token, r.lastTok)
		}
		r.lastTok = rep.Token
		out += " token=+"
	}
	return out
}

// state renders a lock state.
func (r *scriptRunner) state(s dlock.LockState) string {
	n := func(v uint64) string { return scripttest.Num(v) }
	switch r.lock.Type() {
	case dlock.Atomic:
		a := s.Atomic()
		return fmt.Sprintf("owner=%s timeout=%s", owner(a.Owner), n(uint64(a.Timeout)))
	case dlock.RW:
		a := s.RW()
		return fmt.Sprintf("owner=%s timeout=%s rcount=%d", owner(a.Owner), n(uint64(a.Timeout)), a.RCount)
	}
	f := s.Fair()
	rflag := 0
	if f.RFlag {
		rflag = 1
	}
	return fmt.Sprintf("nx=%s ns=%s mx=%s ms=%s timeout=%s rms=%s rflag=%d rcnt=%d",
		n(uint64(f.Nx)), n(uint64(f.Ns)), n(uint64(f.Mx)), n(uint64(f.Ms)), n(uint64(f.Timeout)), n(uint64(f.RMs)), rflag, f.RCnt)
}

// owner writes client id K+1 as cK.
func owner(id int32) string {
	if id > 0 {
		return fmt.Sprintf("c%d", id-1)
	}
	return strconv.Itoa(int(id))
}

func (r *scriptRunner) set(kv map[string]int64) {
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

func (r *scriptRunner) holders() string {
	excl, shared := r.lock.Holders(nil)
	sh := "none"
	if len(shared) > 0 {
		var names []string
		for _, c := range sortedIDs(shared) {
			names = append(names, owner(c))
		}
		sh = strings.Join(names, ",")
	}
	return fmt.Sprintf("excl=%s shared=%s", owner(excl), sh)
}

func sortedIDs(s []int32) []int32 {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func (r *scriptRunner) kv(args []string) map[string]int64 {
	m := map[string]int64{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			r.failf("expected key=value, got %q", a)
		}
		m[k] = r.num(v)
	}
	return m
}

func (r *scriptRunner) num(s string) int64 {
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		r.failf("bad number %q", s)
	}
	return n
}

func counterByName(r *scriptRunner, name string) dlock.Counter {
	for c := dlock.Counter(0); int(c) < dlock.NumCounters; c++ {
		if c.String() == name {
			return c
		}
	}
	r.failf("unknown counter %q", name)
	return 0
}
