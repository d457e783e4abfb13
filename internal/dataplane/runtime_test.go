package dataplane

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRuntimeDir(t *testing.T) {
	state := t.TempDir()
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }

	dir, err := RuntimeDir(getenv, state)
	if err != nil || dir != filepath.Join(state, "run") {
		t.Fatalf("default: %q, %v", dir, err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("created with mode %v, want 0700", fi.Mode().Perm())
	}

	env["XDG_RUNTIME_DIR"] = t.TempDir()
	if dir, err = RuntimeDir(getenv, state); err != nil || dir != filepath.Join(env["XDG_RUNTIME_DIR"], "quicport") {
		t.Fatalf("XDG_RUNTIME_DIR: %q, %v", dir, err)
	}

	// A directory others can enter is refused, with the fix.
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o755)
	env["QUICPORT_RUNTIME_DIR"] = open
	if _, err := RuntimeDir(getenv, state); err == nil || !strings.Contains(err.Error(), "chmod 700 "+open) {
		t.Fatalf("a 0755 runtime directory: %v", err)
	}
}
