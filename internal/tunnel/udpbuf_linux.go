package tunnel

import (
	"net"

	"golang.org/x/sys/unix"
)

// growReceiveBuffer gives a tunneled UDP socket a receive buffer of size
// bytes: past net.core.rmem_max when the process may (CAP_NET_ADMIN), up to
// it otherwise. The send buffer stays at the default: a sender that fills
// it waits, which slows the tunnel's flow down instead of overfilling the
// device queue, where datagrams would be dropped.
func growReceiveBuffer(c *net.UDPConn, size int) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
	})
}
