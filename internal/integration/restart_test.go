//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/testutil"
)

// restartEnv is the environment of one server and everything that talks to
// it: a state directory of its own (state files, runtime directory) and a
// PSK.
func restartEnv(t *testing.T) []string {
	dir := t.TempDir()
	return []string{"XDG_CONFIG_HOME=" + dir + "/config", "XDG_DATA_HOME=" + dir + "/data", "XDG_STATE_HOME=" + dir + "/state",
		"QUICPORT_PSK=restart-test-psk-0123456789"}
}

// ctl runs quicport ctl with env and returns its output; it fails the test
// when ctl fails.
func ctl(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := testutil.Command(t, time.Minute, quicportBin, append([]string{"ctl"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("quicport ctl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// needSteering fails under CI (root) and skips elsewhere when BPF steering
// cannot be loaded.
func needSteering(t *testing.T) {
	t.Helper()
	steering(t)
}

// running reports whether process pid exists.
func running(pid int) bool { return syscall.Kill(pid, 0) == nil }

// udpProbe sends a datagram through addr every 20 ms until stop is
// closed and counts the replies; the returned function reports them.
func udpProbe(t *testing.T, addr string) (stop func() (sent, answered int)) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var sent, answered atomic.Int64
	done := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if bytes.HasPrefix(buf[:n], []byte("udp-probe")) {
				answered.Add(1)
			}
		}
	}()
	go func() {
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-done:
				return
			case <-tk.C:
				c.Write([]byte("udp-probe"))
				sent.Add(1)
			}
		}
	}()
	return func() (int, int) {
		close(done)
		time.Sleep(500 * time.Millisecond) // the last replies
		c.Close()
		<-readDone
		return int(sent.Load()), int(answered.Load())
	}
}

