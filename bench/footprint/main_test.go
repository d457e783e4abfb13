package main

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// One round trip of a made-up trace: three lines of code (the marker at
// 0x1000 last), two of data (a load and a store in one line, a modify in
// another), and a line of valgrind's own that is no access.
const roundTrip = `I  00002000,4
 L 00005000,8
 S 00005008,8
==42== a message of valgrind's
 M 00006000,4
I  00001040,4
I  00001000,4
`

func TestMeasureCountsDistinctLines(t *testing.T) {
	trace := strings.Repeat(roundTrip, 10)
	ss, err := measure(bufio.NewReader(strings.NewReader(trace)), 0x1000, 1, 0x2000, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 10 {
		t.Fatalf("%d stretches, want 10", len(ss))
	}
	for i, s := range ss {
		if s.accesses != 6 || s.code != 3 || s.data != 2 || s.counted != 1 {
			t.Fatalf("stretch %d = %+v, want 6 accesses, 3 lines of code, 2 of data, 1 counted", i, s)
		}
	}
	if chosen, err := choose(ss, 1); err != nil || len(chosen) != 8 {
		t.Fatalf("choosing the stretches with 1 counted pass: %d, %v; want the 8 after the first fifth", len(chosen), err)
	}
	ss, err = measure(bufio.NewReader(strings.NewReader(trace)), 0x1000, 2, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 5 || ss[0].accesses != 12 || ss[0].code != 3 || ss[0].data != 2 {
		t.Fatalf("every 2nd pass: %d stretches, the first %+v; want 5, 12 accesses over the same 3 and 2 lines", len(ss), ss[0])
	}
	want := "8 stretches: accesses 6, code lines 3, data lines 2 (medians)\n"
	ss, _ = measure(bufio.NewReader(strings.NewReader(trace)), 0x1000, 1, 0, nil)
	chosen, err := choose(ss, -1)
	if err != nil {
		t.Fatal(err)
	}
	if got := report(chosen); got != want {
		t.Fatalf("report = %q, want %q (the first fifth left out)", got, want)
	}
	if _, err := choose(ss[:3], -1); err == nil || !strings.Contains(err.Error(), "only 3 stretches") {
		t.Fatalf("choosing from 3 stretches: %v, want an error saying there are too few", err)
	}
	if _, err := choose(ss, 1); err == nil {
		t.Fatal("choosing stretches with 1 counted pass where none has one: no error")
	}
}

// With the program's symbols, each line of code counts for the function
// it starts in, and the functions for their packages.
func TestBreakdownByFunction(t *testing.T) {
	nm := filepath.Join(t.TempDir(), "nm")
	if err := os.WriteFile(nm, []byte(`    1000 T example.com/a/tunnel.(*end).write
    2000 T runtime.selectgo
    3000 D runtime.someData
`), 0o644); err != nil {
		t.Fatal(err)
	}
	syms, err := readSymbols(nm)
	if err != nil {
		t.Fatal(err)
	}
	if got := syms.lookup(0x1040); got != "example.com/a/tunnel.(*end).write" {
		t.Fatalf("lookup(0x1040) = %q", got)
	}
	if got := syms.lookup(0x0fff); got != "?" {
		t.Fatalf("lookup(0x0fff) = %q, want ? (before every function)", got)
	}
	ss, err := measure(bufio.NewReader(strings.NewReader(strings.Repeat(roundTrip, 10))), 0x1000, 1, 0, syms)
	if err != nil {
		t.Fatal(err)
	}
	got := breakdown(ss[2:])
	for _, want := range []string{"     2.0  tunnel\n", "     1.0  runtime\n", "     2.0  example.com/a/tunnel.(*end).write\n", "     1.0  runtime.selectgo\n"} {
		if !strings.Contains(got, want) {
			t.Fatalf("breakdown lacks %q:\n%s", want, got)
		}
	}
	if _, err := readSymbols(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("readSymbols of a missing file: no error")
	}
}
