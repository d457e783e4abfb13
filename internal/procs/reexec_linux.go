package procs

import "syscall"

// reexec replaces the process image with this program's own, by
// /proc/self/exe, which still works when the binary was replaced on disk
// after the process started (an upgrade).
func reexec(args, env []string) error {
	return syscall.Exec("/proc/self/exe", args, env)
}
