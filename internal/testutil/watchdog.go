package testutil

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"time"
)

// testFrame matches a test function's frame in a goroutine dump.
var testFrame = regexp.MustCompile(`\.(Test\w+)(\.func[\d.]+)?\(`)

// watchdogLead is how long before go test's -timeout the watchdog fires.
const watchdogLead = 30 * time.Second

// Watchdog ends the test binary 30 seconds before go test's -timeout (10
// minutes unless the command line says otherwise) with the stacks of every
// goroutine that is inside a test function, and — on the last line, where a
// truncated CI log still shows it — the names of those tests. go test's own
// timeout panic names the running tests at the top of a dump that CI logs
// may cut. Call it from TestMain after flag.Parse (m.Run parses the flags
// itself, so parse them first), and call the returned function to disarm it.
// With -timeout 0 there is no watchdog either.
func Watchdog() (stop func()) {
	timeout := 10 * time.Minute
	if f := flag.Lookup("test.timeout"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			timeout, _ = g.Get().(time.Duration)
		}
	}
	if timeout <= 0 {
		return func() {}
	}
	limit := max(timeout-watchdogLead, timeout/2)
	t := time.AfterFunc(limit, func() {
		buf := make([]byte, 64<<20)
		buf = buf[:runtime.Stack(buf, true)]
		names := map[string]bool{}
		var order []string
		for _, g := range bytes.Split(buf, []byte("\n\n")) {
			m := testFrame.FindAllSubmatch(g, -1)
			if m == nil {
				continue
			}
			os.Stderr.Write(g)
			os.Stderr.Write([]byte("\n\n"))
			for _, sm := range m {
				if n := string(sm[1]); !names[n] {
					names[n] = true
					order = append(order, n)
				}
			}
		}
		fmt.Fprintf(os.Stderr, "watchdog: tests still running after %v: %v\n", limit, order)
		os.Exit(3)
	})
	return func() { t.Stop() }
}