// The graceful restart of the issue: while 256 MiB move through an LPF and
// an RPF tunnel, with 20 idle tunneled connections and a UDP flow open,
// quicport ctl graceful-restart starts a new data plane and drains the old
// one. Every transfer completes intact, the idle connections still echo,
// a prober connecting to the RPF port every 10 ms is never refused, the UDP
// flow keeps answering, and the old data plane exits once empty.
func TestGracefulRestart(t *testing.T) {
	needSteering(t)
	env := restartEnv(t)
	srv := testutil.StartProcess(t, quicportBin, env, "server", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0")
	started := srv.WaitLog("quicport server listening", 1, 30*time.Second)
	if started["graceful_restart"] != "bpf" {
		t.Fatalf("server without BPF steering: %v", started)
	}
	listen := started["listen"].(string)
	oldDP := int(srv.WaitLog("data plane active", 1, 10*time.Second)["pid"].(float64))

	echo := testutil.EchoServer(t)
	udpEcho := startUDPEcho(t)
	rpfPort := testutil.Itoa(testutil.FreePort(t))
	lpfPort := testutil.Itoa(testutil.FreePort(t))
	udpPort := testutil.Itoa(testutil.FreePort(t))
	client := func(args ...string) *testutil.Process {
		c := testutil.StartProcess(t, quicportBin, env, append([]string{"client", "-s", listen, "--accept-new-host", "--reconnect-delay", "0.2"}, args...)...)
		c.WaitLog("forward established", 1, 20*time.Second)
		return c
	}
	rpf := client("-r", rpfPort, "-l", echo)
	lpf := client("-L", "127.0.0.1:"+lpfPort, "-R", echo)
	udp := client("-L", "127.0.0.1:"+udpPort+"/udp", "-R", udpEcho.addr()+"/udp")
	rpfEntry, lpfEntry := "127.0.0.1:"+rpfPort, "127.0.0.1:"+lpfPort

	idle := idleConns(t, 20, lpfEntry, rpfEntry)
	stopProbe := prober(rpfEntry)
	stopUDP := udpProbe(t, "127.0.0.1:"+udpPort)
	transfers := make(chan error, 2)
	for i, entry := range []string{lpfEntry, rpfEntry} {
		go func() { transfers <- testutil.EchoCheck(entry, 256<<20, uint64(i)) }()
	}
	time.Sleep(500 * time.Millisecond) // the transfers are under way

	out := ctl(t, env, "graceful-restart")
	if !strings.Contains(out, "serves new connections") {
		t.Fatalf("ctl graceful-restart: %s", out)
	}
	newDP := int(srv.WaitLog("data plane active", 2, 10*time.Second)["pid"].(float64))
	for _, c := range []*testutil.Process{rpf, lpf, udp} {
		c.WaitLog("forward established", 2, 20*time.Second)
	}
	if status := ctl(t, env, "status"); !strings.Contains(status, "DRAINING") || !strings.Contains(status, testutil.Itoa(newDP)) {
		t.Errorf("ctl status during the drain:\n%s", status)
	}

	for range 2 {
		if err := <-transfers; err != nil {
			t.Fatalf("transfer across the graceful restart: %v", err)
		}
	}
	for _, c := range idle {
		echoOnce(t, c, "after")
	}
	time.Sleep(300 * time.Millisecond) // probes after the hand-over
	ok, failed := stopProbe()
	if failed > 0 || ok == 0 {
		t.Fatalf("the remote port failed %d of %d probes during the restart", failed, ok+failed)
	}
	sent, answered := stopUDP()
	t.Logf("%d probes of the remote port, none failed; UDP flow: %d of %d datagrams answered", ok, answered, sent)
	if answered < sent*9/10 {
		t.Errorf("the UDP flow answered %d of %d datagrams across the restart", answered, sent)
	}
	// Still a working UDP forward afterwards.
	uc, err := net.Dial("udp", "127.0.0.1:"+udpPort)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if err := exchange(uc.(*net.UDPConn), 1, 1, 1200); err != nil {
		t.Fatalf("UDP after the restart: %v", err)
	}

	for _, c := range idle {
		c.Close()
	}
	deadline := time.Now().Add(20 * time.Second)
	for running(oldDP) {
		if time.Now().After(deadline) {
			t.Fatalf("the old data plane %d still runs after its last connection closed:\n%s", oldDP, ctl(t, env, "status"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !running(newDP) {
		t.Fatal("the new data plane is gone")
	}
	for _, entry := range []string{lpfEntry, rpfEntry} {
		if err := testutil.EchoCheck(entry, 1<<20, 9); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
}

// Stopping the control plane (SIGTERM) leaves its data plane serving: a
// transfer under way completes, and a new control plane started with the
// same configuration adopts the data plane — and can restart it gracefully.
func TestControlPlaneRestart(t *testing.T) {
	needSteering(t)
	env := restartEnv(t)
	port := testutil.Itoa(testutil.FreePort(t))
	listen := "127.0.0.1:" + port
	cp := testutil.StartProcess(t, quicportBin, env, "server", "--listen", listen, "--api-listen", "127.0.0.1:0")
	cp.WaitLog("quicport server listening", 1, 30*time.Second)
	dp := int(cp.WaitLog("data plane active", 1, 10*time.Second)["pid"].(float64))

	echo := testutil.EchoServer(t)
	rpfPort := testutil.Itoa(testutil.FreePort(t))
	rpf := testutil.StartProcess(t, quicportBin, env, "client", "-s", listen, "--accept-new-host", "--reconnect-delay", "0.2", "-r", rpfPort, "-l", echo)
	rpf.WaitLog("forward established", 1, 20*time.Second)
	entry := "127.0.0.1:" + rpfPort
	transfer := make(chan error, 1)
	go func() { transfer <- testutil.EchoCheck(entry, 128<<20, 3) }()
	time.Sleep(300 * time.Millisecond)

	cp2 := restartControlPlane(t, cp, dp, env, "server", "--listen", listen, "--api-listen", "127.0.0.1:0")
	cp2.WaitLog("quicport server listening", 1, 30*time.Second)
	if err := <-transfer; err != nil {
		t.Fatalf("transfer across the control plane restart: %v", err)
	}
	if err := testutil.EchoCheck(entry, 1<<20, 4); err != nil {
		t.Fatal(err)
	}
	if rpf.Output() != "" && strings.Contains(rpf.Output(), "tunnel down") {
		t.Errorf("the client lost its tunnel:\n%s", rpf.Output())
	}

	// The adopted data plane is the new control plane's to restart.
	stopProbe := prober(entry)
	ctl(t, env, "graceful-restart")
	rpf.WaitLog("forward established", 2, 20*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for running(dp) {
		if time.Now().After(deadline) {
			t.Fatalf("the adopted data plane %d did not drain", dp)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if ok, failed := stopProbe(); failed > 0 {
		t.Fatalf("the remote port failed %d of %d probes", failed, ok+failed)
	}
	if err := testutil.EchoCheck(entry, 1<<20, 5); err != nil {
		t.Fatal(err)
	}
}

// restartControlPlane stops control plane cp with SIGTERM, checks that its
// data plane dp serves on, and starts a new control plane with args, which
// must adopt dp.
func restartControlPlane(t *testing.T, cp *testutil.Process, dp int, env []string, args ...string) *testutil.Process {
	t.Helper()
	cp.Signal(syscall.SIGTERM)
	if code := cp.Wait(20 * time.Second); code != 0 {
		t.Fatalf("control plane exit code %d after SIGTERM", code)
	}
	if !running(dp) {
		t.Fatal("the data plane exited with its control plane")
	}
	next := testutil.StartProcess(t, quicportBin, env, args...)
	adopted := next.WaitLog("adopted a running data plane", 1, 30*time.Second)
	if int(adopted["pid"].(float64)) != dp {
		t.Fatalf("adopted %v, want data plane %d", adopted["pid"], dp)
	}
	return next
}

// ctlFails runs quicport ctl, expects it to fail, and returns its output.
func ctlFails(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := testutil.Command(t, time.Minute, quicportBin, append([]string{"ctl"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("quicport ctl %v succeeded:\n%s", args, out)
	}
	return string(out)
}

// dpPID returns the pid of the n-th "data plane active" of a server.
func dpPID(srv *testutil.Process, n int) int {
	return int(srv.WaitLog("data plane active", n, 30*time.Second)["pid"].(float64))
}

// The control plane's other duties, with two servers on one host that must
// not notice each other: a crashed data plane is replaced, SIGHUP restarts
// gracefully, ctl drain --pid drains one data plane (a new one takes over),
// and a drain ends at --drain-timeout even with a connection still open.
func TestServerOperations(t *testing.T) {
	needSteering(t)
	echo := testutil.EchoServer(t)
	type instance struct {
		env []string
		srv *testutil.Process
		cl  *testutil.Process
		lpf string
	}
	start := func(extra ...string) *instance {
		in := &instance{env: restartEnv(t)}
		in.srv = testutil.StartProcess(t, quicportBin, in.env, append([]string{"server", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0"}, extra...)...)
		listen := in.srv.WaitLog("quicport server listening", 1, 30*time.Second)["listen"].(string)
		in.lpf = "127.0.0.1:" + testutil.Itoa(testutil.FreePort(t))
		in.cl = testutil.StartProcess(t, quicportBin, in.env, "client", "-s", listen, "--accept-new-host", "--reconnect-delay", "0.2", "-L", in.lpf, "-R", echo)
		in.cl.WaitLog("forward established", 1, 20*time.Second)
		return in
	}
	a := start("--drain-timeout", "2")
	b := start()
	bDP := dpPID(b.srv, 1)

	// A crashed data plane is replaced; the client reconnects.
	syscall.Kill(dpPID(a.srv, 1), syscall.SIGKILL)
	a.srv.WaitLog("the active data plane ended unexpectedly; starting a new one", 1, 20*time.Second)
	dpPID(a.srv, 2)
	a.cl.WaitLog("forward established", 2, 30*time.Second)
	if err := testutil.EchoCheck(a.lpf, 1<<20, 1); err != nil {
		t.Fatalf("after the crash: %v", err)
	}

	// SIGHUP: a graceful restart. A connection held open past the drain
	// timeout (2 s) is closed when the old data plane gives up.
	held, err := net.Dial("tcp", a.lpf)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	echoOnce(t, held, "held")
	old := dpPID(a.srv, 2)
	a.srv.Signal(syscall.SIGHUP)
	dpPID(a.srv, 3)
	a.cl.WaitLog("forward established", 3, 20*time.Second)
	drained := time.Now()
	for running(old) {
		if time.Since(drained) > 15*time.Second {
			t.Fatalf("the old data plane still runs %v after a drain with --drain-timeout 2", time.Since(drained))
		}
		time.Sleep(100 * time.Millisecond)
	}
	held.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := held.Read(make([]byte, 1)); err == nil {
		t.Fatal("the held connection still reads after the drain timeout")
	}
	if err := testutil.EchoCheck(a.lpf, 1<<20, 2); err != nil {
		t.Fatalf("after SIGHUP: %v", err)
	}

	// ctl drain --pid on the active data plane: a new one takes over first.
	cur := dpPID(a.srv, 3)
	if out := ctl(t, a.env, "drain", "--pid", testutil.Itoa(cur)); !strings.Contains(out, "serves new connections") {
		t.Fatalf("ctl drain: %s", out)
	}
	dpPID(a.srv, 4)
	a.cl.WaitLog("forward established", 4, 20*time.Second)
	for deadline := time.Now().Add(15 * time.Second); running(cur); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("drained data plane %d still runs", cur)
		}
	}
	if out := ctlFails(t, a.env, "drain", "--pid", "1"); !strings.Contains(out, "no data plane with pid 1") {
		t.Errorf("ctl drain of a stranger: %s", out)
	}

	// The other server saw none of it.
	if !running(bDP) || strings.Contains(b.cl.Output(), "tunnel down") || strings.Count(b.cl.Output(), "forward established") != 1 {
		t.Errorf("the second server's session was disturbed:\n%s", b.cl.Output())
	}
	if err := testutil.EchoCheck(b.lpf, 1<<20, 3); err != nil {
		t.Fatal(err)
	}
	if status := ctl(t, b.env, "status"); strings.Count(status, "ACTIVE") != 1 || !strings.Contains(status, testutil.Itoa(bDP)) {
		t.Errorf("second server's ctl status:\n%s", status)
	}
}

// Without BPF steering the server still serves; ctl graceful-restart says
// that established connections would be reset and does nothing unless
// forced; forced, the clients reconnect to the new data plane.
func TestGracefulRestartWithoutBPF(t *testing.T) {
	env := restartEnv(t)
	srv := testutil.StartProcess(t, quicportBin, env, "server", "--no-bpf", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0")
	started := srv.WaitLog("quicport server listening", 1, 30*time.Second)
	if started["graceful_restart"] != "unavailable" {
		t.Fatalf("start-up line: %v", started)
	}
	dp := dpPID(srv, 1)
	_, port, _ := net.SplitHostPort(started["listen"].(string))
	checkHeldNotPolled(t, srv.Pid(), port)
	echo := testutil.EchoServer(t)
	lpf := "127.0.0.1:" + testutil.Itoa(testutil.FreePort(t))
	cl := testutil.StartProcess(t, quicportBin, env, "client", "-s", started["listen"].(string), "--accept-new-host", "--reconnect-delay", "0.2", "-L", lpf, "-R", echo)
	cl.WaitLog("forward established", 1, 20*time.Second)

	out := ctlFails(t, env, "graceful-restart")
	if !strings.Contains(out, "established tunneled connections will be reset") || !strings.Contains(out, "--force") {
		t.Fatalf("ctl graceful-restart without BPF: %s", out)
	}
	if !running(dp) || strings.Count(srv.Output(), "data plane active") != 1 {
		t.Fatal("ctl graceful-restart did something without --force")
	}
	ctl(t, env, "graceful-restart", "--force")
	dpPID(srv, 2)
	cl.WaitLog("forward established", 2, 30*time.Second)
	if err := testutil.EchoCheck(lpf, 1<<20, 1); err != nil {
		t.Fatal(err)
	}
	checkHeldNotPolled(t, srv.Pid(), port)
	// One data plane replaced the old one: not a second one as well, for a
	// crash (two data planes on the one shared socket take each other's
	// packets).
	if out := srv.Output(); strings.Count(out, `"data plane active"`) != 2 || strings.Contains(out, "ended unexpectedly") {
		t.Errorf("want exactly one new data plane after the restart:\n%s", out)
	}
}

// checkHeldNotPolled checks that the control plane (process pid) of a
// server without BPF steering holds the one QUIC socket (UDP port port),
// so that a new data plane can take it over, but does not watch it in an
// epoll instance (Go's netpoller): that would wake the control plane at
// every datagram that arrives for the data plane.
func checkHeldNotPolled(t *testing.T, pid int, port string) {
	t.Helper()
	sockets := udpSockets(t, port)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	held := false
	for _, fd := range fds {
		link, _ := os.Readlink(dir + "/" + fd.Name())
		var ino uint64
		if _, err := fmt.Sscanf(link, "socket:[%d]", &ino); err == nil && sockets[ino] {
			held = true
		}
		if link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", pid, fd.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// One line per watched descriptor: "tfd: 8 events: … ino:143cc8 sdev:9".
		for _, line := range strings.Split(string(info), "\n") {
			_, rest, ok := strings.Cut(line, " ino:")
			if !strings.HasPrefix(line, "tfd:") || !ok {
				continue
			}
			hexIno, _, _ := strings.Cut(rest, " ")
			if ino, err := strconv.ParseUint(hexIno, 16, 64); err == nil && sockets[ino] {
				t.Errorf("the control plane watches the QUIC socket (port %s) in its netpoller: %s", port, line)
			}
		}
	}
	if !held {
		t.Errorf("the control plane does not hold the QUIC socket (port %s): a new data plane could not take it over", port)
	}
}

// udpSockets returns the inodes of the UDP sockets bound to port.
func udpSockets(t *testing.T, port string) map[uint64]bool {
	t.Helper()
	want, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatalf("port %q: %v", port, err)
	}
	sockets := map[uint64]bool{}
	for _, table := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			_, hexPort, _ := strings.Cut(f[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); err == nil && p == want {
				ino, _ := strconv.ParseUint(f[9], 10, 64)
				sockets[ino] = true
			}
		}
	}
	return sockets
}

// Without BPF steering, too, a server restart (SIGTERM, then start) keeps
// every session: the new control plane adopts the running data plane as it
// is, and a transfer under way completes. Its graceful restarts then close
// sessions, as before.
func TestControlPlaneRestartWithoutBPF(t *testing.T) {
	env := restartEnv(t)
	listen := "127.0.0.1:" + testutil.Itoa(testutil.FreePort(t))
	cp := testutil.StartProcess(t, quicportBin, env, "server", "--no-bpf", "--listen", listen, "--api-listen", "127.0.0.1:0")
	cp.WaitLog("quicport server listening", 1, 30*time.Second)
	dp := dpPID(cp, 1)

	echo := testutil.EchoServer(t)
	lpf := "127.0.0.1:" + testutil.Itoa(testutil.FreePort(t))
	cl := testutil.StartProcess(t, quicportBin, env, "client", "-s", listen, "--accept-new-host", "--reconnect-delay", "0.2", "-L", lpf, "-R", echo)
	cl.WaitLog("forward established", 1, 20*time.Second)
	transfer := make(chan error, 1)
	go func() { transfer <- testutil.EchoCheck(lpf, 64<<20, 3) }()
	time.Sleep(300 * time.Millisecond)

	cp2 := restartControlPlane(t, cp, dp, env, "server", "--no-bpf", "--listen", listen, "--api-listen", "127.0.0.1:0")
	if started := cp2.WaitLog("quicport server listening", 1, 30*time.Second); started["graceful_restart"] != "unavailable" {
		t.Fatalf("start-up line: %v", started)
	}
	if err := <-transfer; err != nil {
		t.Fatalf("transfer across the control plane restart: %v", err)
	}
	if err := testutil.EchoCheck(lpf, 1<<20, 4); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(cl.Output(), "tunnel down") || strings.Count(cl.Output(), "forward established") != 1 {
		t.Errorf("the client lost its tunnel:\n%s", cl.Output())
	}
	if status := ctl(t, env, "status"); !strings.Contains(status, testutil.Itoa(dp)) {
		t.Errorf("ctl status after adoption:\n%s", status)
	}
	// The new control plane holds the adopted data plane's socket, so
	// that the data plane replacing it serves on that same socket: the
	// port is never unbound, and no other process can take it between.
	_, port, _ := net.SplitHostPort(listen)
	checkHeldNotPolled(t, cp2.Pid(), port)
	socket := udpSockets(t, port)

	ctl(t, env, "graceful-restart", "--force")
	if newDP := dpPID(cp2, 1); newDP == dp {
		t.Fatalf("graceful-restart --force kept data plane %d", dp)
	}
	cl.WaitLog("forward established", 2, 30*time.Second)
	if running(dp) {
		t.Errorf("the adopted data plane %d still runs after a forced restart", dp)
	}
	if err := testutil.EchoCheck(lpf, 1<<20, 5); err != nil {
		t.Fatal(err)
	}
	if now := udpSockets(t, port); !maps.Equal(now, socket) {
		t.Errorf("the new data plane serves on UDP socket(s) %v, not on the adopted one %v", slices.Collect(maps.Keys(now)), slices.Collect(maps.Keys(socket)))
	}
	checkHeldNotPolled(t, cp2.Pid(), port)
}

// A control plane that stops (SIGTERM) and is not started again: its data
// plane serves on for --adopt-timeout, then shuts down and tells its clients
// (they reconnect rather than exit), and its state file goes away.
func TestUnadoptedDataPlaneShutsDown(t *testing.T) {
	env := restartEnv(t)
	cp := testutil.StartProcess(t, quicportBin, env, "server", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--adopt-timeout", "2")
	listen := cp.WaitLog("quicport server listening", 1, 30*time.Second)["listen"].(string)
	dp := dpPID(cp, 1)
	echo := testutil.EchoServer(t)
	lpf := "127.0.0.1:" + testutil.Itoa(testutil.FreePort(t))
	cl := testutil.StartProcess(t, quicportBin, env, "client", "-s", listen, "--accept-new-host", "--reconnect-delay", "0.2", "-L", lpf, "-R", echo)
	cl.WaitLog("forward established", 1, 20*time.Second)

	cp.Signal(syscall.SIGTERM)
	cp.Wait(20 * time.Second)
	stopped := time.Now()
	if err := testutil.EchoCheck(lpf, 1<<20, 1); err != nil {
		t.Fatalf("the orphaned data plane does not serve: %v", err)
	}
	for running(dp) {
		if time.Since(stopped) > 20*time.Second {
			t.Fatalf("the unadopted data plane still runs %v after its control plane stopped (--adopt-timeout 2)", time.Since(stopped))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(stopped); d < 1500*time.Millisecond {
		t.Errorf("the data plane stopped %v after its control plane, before its adopt timeout", d)
	}
	cl.WaitLog("server closed the session", 1, 10*time.Second)
	if cl.Exited() {
		t.Fatal("the client exited instead of reconnecting")
	}
	if status := ctl(t, env, "status"); !strings.Contains(status, "(none running)") {
		t.Errorf("ctl status after the data plane exited:\n%s", status)
	}
}
