package main

import (
	"bufio"
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
	ss, err := measure(bufio.NewReader(strings.NewReader(trace)), 0x1000, 1, 0x2000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 10 {
		t.Fatalf("%d stretches, want 10", len(ss))
	}
	for i, s := range ss {
		if s != (stretch{accesses: 6, code: 3, data: 2, counted: 1}) {
			t.Fatalf("stretch %d = %+v, want 6 accesses, 3 lines of code, 2 of data, 1 counted", i, s)
		}
	}
	ss, err = measure(bufio.NewReader(strings.NewReader(trace)), 0x1000, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 5 || ss[0] != (stretch{accesses: 12, code: 3, data: 2}) {
		t.Fatalf("every 2nd pass: %d stretches, the first %+v; want 5, 12 accesses over the same 3 and 2 lines", len(ss), ss[0])
	}
	want := "8 stretches: accesses 6, code lines 3, data lines 2 (medians)\n"
	ss, _ = measure(bufio.NewReader(strings.NewReader(trace)), 0x1000, 1, 0)
	if got := report(ss); got != want {
		t.Fatalf("report = %q, want %q", got, want)
	}
	if got := report(ss[:3]); !strings.Contains(got, "only 3 stretches") {
		t.Fatalf("report of 3 stretches = %q, want it to say there are too few", got)
	}
}
