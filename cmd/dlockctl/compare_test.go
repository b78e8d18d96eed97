package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/dlock-io/dlock/dlocktest"
)

// TestBenchCompare measures two real servers in one run and prints the
// ratios of the first to the second.
func TestBenchCompare(t *testing.T) {
	a, b := dlocktest.NewServer(t, nil), dlocktest.NewServer(t, nil)
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "-addr", a.Addr, "-compare", b.Addr, "-count", "200", "-warmup", "0"}
	if err := run(testContext(t), args, strings.NewReader(""), &stdout, &stderr); err != nil {
		t.Fatalf("run %q: %v\n%s", args, err, stderr.String())
	}
	m := regexp.MustCompile(`ratio \S+ ÷ \S+: ops/s ([0-9.]+)  p50 ([0-9.]+)  p99 ([0-9.]+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no ratio line in\n%s", stdout.String())
	}
	for _, s := range m[1:] {
		if v, err := strconv.ParseFloat(s, 64); err != nil || v <= 0 {
			t.Fatalf("ratio %q in\n%s", s, stdout.String())
		}
	}
	if _, err := parseBenchFlags([]string{"-compare", b.Addr}, &stderr); err == nil {
		t.Error("-compare without -addr accepted")
	}
}
