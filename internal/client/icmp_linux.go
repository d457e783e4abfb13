package client

import (
	"net"

	"golang.org/x/sys/unix"
)

// reportUnreachable turns the kernel's reporting of ICMP errors (port or
// host unreachable) on the client's unconnected UDP socket on or off
// (IP_RECVERR, IPV6_RECVERR). On, the next read fails with the error, so a
// handshake to a port where nothing listens fails at once instead of
// waiting out the handshake timeout. It is on only during the handshake:
// on an established connection a stray ICMP error, or one answering a
// path-MTU probe, must not end the session.
func reportUnreachable(c *net.UDPConn, v6, on bool) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	v := 0
	if on {
		v = 1
	}
	_ = raw.Control(func(fd uintptr) {
		if v6 {
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVERR, v)
			return
		}
		_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, v)
	})
}
