// Command footprint counts how much memory a process touches per round
// trip: the distinct 64-byte lines of code and of data in each stretch of
// a valgrind trace between two passes through a marker instruction (a
// function entered once per round trip, such as the TCP write of a tunnel
// end). On a machine where the processes of a round trip take turns on one
// CPU, each starts its turn with little of its working set cached, and
// what it touches is much of what it costs; unlike a timing, the count is
// the same from run to run (docs/BENCHMARKS.md, "How much a round trip
// touches").
//
//	valgrind --tool=lackey --trace-mem=yes --log-fd=9 PROGRAM ARGS... 9> >(footprint MARKER [-every K] [-count ADDR])
//
// MARKER is the address (hex) of the marker's first instruction: for a Go
// program `go tool nm PROGRAM | grep ' net.(\*conn).Write$'`; -every K
// ends a stretch at every K-th pass (2 when the function runs twice per
// round trip); -count ADDR also counts the passes through another
// instruction per stretch (a send, to tell stretches with an extra packet
// apart). When the trace ends it prints the medians, leaving out the first
// fifth of the stretches (start-up).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
)

// stretch is what one stretch of the trace touched.
type stretch struct {
	accesses, code, data, counted int
}

func main() {
	log.SetFlags(0)
	every := flag.Int("every", 1, "passes through the marker per stretch")
	count := flag.String("count", "", "an instruction address (hex) to count per stretch")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: footprint MARKER [-every K] [-count ADDR] < lackey trace")
		flag.PrintDefaults()
	}
	marker, err := parseAddr(firstArg())
	if err != nil {
		log.Fatalf("marker: %v", err)
	}
	flag.CommandLine.Parse(os.Args[2:])
	var counted uint64
	if *count != "" {
		if counted, err = parseAddr(*count); err != nil {
			log.Fatalf("-count: %v", err)
		}
	}
	if *every < 1 {
		log.Fatal("-every must be at least 1")
	}
	ss, err := measure(bufio.NewReaderSize(os.Stdin, 1<<20), marker, *every, counted)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(report(ss))
}

func firstArg() string {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		flag.Usage()
		os.Exit(2)
	}
	return os.Args[1]
}

func parseAddr(s string) (uint64, error) {
	return strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
}

// measure reads a lackey trace ("I  ADDR,SIZE" for an instruction, " L",
// " S" or " M ADDR,SIZE" for data) and returns one stretch per every
// passes through marker. An access that spans two lines counts the first.
func measure(r *bufio.Reader, marker uint64, every int, counted uint64) ([]stretch, error) {
	code, data := map[uint64]struct{}{}, map[uint64]struct{}{}
	var ss []stretch
	var cur stretch
	passes := 0
	for {
		line, err := r.ReadSlice('\n')
		if err == io.EOF {
			return ss, nil
		}
		if err != nil && err != bufio.ErrBufferFull {
			return nil, err
		}
		kind, addr, ok := parseLine(line)
		if !ok {
			continue
		}
		cur.accesses++
		if kind != 'I' {
			data[addr>>6] = struct{}{}
			continue
		}
		code[addr>>6] = struct{}{}
		if counted != 0 && addr == counted {
			cur.counted++
		}
		if addr != marker {
			continue
		}
		if passes++; passes%every == 0 {
			cur.code, cur.data = len(code), len(data)
			ss = append(ss, cur)
			cur = stretch{}
			clear(code)
			clear(data)
		}
	}
}

// parseLine takes one line of the trace apart; valgrind's own lines
// ("==PID== ...") and anything else are not accesses.
func parseLine(line []byte) (kind byte, addr uint64, ok bool) {
	s := strings.TrimSpace(string(line))
	if len(s) < 3 || !strings.ContainsRune("ILSM", rune(s[0])) || (s[1] != ' ') {
		return 0, 0, false
	}
	comma := strings.IndexByte(s, ',')
	if comma < 0 {
		return 0, 0, false
	}
	a, err := strconv.ParseUint(strings.TrimSpace(s[2:comma]), 16, 64)
	if err != nil {
		return 0, 0, false
	}
	return s[0], a, true
}

// report gives the medians of the stretches after the first fifth, over
// all of them and for each number of counted passes.
func report(ss []stretch) string {
	if len(ss) < 5 {
		return fmt.Sprintf("only %d stretches: run more round trips, or check the marker\n", len(ss))
	}
	ss = ss[len(ss)/5:]
	var b strings.Builder
	fmt.Fprintf(&b, "%d stretches: %s\n", len(ss), medians(ss))
	groups := map[int][]stretch{}
	for _, s := range ss {
		groups[s.counted] = append(groups[s.counted], s)
	}
	if len(groups) > 1 {
		for _, n := range slices.Sorted(maps.Keys(groups)) {
			fmt.Fprintf(&b, "  with %d counted: %d stretches: %s\n", n, len(groups[n]), medians(groups[n]))
		}
	}
	return b.String()
}

func medians(ss []stretch) string {
	med := func(f func(stretch) int) int {
		v := make([]int, len(ss))
		for i, s := range ss {
			v[i] = f(s)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return fmt.Sprintf("accesses %d, code lines %d, data lines %d (medians)",
		med(func(s stretch) int { return s.accesses }),
		med(func(s stretch) int { return s.code }),
		med(func(s stretch) int { return s.data }))
}
