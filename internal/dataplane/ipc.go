package dataplane

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/metrics"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/steer"
)

// IPC is one JSON request and one JSON response per connection over a unix
// socket in the runtime directory (mode 0700, so only this user can connect).
// A response that carries a socket (a data plane's UDP socket, a remote
// forward's listener) passes it as SCM_RIGHTS with the response.

// Operations on a data plane's socket.
const (
	OpInfo     = "info"      // Info
	OpStats    = "stats"     // Snapshot
	OpDrain    = "drain"     // begin draining
	OpShutdown = "shutdown"  // close every session (SessionClose) and exit
	OpTakeOver = "take-over" // a remote forward's listening socket (Port, Protocol, Identity)
	OpSteering = "steering"  // the BPF program and maps (none without BPF), for a control plane adopting this data plane
	OpAdopt    = "adopt"     // a control plane supervises this data plane from now on
	OpSocket   = "socket"    // the QUIC socket, for a control plane adopting a data plane that runs without BPF steering
)

// Operations on the control plane's socket.
const (
	OpGracefulRestart = "graceful-restart"
	OpDrainPID        = "drain-pid" // PID
)

// Request is an IPC request.
type Request struct {
	Op       string `json:"op"`
	PID      int    `json:"pid,omitempty"`
	Port     uint16 `json:"port,omitempty"`
	Protocol uint8  `json:"protocol,omitempty"`
	Identity string `json:"identity,omitempty"`
}

// Response is an IPC response. Error is set when the request failed.
type Response struct {
	Error    string    `json:"error,omitempty"`
	Message  string    `json:"message,omitempty"`
	Info     *Info     `json:"info,omitempty"`
	Snapshot *Snapshot `json:"snapshot,omitempty"`
}

// Info identifies a running data plane.
type Info struct {
	PID        int        `json:"pid"`
	ID         uint8      `json:"id"`   // steering id (supervised data planes)
	Salt       steer.Salt `json:"salt"` // steering salt, hex
	Supervised bool       `json:"supervised"`
	State      string     `json:"state"`
	Listen     string     `json:"listen"`
	StartedAt  int64      `json:"started_at"` // unix nanoseconds
	// Steered is set in the control plane's answer when BPF steering
	// keeps connections across a graceful restart.
	Steered bool `json:"steered,omitempty"`
}

// Snapshot is everything the control plane's API shows of a data plane.
type Snapshot struct {
	Info       Info                 `json:"info"`
	Stats      server.Stats         `json:"stats"`
	Sessions   []server.SessionInfo `json:"sessions"`
	Handshakes metrics.Histogram    `json:"handshakes"`
}

// maxMessage bounds an IPC message (a snapshot lists every session).
const maxMessage = 16 << 20

// SocketPath returns the path of data plane pid's socket in dir.
func SocketPath(dir string, pid int) string {
	return filepath.Join(dir, fmt.Sprintf("dp-%d.sock", pid))
}

// ControlSocket returns the path of the control plane's socket in dir.
func ControlSocket(dir string) string { return filepath.Join(dir, "control.sock") }

// Sockets lists the data plane sockets in dir.
func Sockets(dir string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, "dp-*.sock"))
}

// Call sends req to the socket at path and returns the response and the
// descriptors it passed, if any. A response with Error set is returned as
// an error.
func Call(path string, req Request, timeout time.Duration) (Response, []*os.File, error) {
	var resp Response
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return resp, nil, err
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(timeout))
	b, _ := json.Marshal(req)
	if _, err := uc.Write(append(b, '\n')); err != nil {
		return resp, nil, err
	}
	// The passed socket, if any, arrives with the first bytes.
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*maxFiles))
	n, oobn, _, _, err := uc.ReadMsgUnix(buf, oob)
	if err != nil {
		return resp, nil, err
	}
	files := parseRights(oob[:oobn])
	fail := func(err error) (Response, []*os.File, error) {
		for _, f := range files {
			f.Close()
		}
		return resp, nil, err
	}
	data := buf[:n]
	if !bytes.HasSuffix(data, []byte("\n")) {
		rest, err := io.ReadAll(io.LimitReader(uc, maxMessage))
		if err != nil {
			return fail(err)
		}
		data = append(data, rest...)
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return fail(fmt.Errorf("malformed response from %s: %w", path, err))
	}
	if resp.Error != "" {
		return fail(errors.New(resp.Error))
	}
	return resp, files, nil
}

// maxFiles bounds the descriptors one response passes.
const maxFiles = 4

func parseRights(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "passed"))
		}
	}
	return files
}

// Handler answers one request. The files are passed with the response
// and closed afterwards.
type Handler func(Request) (Response, []*os.File)

// Listen creates the unix socket at path, replacing a stale one (a file no
// process answers on), and refusing one in use.
func Listen(path string) (*net.UnixListener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s is in use by another process", path)
	}
	_ = os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// Serve answers requests on ln until it is closed.
func Serve(ln *net.UnixListener, h Handler, log *slog.Logger) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			line, err := bufio.NewReader(io.LimitReader(c, 64<<10)).ReadBytes('\n')
			if err != nil {
				return
			}
			var req Request
			var resp Response
			var files []*os.File
			if err := json.Unmarshal(line, &req); err != nil {
				resp.Error = "malformed request: " + err.Error()
			} else {
				resp, files = h(req)
			}
			b, _ := json.Marshal(resp)
			b = append(b, '\n')
			if len(files) > 0 {
				// The descriptors ride on the first byte; Write sends the
				// rest whole, however long.
				fds := make([]int, len(files))
				for i, f := range files {
					defer f.Close()
					fds[i] = int(f.Fd())
				}
				if _, _, err := c.WriteMsgUnix(b[:1], unix.UnixRights(fds...), nil); err != nil {
					log.Debug("IPC reply", "op", req.Op, "err", err)
					return
				}
				b = b[1:]
			}
			if _, err := c.Write(b); err != nil {
				log.Debug("IPC reply", "op", req.Op, "err", err)
			}
		}()
	}
}

// IsNotRunning reports whether err from Call means nobody listens on the
// socket (a stale file, or no file).
func IsNotRunning(err error) bool {
	return errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) ||
		(err != nil && strings.Contains(err.Error(), "no such file"))
}
