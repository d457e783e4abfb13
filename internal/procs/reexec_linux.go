package procs

import (
	"errors"
	"os"
	"syscall"
)

// reexec replaces the process image with this program's own, by the path
// of its file, so that the process keeps its name (run through
// /proc/self/exe it would be called "exe" in ps, top and pgrep). The file
// at that path must still be the one running: after an upgrade replaced
// it, the process goes on as it is rather than start another version.
func reexec(args, env []string) error {
	path, err := os.Executable()
	if err != nil {
		return err
	}
	running, err := os.Stat("/proc/self/exe")
	if err != nil {
		return err
	}
	onDisk, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !os.SameFile(running, onDisk) {
		return errors.New(path + " is no longer the running program")
	}
	return syscall.Exec(path, args, env)
}
