//go:build unix

package cli

import (
	"io"
	"os"
	"syscall"
)

// pollable returns stdin in non-blocking mode, so closing it interrupts a
// pending read. An inherited stdin is blocking, and a read blocked in the
// kernel would otherwise keep ssh-proxy alive after its tunnel died.
func pollable(r io.Reader) io.Reader {
	f, ok := r.(*os.File)
	if !ok {
		return r
	}
	fd := f.Fd()
	if err := syscall.SetNonblock(int(fd), true); err != nil {
		return r
	}
	return os.NewFile(fd, f.Name())
}
