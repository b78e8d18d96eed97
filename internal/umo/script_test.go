package umo

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

// TestScripts replays the scenario scripts in testdata/*.txt through
// internal/scripttest (go test -rewrite regenerates the expectations). Each
// line is one command, optionally followed by "->" and what it produces:
//
//	# comment
//	limit 3                        start over with an empty table of 3 objects
//	at 100                         now := 100 (seconds)
//	c1 create "obj" lease=5 init=7 pref=12 -> SUCCESS id=$o
//	c2 get "obj" lease=5 -> SUCCESS id=$o
//	c2 release $o -> SUCCESS
//	c1 destroy $o -> OBJECT_NOT_CREATE
//	faa $o 3 -> SUCCESS old=7
//	cas $o 10 20 -> OBJECT_CAS_FAILED
//	load $o -> SUCCESS value=10
//	remove c1                      evict or deregister client 1
//	show $o -> owner=0 refs=1 getters=c2@105 destroyed=false lease=105 value=10
//	show $o -> gone
//	len -> 1
//
// Client cN has id N. A descriptor is a Go-quoted string, optionally
// repeated: "a"*513. create's lease defaults to 10, init to 0, and pref to
// the djb2 hash of the descriptor, as the C client sends it; get's lease
// defaults to 10. Status names are the C names without "DLOCK_". An id is a
// number or a $variable: an expectation "id=$v" with $v unbound binds $v to
// the id returned, and an id bound to a variable is written as the
// variable. A failed create or get must return id 0. After every command the
// table's indexes are checked for consistency.
func TestScripts(t *testing.T) {
	scripttest.Run(t, filepath.Join("testdata", "*.txt"), func() scripttest.Script { return newScript() })
}

// TestScriptRewrite: a wrong expectation is reported on its line, and the
// rewrite mode puts the actual output back.
func TestScriptRewrite(t *testing.T) {
	orig, err := os.ReadFile(filepath.Join("testdata", "ops.txt"))
	if err != nil {
		t.Fatal(err)
	}
	const right = "faa $v 5 -> SUCCESS old=10"
	line := slices.Index(strings.Split(string(orig), "\n"), right) + 1
	if line == 0 {
		t.Fatalf("testdata/ops.txt has no line %q", right)
	}
	wrong := strings.Replace(string(orig), right, "faa $v 5 -> SUCCESS old=11", 1)
	file := filepath.Join(t.TempDir(), "ops.txt")
	if err := os.WriteFile(file, []byte(wrong), 0o644); err != nil {
		t.Fatal(err)
	}
	mism, _, err := scripttest.Execute([]byte(wrong), newScript())
	if err != nil || len(mism) != 1 || mism[0].Line != line || mism[0].Got != "SUCCESS old=10" {
		t.Fatalf("wrong expectation: mismatches %v, error %v; want one on line %d", mism, err, line)
	}
	t.Run("rewrite", func(t *testing.T) {
		scripttest.Files(t, file, func() scripttest.Script { return newScript() }, scripttest.Options{Rewrite: true})
	})
	fixed, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(fixed) != string(orig) {
		t.Fatalf("rewritten script differs from the original:\n%s", fixed)
	}
}

type script struct {
	tab  *Table
	now  uint32
	vars map[string]int32
}

func newScript() *script { return &script{tab: NewTable(Limits{}), vars: map[string]int32{}} }

// Exec runs one command and checks the table's consistency after it.
func (s *script) Exec(line, want string) (string, error) {
	out, err := s.exec(line, want)
	if err != nil {
		return "", err
	}
	if err := s.tab.check(); err != nil {
		return "", fmt.Errorf("inconsistent table: %v", err)
	}
	return out, nil
}

