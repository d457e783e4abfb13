// Command quicport forwards TCP ports over QUIC. See README.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/quicport/quicport/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Stdio{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}, os.Getenv)
	stop()
	os.Exit(code)
}
