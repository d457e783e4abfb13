package testutil

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BuildQuicport builds the quicport binary into dir and returns its path.
func BuildQuicport(dir string) (string, error) {
	bin := filepath.Join(dir, "quicport")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/quicport/quicport/cmd/quicport").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// Process is a quicport process started by a test, logging JSON lines.
type Process struct {
	t    testing.TB
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu     sync.Mutex
	logs   []map[string]any
	output bytes.Buffer // stdout and stderr, in order
	signal chan struct{}
}

// StartProcess runs bin with args (after --log-format json) and env added
// to a minimal environment. The process is killed when the test ends.
func StartProcess(t testing.TB, bin string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "XDG_STATE_HOME=" + t.TempDir()}, env...)
	cmd.SysProcAttr = dieWithTest()
	p := &Process{t: t, cmd: cmd, done: make(chan struct{}), signal: make(chan struct{}, 1)}
	// An *os.File, not an io.Writer: the process's children (a server's
	// data planes) inherit it, and Wait must not wait for them to close it.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.output.Write(sc.Bytes())
			p.output.WriteByte('\n')
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.logs = append(p.logs, m)
			}
			p.mu.Unlock()
			select {
			case p.signal <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		// Let the last lines arrive; children may keep the pipe open.
		select {
		case <-readDone:
		case <-time.After(time.Second):
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		killDataPlanes(cmd.Env)
		select {
		case <-readDone:
		case <-time.After(5 * time.Second):
		}
		pr.Close()
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, p.Output())
		}
	})
	return p
}

// killDataPlanes kills the data planes a server process left (they run in
// their own process groups and outlive a killed control plane on purpose),
// found through the state files in the process's XDG_STATE_HOME.
func killDataPlanes(env []string) {
	stateHome := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "XDG_STATE_HOME="); ok {
			stateHome = v
		}
	}
	if stateHome == "" {
		return
	}
	files, _ := filepath.Glob(filepath.Join(stateHome, "quicport", "dataplanes", "dp-*.state"))
	for _, f := range files {
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(f), "dp-%d.state", &pid); err != nil || pid <= 0 {
			continue
		}
		// A stale file's pid may belong to someone else by now.
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmdline), "data-plane") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Pid is the process's ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns everything the process printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// WaitLog waits up to timeout for the n-th (1-based) log line with message
// msg and returns it.
func (p *Process) WaitLog(msg string, n int, timeout time.Duration) map[string]any {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		seen := 0
		for _, l := range p.logs {
			if l["msg"] == msg {
				if seen++; seen == n {
					p.mu.Unlock()
					return l
				}
			}
		}
		p.mu.Unlock()
		select {
		case <-p.signal:
		case <-time.After(50 * time.Millisecond):
		case <-p.done:
			p.t.Fatalf("process exited (%v) before logging %q:\n%s", p.err, msg, p.Output())
		case <-deadline:
			p.t.Fatalf("no log line %q within %v:\n%s", msg, timeout, p.Output())
		}
	}
}

// WaitAny waits for a log line with one of msgs and reports true, or for
// the process to exit and reports false.
func (p *Process) WaitAny(msgs []string, timeout time.Duration) bool {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for _, l := range p.logs {
			for _, m := range msgs {
				if l["msg"] == m {
					p.mu.Unlock()
					return true
				}
			}
		}
		p.mu.Unlock()
		select {
		case <-p.signal:
		case <-time.After(50 * time.Millisecond):
		case <-p.done:
			return false
		case <-deadline:
			p.t.Fatalf("neither %q nor an exit within %v:\n%s", msgs, timeout, p.Output())
		}
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

// KillAll kills the process and the data planes it started (SIGKILL): a
// server that dies all at once.
func (p *Process) KillAll() {
	_ = p.cmd.Process.Kill()
	killDataPlanes(p.cmd.Env)
}

// Wait waits up to timeout for the process to exit and returns its exit code.
func (p *Process) Wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		p.t.Fatalf("process did not exit within %v:\n%s", timeout, p.Output())
		return -1
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// FreePort returns a TCP port that was free a moment ago on all addresses.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Itoa is strconv.Itoa, for building argv.
func Itoa(i int) string { return strconv.Itoa(i) }

// Command is exec.Command for a short-lived program a test runs to the
// end (ssh, openssl, quicport ctl, ...), bounded by timeout: past it the
// test says so and the program is killed with its whole process group (an
// ssh's ProxyCommand too), and Wait stops waiting on output pipes that a
// leftover grandchild keeps open. A hung peer fails its test instead of
// the package's time limit.
func Command(t testing.TB, timeout time.Duration, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if ctx.Err() == context.DeadlineExceeded {
			t.Logf("%s %v did not finish within %v; killing it", filepath.Base(name), args, timeout)
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}
