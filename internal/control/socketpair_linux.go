package control

import "golang.org/x/sys/unix"

// socketpair returns a connected pair of unix stream sockets, both
// close-on-exec from the start, so no child started meanwhile inherits one.
func socketpair() ([2]int, error) {
	return unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
}
