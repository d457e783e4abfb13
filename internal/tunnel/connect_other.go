//go:build !linux

package tunnel

import "syscall"

// ConnectEarly does nothing here: how a second connect on a socket
// reports the first one's outcome is Linux's (see connect_linux.go).
func ConnectEarly(network, address string, c syscall.RawConn) error { return nil }
