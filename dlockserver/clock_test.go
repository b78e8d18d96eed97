package dlockserver

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTimeOnlyThroughClock checks that the server reads time and makes
// timers only through its clock (clock.go): no other file of the package
// calls the time package's clock or timer functions. Durations, time.Time
// values and their methods are fine.
func TestTimeOnlyThroughClock(t *testing.T) {
	banned := map[string]bool{"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
		"AfterFunc": true, "NewTimer": true, "NewTicker": true, "Tick": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, name := range files {
		if name == "clock.go" || strings.HasSuffix(name, "_test.go") {
			continue
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "time" && banned[sel.Sel.Name] {
				t.Errorf("%s: time.%s outside clock.go: read time through the server's clock", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
	if checked < 5 {
		t.Fatalf("checked only %d files: wrong directory?", checked)
	}
}

// TestInstantIsTheClock: a request's instant, read from the monotonic clock
// alone, is the clock's second and nanoseconds at that moment (the ones
// seconds and nanos give for a time.Time), for a clock anchored at any
// fraction of a second.
func TestInstantIsTheClock(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, frac := range []time.Duration{0, time.Millisecond, 999 * time.Millisecond} {
		anchor := time.Unix(1_800_000_000, int64(frac))
		s.clk = newClock(time.Now())
		s.clk.wallSec, s.clk.wallFrac = anchor.Unix(), int64(anchor.Nanosecond())
		before := s.clk.now()
		at := s.instant()
		after := s.clk.now()
		if at.ns < s.clk.nanos(before) || at.ns > s.clk.nanos(after) {
			t.Errorf("frac %v: instant ns %d outside [%d, %d]", frac, at.ns, s.clk.nanos(before), s.clk.nanos(after))
		}
		if at.sec < s.clk.seconds(before) || at.sec > s.clk.seconds(after) {
			t.Errorf("frac %v: instant second %d outside [%d, %d]", frac, at.sec, s.clk.seconds(before), s.clk.seconds(after))
		}
	}
}
