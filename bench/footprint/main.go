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
// apart) and -counted N keeps only the stretches with N of them;
// -symbols FILE (the output of `go tool nm PROGRAM`) adds which packages
// and functions the lines of code belong to. When the trace ends it
// prints the medians, leaving out the first fifth of the stretches
// (start-up).
package main

import (
	"bufio"
	"cmp"
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
	byFunc                        map[string]int // lines of code per function, with -symbols
}

func main() {
	log.SetFlags(0)
	every := flag.Int("every", 1, "passes through the marker per stretch")
	count := flag.String("count", "", "an instruction address (hex) to count per stretch")
	only := flag.Int("counted", -1, "keep only the stretches with this many passes through -count")
	symbols := flag.String("symbols", "", "`FILE` holding the output of go tool nm for the program, to attribute lines of code to functions")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: footprint MARKER [-every K] [-count ADDR [-counted N]] [-symbols FILE] < lackey trace")
		flag.PrintDefaults()
	}
	marker, err := parseAddr(firstArg())
	if err != nil {
		log.Fatalf("MARKER %q is not an address in hex (from go tool nm): %v", os.Args[1], err)
	}
	flag.CommandLine.Parse(os.Args[2:])
	var counted uint64
	if *count != "" {
		if counted, err = parseAddr(*count); err != nil {
			log.Fatalf("-count %q is not an address in hex: %v", *count, err)
		}
	} else if *only >= 0 {
		log.Fatal("-counted needs -count: the instruction whose passes it counts")
	}
	if *every < 1 {
		log.Fatal("-every must be at least 1")
	}
	var syms symtab
	if *symbols != "" {
		if syms, err = readSymbols(*symbols); err != nil {
			log.Fatalf("-symbols: %v", err)
		}
	}
	ss, err := measure(bufio.NewReaderSize(os.Stdin, 1<<20), marker, *every, counted, syms)
	if err != nil {
		log.Fatal(err)
	}
	ss, err = choose(ss, *only)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(report(ss))
	if syms != nil {
		fmt.Print(breakdown(ss))
	}
}

// choose leaves out the first fifth of the stretches (start-up) and, when
// only is 0 or more, those without only passes through -count.
func choose(ss []stretch, only int) ([]stretch, error) {
	if len(ss) < 5 {
		return nil, fmt.Errorf("only %d stretches: run more round trips, or check the marker", len(ss))
	}
	ss = ss[len(ss)/5:]
	if only >= 0 {
		ss = slices.DeleteFunc(ss, func(s stretch) bool { return s.counted != only })
		if len(ss) == 0 {
			return nil, fmt.Errorf("no stretch has %d passes through -count", only)
		}
	}
	return ss, nil
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
// " S" or " M ADDR,SIZE" for data) and returns a stretch for each
// every passes through marker. An access that spans two lines counts the first.
func measure(r *bufio.Reader, marker uint64, every int, counted uint64, syms symtab) ([]stretch, error) {
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
			if syms != nil {
				cur.byFunc = map[string]int{}
				for l := range code {
					cur.byFunc[syms.lookup(l<<6)]++
				}
			}
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
	if len(s) < 3 || !strings.ContainsRune("ILSM", rune(s[0])) || s[1] != ' ' {
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

// report gives the medians of the stretches, over all of them and for
// each number of counted passes.
func report(ss []stretch) string {
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

// symtab is a program's functions by address, from `go tool nm`.
type symtab []symbol

type symbol struct {
	addr uint64
	name string
}

func readSymbols(path string) (symtab, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var t symtab
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "  4a7fe0 T syscall.write": address, kind, name (which may hold spaces)
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 || (fields[1] != "T" && fields[1] != "t") {
			continue
		}
		a, err := parseAddr(fields[0])
		if err != nil {
			continue
		}
		t = append(t, symbol{a, strings.Join(fields[2:], " ")})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(t) == 0 {
		return nil, fmt.Errorf("%s lists no functions: give it the output of go tool nm", path)
	}
	slices.SortFunc(t, func(a, b symbol) int { return cmp.Compare(a.addr, b.addr) })
	return t, nil
}

// lookup names the function a code address is in: the last one starting
// at or below it.
func (t symtab) lookup(addr uint64) string {
	i, _ := slices.BinarySearchFunc(t, addr+1, func(s symbol, a uint64) int { return cmp.Compare(s.addr, a) })
	if i == 0 {
		return "?"
	}
	return t[i-1].name
}

// pkg is the package part of a Go function's name: "ackhandler" for
// "github.com/quic-go/quic-go/internal/ackhandler.(*sentPacketHandler).SentPacket".
func pkg(fn string) string {
	if i := strings.LastIndexByte(fn, '/'); i >= 0 {
		fn = fn[i+1:]
	}
	if i := strings.IndexByte(fn, '.'); i >= 0 {
		fn = fn[:i]
	}
	return fn
}

// breakdown gives the mean lines of code per stretch of each package and
// of the 40 functions with the most.
func breakdown(ss []stretch) string {
	byFunc, byPkg := map[string]int{}, map[string]int{}
	for _, s := range ss {
		for fn, n := range s.byFunc {
			byFunc[fn] += n
			byPkg[pkg(fn)] += n
		}
	}
	var b strings.Builder
	list := func(title string, m map[string]int, limit int) {
		names := slices.Collect(maps.Keys(m))
		slices.SortFunc(names, func(x, y string) int { return cmp.Or(cmp.Compare(m[y], m[x]), cmp.Compare(x, y)) })
		fmt.Fprintf(&b, "lines of code per stretch, by %s:\n", title)
		for _, n := range names[:min(limit, len(names))] {
			fmt.Fprintf(&b, "%8.1f  %s\n", float64(m[n])/float64(len(ss)), n)
		}
	}
	list("package", byPkg, 25)
	list("function", byFunc, 40)
	return b.String()
}
