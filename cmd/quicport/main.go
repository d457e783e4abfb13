// Command quicport forwards TCP and UDP ports over QUIC. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/quicport/quicport/internal/cli"
	"github.com/quicport/quicport/internal/procs"
)

func main() {
	if cli.CarriesTraffic(os.Args[1:]) {
		// Returns only when it did not run the program again (already
		// done, or GODEBUG sets schedtrace): then it goes on as it is.
		_ = procs.KeepMonitorAwake()
	}
	// The first SIGINT or SIGTERM cancels the context with the signal as
	// its cause (quicport server treats them differently); a second one
	// ends the process at once.
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		signal.Stop(sigs)
		cancel(cli.Signaled{Signal: s})
	}()
	code := cli.Run(ctx, os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Getenv)
	cancel(nil)
	os.Exit(code)
}
