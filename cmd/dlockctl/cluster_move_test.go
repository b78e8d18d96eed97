package main

import (
	"reflect"
	"testing"

	"github.com/dlock-io/dlock/dlockserver/ha"
)

// TestParseRanges: the slots of "dlockctl cluster move" as ranges and
// single slots; bad input is an error, and formatRanges prints them back.
func TestParseRanges(t *testing.T) {
	rs, err := parseRanges("100-199, 512,7-7")
	if err != nil {
		t.Fatal(err)
	}
	if want := (ha.Ranges{{100, 199}, {512, 512}, {7, 7}}); !reflect.DeepEqual(rs, want) {
		t.Fatalf("got %v, want %v", rs, want)
	}
	if got := formatRanges(rs); got != "100-199,512,7" {
		t.Fatalf("formatRanges: %q", got)
	}
	for _, bad := range []string{"", "x", "5-", "-5", "9-3", "1,,2", "1-2-3"} {
		if _, err := parseRanges(bad); err == nil {
			t.Errorf("parseRanges(%q) accepted", bad)
		}
	}
}