func (s *script) exec(line, want string) (string, error) {
	toks, err := tokenize(line)
	if err != nil {
		return "", err
	}
	if len(toks) == 0 {
		return "", fmt.Errorf("empty command")
	}
	client := int32(-1)
	if c, ok := parseClient(toks[0]); ok {
		client = c
		toks = toks[1:]
		if len(toks) == 0 {
			return "", fmt.Errorf("client without command")
		}
	}
	verb, args := toks[0], toks[1:]
	needClient := verb == "create" || verb == "get" || verb == "release" || verb == "destroy"
	if needClient != (client >= 0) {
		return "", fmt.Errorf("%q: client prefix is required exactly for create/get/release/destroy", verb)
	}

	switch verb {
	case "limit":
		n, err := s.num(args, 1)
		if err != nil {
			return "", err
		}
		s.tab = NewTable(Limits{MaxObjects: int(n[0])})
		s.vars = map[string]int32{}
		return "", nil
	case "at":
		n, err := s.num(args, 1)
		if err != nil {
			return "", err
		}
		s.now = uint32(n[0])
		return "", nil
	case "remove":
		if len(args) != 1 {
			return "", fmt.Errorf("remove takes one client")
		}
		c, ok := parseClient(args[0])
		if !ok {
			return "", fmt.Errorf("bad client %q", args[0])
		}
		s.tab.RemoveClient(s.now, c)
		return "", nil
	case "len":
		return strconv.Itoa(s.tab.Len()), nil
	case "show":
		if len(args) != 1 {
			return "", fmt.Errorf("show takes one id")
		}
		id, err := s.id(args[0])
		if err != nil {
			return "", err
		}
		return s.tab.render(id), nil
	case "create", "get":
		if len(args) == 0 {
			return "", fmt.Errorf("%s needs a descriptor", verb)
		}
		desc, err := parseDesc(args[0])
		if err != nil {
			return "", err
		}
		kv, err := scripttest.Fields(args[1:])
		if err != nil {
			return "", err
		}
		lease, init, pref := uint64(10), uint64(0), int64(int32(djb2(desc)))
		for k, v := range kv {
			switch {
			case k == "lease":
				lease, err = strconv.ParseUint(v, 0, 32)
			case k == "init" && verb == "create":
				init, err = parseU64(v)
			case k == "pref" && verb == "create":
				pref, err = strconv.ParseInt(v, 0, 32)
			default:
				err = fmt.Errorf("unknown argument %s=", k)
			}
			if err != nil {
				return "", err
			}
		}
		var id int32
		var st dlock.Status
		if verb == "create" {
			id, st = s.tab.Create(s.now, client, desc, int32(pref), uint32(lease), init)
		} else {
			id, st = s.tab.Get(s.now, client, desc, uint32(lease))
		}
		if st != dlock.Success {
			if id != 0 {
				return "", fmt.Errorf("%v returned with id %d, want 0", st, id)
			}
			return status(st) + " id=0", nil
		}
		return status(st) + " id=" + s.nameID(id, want), nil
	case "release", "destroy":
		if len(args) != 1 {
			return "", fmt.Errorf("%s takes one id", verb)
		}
		id, err := s.id(args[0])
		if err != nil {
			return "", err
		}
		var st dlock.Status
		if verb == "release" {
			st = s.tab.Release(s.now, client, id)
		} else {
			st = s.tab.Destroy(s.now, client, id)
		}
		return status(st), nil
	case "faa", "cas", "load":
		nargs := map[string]int{"faa": 2, "cas": 3, "load": 1}[verb]
		if len(args) != nargs {
			return "", fmt.Errorf("%s takes %d arguments", verb, nargs)
		}
		id, err := s.id(args[0])
		if err != nil {
			return "", err
		}
		var v [2]uint64
		for i, a := range args[1:] {
			if v[i], err = parseU64(a); err != nil {
				return "", err
			}
		}
		var got uint64
		var st dlock.Status
		switch verb {
		case "faa":
			got, st = s.tab.FetchAndAdd(id, v[0])
		case "cas":
			st = s.tab.CompareAndSwap(id, v[0], v[1])
		case "load":
			got, st = s.tab.Load(id)
		}
		if st != dlock.Success || verb == "cas" {
			return status(st), nil
		}
		key := map[string]string{"faa": "old", "load": "value"}[verb]
		return status(st) + " " + key + "=" + scripttest.Num(got), nil
	}
	return "", fmt.Errorf("unknown command %q", verb)
}

func status(st dlock.Status) string { return strings.TrimPrefix(st.String(), "DLOCK_") }

// nameID writes id as the variable the expectation names for it (binding
// it if unbound), else as a variable already bound to it, else as a number.
func (s *script) nameID(id int32, want string) string {
	for _, w := range strings.Fields(want) {
		if v, ok := strings.CutPrefix(w, "id="); ok && strings.HasPrefix(v, "$") {
			if bound, ok := s.vars[v]; !ok {
				s.vars[v] = id
				return v
			} else if bound == id {
				return v
			}
		}
	}
	var names []string
	for name, v := range s.vars {
		if v == id {
			names = append(names, name)
		}
	}
	if len(names) > 0 {
		slices.Sort(names)
		return names[0]
	}
	return strconv.Itoa(int(id))
}

// id resolves a number or a bound $variable.
func (s *script) id(w string) (int32, error) {
	if strings.HasPrefix(w, "$") {
		v, ok := s.vars[w]
		if !ok {
			return 0, fmt.Errorf("unbound %s", w)
		}
		return v, nil
	}
	n, err := strconv.ParseInt(w, 0, 32)
	return int32(n), err
}

