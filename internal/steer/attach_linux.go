package steer

import "golang.org/x/sys/unix"

// attach sets the sk_reuseport program of fd's SO_REUSEPORT group.
func attach(fd, prog int) error {
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, prog)
}
