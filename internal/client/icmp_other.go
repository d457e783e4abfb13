//go:build !linux

package client

import "net"

// reportUnreachable is a no-op where the kernel reports no ICMP errors on
// unconnected UDP sockets: the handshake timeout decides instead.
func reportUnreachable(c *net.UDPConn, v6, on bool) {}
