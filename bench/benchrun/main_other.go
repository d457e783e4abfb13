//go:build !linux

// Command benchrun (bench/run) measures quicport on Linux only: its
// scenarios use Linux's UDP offloads, network namespaces, TUN devices,
// nftables and tc. Elsewhere it says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "benchrun: bench/run needs Linux (UDP offloads, network namespaces, TUN, nftables, tc); run it on a Linux machine or VM")
	os.Exit(1)
}