func (s *script) num(args []string, n int) ([]int64, error) {
	if len(args) != n {
		return nil, fmt.Errorf("want %d numeric arguments, got %d", n, len(args))
	}
	out := make([]int64, n)
	for i, a := range args {
		v, err := strconv.ParseInt(a, 0, 64)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// render describes object id the way "show" expects it.
func (t *Table) render(id int32) string {
	o := t.byID[id]
	if o == nil {
		return "gone"
	}
	clients := make([]int32, 0, o.getters.Len())
	for c := range o.getters.Clients() {
		clients = append(clients, c)
	}
	slices.Sort(clients)
	getters := make([]string, len(clients))
	for i, c := range clients {
		d, _ := o.getters.Get(c)
		getters[i] = fmt.Sprintf("c%d@%d", c, d)
	}
	g := strings.Join(getters, ",")
	if g == "" {
		g = "-"
	}
	return fmt.Sprintf("owner=%d refs=%d getters=%s destroyed=%t lease=%d value=%d",
		o.owner, o.getters.Len(), g, o.destroyed, o.maxLease, o.value)
}

// tokenize splits a command on blanks, keeping quoted descriptors (and a
// "*N" suffix right after one) together.
func tokenize(s string) ([]string, error) {
	var toks []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return toks, nil
		}
		start := 0
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("bad quoted string in %q", s)
			}
			start = len(q)
		}
		end := strings.IndexAny(s[start:], " \t")
		if end < 0 {
			end = len(s)
		} else {
			end += start
		}
		toks = append(toks, s[:end])
		s = s[end:]
	}
}

func parseClient(w string) (int32, bool) {
	if !strings.HasPrefix(w, "c") {
		return 0, false
	}
	n, err := strconv.ParseInt(w[1:], 10, 32)
	return int32(n), err == nil && n >= 0
}

func parseDesc(w string) ([]byte, error) {
	q, err := strconv.QuotedPrefix(w)
	if err != nil {
		return nil, fmt.Errorf("descriptor %s is not a quoted string", w)
	}
	d, _ := strconv.Unquote(q)
	rest := w[len(q):]
	if rest == "" {
		return []byte(d), nil
	}
	n, err := strconv.Atoi(strings.TrimPrefix(rest, "*"))
	if err != nil || !strings.HasPrefix(rest, "*") {
		return nil, fmt.Errorf("bad descriptor repetition %q", rest)
	}
	return []byte(strings.Repeat(d, n)), nil
}

// parseU64 reads an unsigned value; a negative one is taken modulo 2^64.
func parseU64(w string) (uint64, error) {
	if strings.HasPrefix(w, "-") {
		n, err := strconv.ParseInt(w, 0, 64)
		return uint64(n), err
	}
	return strconv.ParseUint(w, 0, 64)
}

// djb2 is the client's descriptor hash (SEMANTICS.md §3).
func djb2(b []byte) uint32 {
	h := uint32(5381)
	for _, c := range b {
		h = h*33 + uint32(c)
	}
	return h
}

// check verifies the table's internal consistency: both object maps agree,
// the per-client indexes mirror owners and getters exactly, and no freeable
// object is left behind by a lifecycle call.
func (t *Table) check() error {
	if len(t.byID) != len(t.byDesc) {
		return fmt.Errorf("%d ids but %d descriptors", len(t.byID), len(t.byDesc))
	}
	if len(t.byID) > t.max {
		return fmt.Errorf("%d objects exceed the limit %d", len(t.byID), t.max)
	}
	got := map[int32]map[int32]struct{}{}
	owned := map[int32]map[int32]struct{}{}
	for id, o := range t.byID {
		if o.id != id || id <= 0 || id > t.idMax {
			return fmt.Errorf("object under id %d has id %d", id, o.id)
		}
		if t.byDesc[o.desc] != o {
			return fmt.Errorf("object %d not found by its descriptor", id)
		}
		if o.destroyed && o.getters.Len() == 0 {
			return fmt.Errorf("object %d destroyed and unreferenced but not freed", id)
		}
		if o.owner < 0 {
			return fmt.Errorf("object %d has owner %d", id, o.owner)
		}
		if o.owner != 0 {
			if owned[o.owner] == nil {
				owned[o.owner] = map[int32]struct{}{}
			}
			owned[o.owner][id] = struct{}{}
		}
		for c, d := range o.getters.All() {
			if d > o.maxLease {
				return fmt.Errorf("object %d: getter c%d lease %d beyond max_lease %d", id, c, d, o.maxLease)
			}
			if got[c] == nil {
				got[c] = map[int32]struct{}{}
			}
			got[c][id] = struct{}{}
		}
	}
	if err := sameIndex("got", t.got, got); err != nil {
		return err
	}
	return sameIndex("owned", t.owned, owned)
}

// sameIndex compares a per-client index with the one rebuilt from the
// objects; empty entries in have are allowed (they stay until RemoveClient).
func sameIndex(name string, have, want map[int32]map[int32]struct{}) error {
	for c, ids := range have {
		if len(ids) != 0 && want[c] == nil {
			return fmt.Errorf("%s index has c%d, which has no objects", name, c)
		}
	}
	for c, ids := range want {
		h := have[c]
		if len(h) != len(ids) {
			return fmt.Errorf("%s index of c%d has %d ids, want %d", name, c, len(h), len(ids))
		}
		for id := range ids {
			if _, ok := h[id]; !ok {
				return fmt.Errorf("%s index of c%d lacks %d", name, c, id)
			}
		}
	}
	return nil
}
