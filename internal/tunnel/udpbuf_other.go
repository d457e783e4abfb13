//go:build !linux

package tunnel

import "net"

// growUDPBuffers gives a tunneled UDP socket buffers of size bytes each
// way, as far as the system allows.
func growUDPBuffers(c *net.UDPConn, size int) {
	_ = c.SetReadBuffer(size)
	_ = c.SetWriteBuffer(size)
}
