//go:build !linux

package tunnel

import "syscall"

// waitSent would wait until c's peer has acknowledged what was written;
// without a way to ask the kernel, a reset may lose the last bytes.
func waitSent(c syscall.Conn) {}
