package tunnel

import (
	"net"

	"golang.org/x/sys/unix"
)

// growUDPBuffers gives a tunneled UDP socket buffers of size bytes each
// way: past the net.core.rmem_max / wmem_max caps when the process may
// (CAP_NET_ADMIN), up to them otherwise.
func growUDPBuffers(c *net.UDPConn, size int) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[0], size) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[1], size)
			}
		}
	})
}
