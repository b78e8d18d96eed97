// Package scripttest runs the scenario scripts of the pure state machines
// (internal/lockcore, internal/umo) and compares what each command produces
// with what the script expects. Only tests import it.
//
// A script is a text file of one statement per line:
//
//	# a comment (also at the end of a line)
//	command words                 a command whose output must be empty
//	command words -> expected     a command whose output must be "expected"
//
// The package under test interprets the commands (see Script); this package
// reads the files, compares outputs with expectations (blanks between words
// do not matter) and reports mismatches with file:line. "#" and "->" inside
// a double-quoted string are part of the command.
//
// With the test flag -rewrite (go test ./internal/lockcore -rewrite) every
// expectation is replaced by the actual output and the files are written
// back; commands and comments are kept as written. Review the diff: a
// rewrite records what the code does, right or wrong.
package scripttest

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expectations of the testdata scripts with the actual outputs")

// Script interprets the commands of one file, in order.
type Script interface {
	// Exec runs one command and returns its output, "" for none. want is
	// the expectation as written ("" without "->"); the output may use it
	// only to choose names for values (such as binding a $variable), never
	// to decide what happened. An error is a failure that rewriting cannot
	// fix (a malformed command, a broken invariant); it ends the file.
	Exec(cmd, want string) (out string, err error)
}

// Ender is a Script that checks something once the file is done (for
// example that no event was left unasserted).
type Ender interface {
	End() error
}

// Mismatch is a command whose output differs from its expectation.
type Mismatch struct {
	Line int
	Cmd  string
	Want string
	Got  string
}

func (m Mismatch) String() string {
	return fmt.Sprintf("%d: %s\n\tgot:  %s\n\twant: %s", m.Line, m.Cmd, m.Got, m.Want)
}

// Options change how Files runs.
type Options struct {
	// Rewrite writes the actual outputs into the files.
	Rewrite bool
}

// Run runs every file matching pattern (e.g. "testdata/*.txt") as a
// subtest, each with a fresh Script; -rewrite rewrites them.
func Run(t *testing.T, pattern string, newScript func() Script) {
	t.Helper()
	Files(t, pattern, newScript, Options{Rewrite: *rewrite})
}

// Files is Run with explicit options.
func Files(t *testing.T, pattern string, newScript func() Script, opt Options) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no scripts match %s", pattern)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			mism, out, err := Execute(src, newScript())
			if opt.Rewrite && !bytes.Equal(out, src) {
				if werr := os.WriteFile(f, out, 0o644); werr != nil {
					t.Fatal(werr)
				}
				t.Logf("%s: rewrote %d expectations", f, len(mism))
				mism = nil
			}
			for _, m := range mism {
				t.Errorf("%s:%s", f, m)
			}
			if err != nil {
				t.Fatalf("%s:%v", f, err)
			}
		})
	}
}

// Execute runs the script src. It returns the commands whose output
// differed from the expectation, src with every expectation replaced by
// the actual output (up to the command that failed, if one did), and the
// failure, as "line: error".
func Execute(src []byte, s Script) ([]Mismatch, []byte, error) {
	lines := strings.SplitAfter(string(src), "\n")
	var out strings.Builder
	var mism []Mismatch
	for i, raw := range lines {
		body, nl := strings.CutSuffix(raw, "\n")
		stmt, comment := splitOutside(body, "#")
		cmd, want, hasWant := cutOutside(stmt, "->")
		cmd = strings.TrimSpace(cmd)
		if cmd == "" {
			if hasWant {
				return mism, nil, fmt.Errorf("%d: expectation without a command", i+1)
			}
			out.WriteString(raw)
			continue
		}
		want = strings.TrimSpace(want)
		got, err := s.Exec(cmd, want)
		if err != nil {
			out.WriteString(strings.Join(lines[i:], ""))
			return mism, []byte(out.String()), fmt.Errorf("%d: %s: %v", i+1, cmd, err)
		}
		got = normalize(got)
		if got != normalize(want) {
			mism = append(mism, Mismatch{Line: i + 1, Cmd: cmd, Want: want, Got: got})
		}
		// The rewritten line keeps the command as written (with its
		// indentation) and the comment.
		line := strings.TrimRight(stmt, " \t")
		if hasWant {
			line = strings.TrimRight(stmt[:indexOutside(stmt, "->")], " \t")
		}
		if got != "" {
			line += " -> " + got
		}
		if comment != "" {
			line += " " + comment
		}
		out.WriteString(line)
		if nl {
			out.WriteString("\n")
		}
	}
	if e, ok := s.(Ender); ok {
		if err := e.End(); err != nil {
			return mism, []byte(out.String()), fmt.Errorf("end: %v", err)
		}
	}
	return mism, []byte(out.String()), nil
}

// normalize collapses runs of blanks.
func normalize(s string) string { return strings.Join(strings.Fields(s), " ") }

// splitOutside cuts s before the first sep outside a double-quoted string,
// returning the part before and the rest starting with sep.
func splitOutside(s, sep string) (before, rest string) {
	if i := indexOutside(s, sep); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// cutOutside is strings.Cut ignoring separators inside double quotes.
func cutOutside(s, sep string) (before, after string, found bool) {
	if i := indexOutside(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

func indexOutside(s, sep string) int {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch {
		case quoted && s[i] == '\\':
			i++
		case s[i] == '"':
			quoted = !quoted
		case !quoted && strings.HasPrefix(s[i:], sep):
			return i
		}
	}
	return -1
}

// Fields parses key=value words; a word without "=" is an error.
func Fields(words []string) (map[string]string, error) {
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

// Num formats a number for an output: in hexadecimal near a width or sign
// boundary (0x7FFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFE, …), where the
// hexadecimal says what the value is, and in decimal otherwise.
func Num(v uint64) string {
	for _, k := range []uint{15, 16, 31, 32, 63} {
		b := uint64(1) << k
		if v+0x100 >= b && v <= b+0x100 {
			return fmt.Sprintf("0x%X", v)
		}
	}
	if v >= ^uint64(0)-0x100 {
		return fmt.Sprintf("0x%X", v)
	}
	return fmt.Sprint(v)
}
