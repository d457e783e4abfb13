//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tlsid"
)

// openPTY opens a new pseudo-terminal pair (/dev/ptmx) and returns its
// master and slave ends.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	return m, s
}

// terminal is quicport running with a pseudo-terminal as its controlling
// terminal and stdin, its stdout and stderr collected.
type terminal struct {
	t      *testing.T
	cmd    *exec.Cmd
	master *os.File

	mu     sync.Mutex
	out    bytes.Buffer // everything the process wrote
	change chan struct{}
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

func startOnTerminal(t *testing.T, env []string, args ...string) *terminal {
	t.Helper()
	master, slave := openPTY(t)
	defer slave.Close()
	tm := &terminal{t: t, master: master, change: make(chan struct{}, 1), exited: make(chan struct{})}
	tm.cmd = exec.Command(quicportBin, args...)
	tm.cmd.Env = append(os.Environ(), env...)
	tm.cmd.Stdin = slave
	tm.cmd.Stdout = slave
	tm.cmd.Stderr = slave
	tm.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Pdeathsig: syscall.SIGKILL}
	if err := tm.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The master reads until every slave descriptor is closed (EIO), which
	// is when the process has exited: the parent's copy closes above.
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			tm.mu.Lock()
			tm.out.Write(buf[:n])
			tm.mu.Unlock()
			select {
			case tm.change <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		err := tm.cmd.Wait()
		tm.mu.Lock()
		tm.err = err
		tm.mu.Unlock()
		close(tm.exited)
	}()
	t.Cleanup(func() {
		tm.cmd.Process.Kill()
		<-tm.exited
		master.Close()
	})
	return tm
}

// output returns what the process has written so far.
func (tm *terminal) output() string {
	tm.mu.Lock()
	defer tm.mu.Unlock()
	return tm.out.String()
}

// expect waits up to 20 s for text in the output.
func (tm *terminal) expect(text string) {
	tm.t.Helper()
	deadline := time.After(20 * time.Second)
	for !strings.Contains(tm.output(), text) {
		select {
		case <-tm.change:
		case <-time.After(100 * time.Millisecond): // the process may have exited with the text in its last write
		case <-deadline:
			tm.t.Fatalf("waited 20 s for %q; the terminal shows:\n%s", text, tm.output())
		}
	}
}

// typeLine types line and Enter.
func (tm *terminal) typeLine(line string) {
	tm.t.Helper()
	if _, err := tm.master.Write([]byte(line + "\n")); err != nil {
		tm.t.Fatalf("type %q: %v", line, err)
	}
}

// wait waits up to 20 s for the process to exit and returns its status.
func (tm *terminal) wait() error {
	tm.t.Helper()
	select {
	case <-tm.exited:
		tm.mu.Lock()
		defer tm.mu.Unlock()
		return tm.err
	case <-time.After(20 * time.Second):
		tm.t.Fatalf("quicport did not exit within 20 s; the terminal shows:\n%s", tm.output())
		return nil
	}
}

// On a terminal an unknown server's fingerprint is shown and asked about;
// "y" records it, "n" refuses.
func TestTOFUPromptOnTerminal(t *testing.T) {
	psk := auth.PSK("terminal-prompt-psk-0123456789")
	dir := t.TempDir()
	pskFile := filepath.Join(dir, "psk")
	os.WriteFile(pskFile, psk, 0o600)
	cert := testutil.Identity(t)
	srv := testutil.StartServer(t, server.Config{Auth: auth.ServerConfig{PSK: psk}, Certificate: cert})
	env := []string{"XDG_DATA_HOME=" + filepath.Join(dir, "data")}
	args := []string{"client", "-s", srv.AddrString(), "--psk-file", pskFile, "--reconnect=false", "-L", "127.0.0.1:0", "-R", testutil.EchoServer(t)}
	const question = "Are you sure you want to continue connecting? [y/N]"

	no := startOnTerminal(t, env, args...)
	no.expect(question)
	if !strings.Contains(no.output(), tlsid.Fingerprint(cert.Certificate[0])) {
		t.Errorf("the prompt did not show the fingerprint:\n%s", no.output())
	}
	no.typeLine("n")
	if err := no.wait(); err == nil {
		t.Fatalf("answered n, and quicport exited 0:\n%s", no.output())
	}
	no.expect("not confirmed by the user")

	// "y": recorded, and the forward comes up.
	yes := startOnTerminal(t, env, args...)
	yes.expect(question)
	yes.typeLine("y")
	yes.expect("Permanently added")
	yes.expect("forward established")
	kh := tlsid.KnownHosts{Path: filepath.Join(dir, "data", "quicport", "known_hosts")}
	if fp, _, found, _ := kh.Lookup(srv.AddrString()); !found || fp != tlsid.Fingerprint(cert.Certificate[0]) {
		t.Fatalf("known_hosts has %q (found %v)", fp, found)
	}
	yes.cmd.Process.Signal(syscall.SIGINT)
	if err := yes.wait(); err != nil {
		t.Errorf("stopped with SIGINT: %v\n%s", err, yes.output())
	}

	// Recorded: a third run does not ask.
	again := startOnTerminal(t, env, args...)
	again.expect("forward established")
	if strings.Contains(again.output(), question) {
		t.Errorf("asked again about a recorded server:\n%s", again.output())
	}
}
