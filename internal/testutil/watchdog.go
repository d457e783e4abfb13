package testutil

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"time"
)

// testFrame matches a test function's frame in a goroutine dump.
var testFrame = regexp.MustCompile(`\.(Test\w+)(\.func[\d.]+)?\(`)

// Watchdog ends the test binary after limit with the stacks of every goroutine
// that is inside a test function, and — on the last line, where a truncated
// CI log still shows it — the names of those tests. It fires before go test's
// own -timeout (10 minutes by default), whose panic names the running tests
// at the top of a dump that CI logs may cut. Call the returned function to
// disarm it.
func Watchdog(limit time.Duration) (stop func()) {
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
