// Package dataplane owns what a data plane publishes about itself: the
// state file `dp-<pid>.state` in the state directory, kept current while it
// runs and removed when it exits, and the reading of those files for
// `quicport ctl status`.
//
// It does not serve traffic (package server does) and holds no secrets.
package dataplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/quicport/quicport/internal/atomicfile"
)

// States of a data plane, as the specification names them.
const (
	Starting   = "STARTING"
	Active     = "ACTIVE"
	Draining   = "DRAINING"
	Terminated = "TERMINATED"
)

// Status is the content of a state file.
type Status struct {
	State             string `json:"state"`
	PID               int    `json:"pid"`
	Listen            string `json:"listen"`
	ActiveConnections int64  `json:"active_connections"`
	BytesSent         uint64 `json:"bytes_sent"`
	BytesReceived     uint64 `json:"bytes_received"`
	StartedAt         int64  `json:"started_at"`
	// Stale is set by List for a file whose process no longer runs.
	Stale bool `json:"-"`
}

// Dir returns the data planes' directory under the quicport state
// directory ($XDG_STATE_HOME/quicport).
func Dir(stateDir string) string { return filepath.Join(stateDir, "dataplanes") }

func fileName(pid int) string { return fmt.Sprintf("dp-%d.state", pid) }

// Publish writes the state file of this process now, every interval and
// whenever kick fires (a state change; kick may be nil), from status, until
// ctx ends; then it removes the file. Writes are atomic, so a reader never
// sees half a file, and a status that has not changed is not written again,
// so an idle data plane leaves the disk alone.
func Publish(ctx context.Context, dir string, interval time.Duration, status func() Status, kick <-chan struct{}) error {
	path := filepath.Join(dir, fileName(os.Getpid()))
	var last []byte
	write := func() error {
		b, err := json.Marshal(status())
		if err != nil {
			return err
		}
		b = append(b, '\n')
		if bytes.Equal(b, last) {
			return nil
		}
		if err := atomicfile.Write(path, b, 0o644); err != nil {
			return err
		}
		last = b
		return nil
	}
	if err := write(); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer os.Remove(path)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-kick:
		}
		if err := write(); err != nil {
			return fmt.Errorf("state file: %w", err)
		}
	}
}

// maxStateFile bounds a state file read back.
const maxStateFile = 64 << 10

// List reads the state files in dir, sorted by PID. A file whose process is
// gone (it was killed before it could remove the file) is marked Stale.
func List(dir string) ([]Status, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Status
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, "dp-") || !strings.HasSuffix(name, ".state") {
			continue
		}
		b, err := readBounded(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		var st Status
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, name), err)
		}
		st.Stale = !alive(st.PID)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, maxStateFile+1)
	n, err := f.Read(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if n > maxStateFile {
		return nil, fmt.Errorf("%s is larger than %d bytes; not a state file", path, maxStateFile)
	}
	return b[:n], nil
}

// alive reports whether a process with pid exists.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
