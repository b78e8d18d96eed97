package umo

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

// TestScripts replays the scenario scripts in testdata/*.txt. Each line is one
// command, optionally followed by "->" and what it must produce:
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
// defaults to 10. Status names are the C names with or without "DLOCK_".
// An id is a number or a $variable, bound by its first "id=$v". Failed
// commands must return id 0 (checked whether or not "id=" is given).
// After every command the table's indexes are checked for consistency.
func TestScripts(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) { runScript(t, f) })
	}
}

type script struct {
	t    *testing.T
	pos  string // file:line of the current command
	tab  *Table
	now  uint32
	vars map[string]int32
}

func runScript(t *testing.T, file string) {
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	s := &script{t: t, tab: NewTable(Limits{}), vars: map[string]int32{}}
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s.pos = fmt.Sprintf("%s:%d", file, n)
		if err := s.exec(line); err != nil {
			t.Errorf("%s: %s: %v", s.pos, line, err)
		}
		if err := s.tab.check(); err != nil {
			t.Fatalf("%s: %s: inconsistent table: %v", s.pos, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

func (s *script) exec(line string) error {
	cmdPart, want, hasWant := strings.Cut(line, "->")
	want = strings.TrimSpace(want)
	toks, err := tokenize(cmdPart)
	if err != nil {
		return err
	}
	if len(toks) == 0 {
		return fmt.Errorf("empty command")
	}
	client := int32(-1)
	if c, ok := parseClient(toks[0]); ok {
		client = c
		toks = toks[1:]
		if len(toks) == 0 {
			return fmt.Errorf("client without command")
		}
	}
	verb, args := toks[0], toks[1:]
	needClient := verb == "create" || verb == "get" || verb == "release" || verb == "destroy"
	if needClient != (client >= 0) {
		return fmt.Errorf("%q: client prefix is required exactly for create/get/release/destroy", verb)
	}
	needWant := verb != "at" && verb != "limit" && verb != "remove"
	if needWant != hasWant {
		return fmt.Errorf("%q: \"->\" expectation is required except for at/limit/remove", verb)
	}

	switch verb {
	case "limit":
		n, err := s.num(args, 1)
		if err != nil {
			return err
		}
		s.tab = NewTable(Limits{MaxObjects: int(n[0])})
		s.vars = map[string]int32{}
		return nil
	case "at":
		n, err := s.num(args, 1)
		if err != nil {
			return err
		}
		s.now = uint32(n[0])
		return nil
	case "remove":
		if len(args) != 1 {
			return fmt.Errorf("remove takes one client")
		}
		c, ok := parseClient(args[0])
		if !ok {
			return fmt.Errorf("bad client %q", args[0])
		}
		s.tab.RemoveClient(s.now, c)
		return nil
	case "len":
		return expectEqual("len", strconv.Itoa(s.tab.Len()), want)
	case "show":
		if len(args) != 1 {
			return fmt.Errorf("show takes one id")
		}
		id, err := s.id(args[0])
		if err != nil {
			return err
		}
		return expectEqual("show", s.tab.render(id), want)
	case "create", "get":
		if len(args) == 0 {
			return fmt.Errorf("%s needs a descriptor", verb)
		}
		desc, err := parseDesc(args[0])
		if err != nil {
			return err
		}
		kv, err := keyValues(args[1:])
		if err != nil {
			return err
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
				return err
			}
		}
		var id int32
		var st dlock.Status
		if verb == "create" {
			id, st = s.tab.Create(s.now, client, desc, int32(pref), uint32(lease), init)
		} else {
			id, st = s.tab.Get(s.now, client, desc, uint32(lease))
		}
		if st != dlock.Success && id != 0 {
			return fmt.Errorf("%v returned with id %d, want 0", st, id)
		}
		return s.expect(st, want, map[string]func(string) error{
			"id": func(w string) error { return s.matchID(w, id) },
		})
	case "release", "destroy":
		if len(args) != 1 {
			return fmt.Errorf("%s takes one id", verb)
		}
		id, err := s.id(args[0])
		if err != nil {
			return err
		}
		var st dlock.Status
		if verb == "release" {
			st = s.tab.Release(s.now, client, id)
		} else {
			st = s.tab.Destroy(s.now, client, id)
		}
		return s.expect(st, want, nil)
	case "faa", "cas", "load":
		nargs := map[string]int{"faa": 2, "cas": 3, "load": 1}[verb]
		if len(args) != nargs {
			return fmt.Errorf("%s takes %d arguments", verb, nargs)
		}
		id, err := s.id(args[0])
		if err != nil {
			return err
		}
		var v [2]uint64
		for i, a := range args[1:] {
			if v[i], err = parseU64(a); err != nil {
				return err
			}
		}
		var got uint64
		var st dlock.Status
		key := "value"
		switch verb {
		case "faa":
			got, st = s.tab.FetchAndAdd(id, v[0])
			key = "old"
		case "cas":
			st = s.tab.CompareAndSwap(id, v[0], v[1])
		case "load":
			got, st = s.tab.Load(id)
		}
		return s.expect(st, want, map[string]func(string) error{
			key: func(w string) error {
				n, err := parseU64(w)
				if err != nil {
					return err
				}
				return expectEqual(key, strconv.FormatUint(got, 10), strconv.FormatUint(n, 10))
			},
		})
	}
	return fmt.Errorf("unknown command %q", verb)
}

// expect compares a status with the first word of want and hands the
// key=value words after it to checks.
func (s *script) expect(st dlock.Status, want string, checks map[string]func(string) error) error {
	words := strings.Fields(want)
	if len(words) == 0 {
		return fmt.Errorf("expectation has no status")
	}
	name := strings.TrimPrefix(st.String(), "DLOCK_")
	if name != strings.TrimPrefix(words[0], "DLOCK_") {
		return fmt.Errorf("status %s, want %s", name, words[0])
	}
	kv, err := keyValues(words[1:])
	if err != nil {
		return err
	}
	for k, v := range kv {
		check := checks[k]
		if check == nil {
			return fmt.Errorf("nothing to compare %s= with", k)
		}
		if err := check(v); err != nil {
			return err
		}
	}
	return nil
}

// matchID binds a $variable on first use and otherwise compares.
func (s *script) matchID(w string, got int32) error {
	if strings.HasPrefix(w, "$") {
		if want, ok := s.vars[w]; ok {
			if got != want {
				return fmt.Errorf("id = %d, want %d (%s)", got, want, w)
			}
			return nil
		}
		s.vars[w] = got
		return nil
	}
	return expectEqual("id", strconv.Itoa(int(got)), w)
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

func expectEqual(what, got, want string) error {
	if got != want {
		return fmt.Errorf("%s = %s, want %s", what, got, want)
	}
	return nil
}

// render describes object id the way "show" expects it.
func (t *Table) render(id int32) string {
	o := t.byID[id]
	if o == nil {
		return "gone"
	}
	clients := make([]int32, 0, o.getters.len())
	for c := range o.getters.clients() {
		clients = append(clients, c)
	}
	slices.Sort(clients)
	getters := make([]string, len(clients))
	for i, c := range clients {
		d, _ := o.getters.get(c)
		getters[i] = fmt.Sprintf("c%d@%d", c, d)
	}
	g := strings.Join(getters, ",")
	if g == "" {
		g = "-"
	}
	return fmt.Sprintf("owner=%d refs=%d getters=%s destroyed=%t lease=%d value=%d",
		o.owner, o.getters.len(), g, o.destroyed, o.maxLease, o.value)
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

func keyValues(words []string) (map[string]string, error) {
	kv := make(map[string]string, len(words))
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, fmt.Errorf("want key=value, got %q", w)
		}
		if _, dup := kv[k]; dup {
			return nil, fmt.Errorf("duplicate %s=", k)
		}
		kv[k] = v
	}
	return kv, nil
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
		if o.destroyed && o.getters.len() == 0 {
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
		for c, d := range o.getters.all() {
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
