package testutil

import "syscall"

// dieWithTest makes the kernel kill a started process when the test
// binary dies (a test timeout, a killed go test), so that no server or
// client outlives its test holding ports and CPU. It keys on the thread
// that started the process, which the Go runtime ends only for a goroutine
// that exits locked to it.
func dieWithTest() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
