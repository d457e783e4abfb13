package dataplane

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// RuntimeDir returns the directory of the IPC sockets, creating it with
// mode 0700: $QUICPORT_RUNTIME_DIR, else $XDG_RUNTIME_DIR/quicport, else
// run/ in the quicport state directory (stateDir). It refuses a directory that other users
// could enter or that belongs to someone else: whoever can reach the
// sockets can drain the server or take its sockets.
func RuntimeDir(getenv func(string) string, stateDir string) (string, error) {
	dir := getenv("QUICPORT_RUNTIME_DIR")
	switch {
	case dir != "":
	case getenv("XDG_RUNTIME_DIR") != "":
		dir = filepath.Join(getenv("XDG_RUNTIME_DIR"), "quicport")
	default:
		dir = filepath.Join(stateDir, "run")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("runtime directory: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("runtime directory: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("runtime directory %s has mode %04o; other users could reach its control sockets: run chmod 700 %s", dir, fi.Mode().Perm(), dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("runtime directory %s belongs to uid %d, not to this user (%d); set QUICPORT_RUNTIME_DIR to a directory of your own", dir, st.Uid, os.Geteuid())
	}
	return dir, nil
}
