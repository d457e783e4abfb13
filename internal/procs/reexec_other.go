//go:build !linux

package procs

import "errors"

// reexec: the monitor's setting was measured on Linux only, so elsewhere
// the process keeps the runtime's default.
func reexec(_, _ []string) error { return errors.New("not on Linux") }
