package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"go.uber.org/goleak"

	"github.com/quicport/quicport/internal/testutil"
)

// leakChecked runs the tests, then fails the run if goroutines leaked.
type leakChecked struct{ m *testing.M }

func (l leakChecked) Run() int {
	dir, err := os.MkdirTemp("", "quicport-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if quicportBin, err = testutil.BuildQuicport(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	flag.Parse() // the watchdog reads -test.timeout
	stop := testutil.Watchdog()
	code := l.m.Run()
	stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutine leak: %v\n", err)
			return 1
		}
	}
	return code
}

func TestMain(m *testing.M) {
	testscript.Main(leakChecked{m}, map[string]func(){
		"quicport": func() {
			os.Exit(Run(context.Background(), os.Args[1:], Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Getenv))
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{Dir: "testdata/script"})
}
