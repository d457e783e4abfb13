//go:build !linux

package tunnel

import "net"

// growReceiveBuffer gives a tunneled UDP socket a receive buffer of size
// bytes, as far as the system allows.
func growReceiveBuffer(c *net.UDPConn, size int) { _ = c.SetReadBuffer(size) }
