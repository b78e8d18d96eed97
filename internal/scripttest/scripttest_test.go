package scripttest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// echo outputs its command upper-cased; "fail" is an error; End fails when
// told to.
type echo struct {
	wants  []string
	endErr error
}

func (e *echo) Exec(cmd, want string) (string, error) {
	e.wants = append(e.wants, want)
	if cmd == "fail" {
		return "", errors.New("boom")
	}
	if cmd == "silent" {
		return "", nil
	}
	return strings.ToUpper(cmd), nil
}

func (e *echo) End() error { return e.endErr }

func TestExecute(t *testing.T) {
	src := "# comment\n" +
		"a b ->   A   B\n" +
		"  c -> wrong # trailing -> comment\n" +
		"\"x -> y # z\" -> \"X -> Y # Z\"\n" +
		"silent\n" +
		"silent -> something\n" +
		"d\n" +
		"last -> LAST"
	e := &echo{}
	mism, out, err := Execute([]byte(src), e)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mism {
		got = append(got, fmt.Sprintf("%d %s|%s|%s", m.Line, m.Cmd, m.Want, m.Got))
	}
	want := []string{"3 c|wrong|C", "6 silent|something|", "7 d||D"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("mismatches %q, want %q", got, want)
	}
	wantOut := "# comment\n" +
		"a b -> A B\n" +
		"  c -> C # trailing -> comment\n" +
		"\"x -> y # z\" -> \"X -> Y # Z\"\n" +
		"silent\n" +
		"silent\n" +
		"d -> D\n" +
		"last -> LAST"
	if string(out) != wantOut {
		t.Errorf("rewritten:\n%s\nwant:\n%s", out, wantOut)
	}
	if fmt.Sprint(e.wants) != fmt.Sprint([]string{"A   B", "wrong", "\"X -> Y # Z\"", "", "something", "", "LAST"}) {
		t.Errorf("Exec saw expectations %q", e.wants)
	}
	// The rewritten script passes.
	if mism, _, err := Execute(out, &echo{}); len(mism) != 0 || err != nil {
		t.Errorf("rewritten script: %v, %v", mism, err)
	}
}

func TestExecuteErrors(t *testing.T) {
	_, out, err := Execute([]byte("a -> x\nfail\nb -> y\n"), &echo{})
	if err == nil || !strings.HasPrefix(err.Error(), "2: fail: boom") {
		t.Errorf("error %v, want line 2", err)
	}
	if string(out) != "a -> A\nfail\nb -> y\n" {
		t.Errorf("rewritten up to the failure: %q", out)
	}
	if _, _, err := Execute([]byte("-> x\n"), &echo{}); err == nil {
		t.Error("an expectation without a command was accepted")
	}
	if _, _, err := Execute([]byte("a -> A\n"), &echo{endErr: errors.New("left over")}); err == nil || !strings.Contains(err.Error(), "left over") {
		t.Errorf("End's error lost: %v", err)
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[uint64]string{0: "0", 105: "105", 0x7FFF: "0x7FFF", 0xFFFF: "0xFFFF", 0x10000: "0x10000",
		40000: "40000", 0xFFFFFFFF: "0xFFFFFFFF", 1 << 40: "1099511627776", 0xFFFFFFFFFFFFFFFE: "0xFFFFFFFFFFFFFFFE"} {
		if got := Num(v); got != want {
			t.Errorf("Num(%d) = %s, want %s", v, got, want)
		}
	}
}
