//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tlsid"
)

// env holds what every path shares: binaries, the quicport server, sshd.
type env struct {
	dir      string
	quicport string
	rawquic  string
	singBox  string // "" when its rows are left out
	psk      string
	procs    []*exec.Cmd

	qpServer    string // quicport server address
	qpPID       int    // its data plane
	qpServerPID int    // the server itself, whose process tree is its far end
	sshPort     int
	sshdPID     int
	sshKey      string
	sshUser     string
}

func newEnv() (*env, error) {
	dir, err := os.MkdirTemp("", "quicport-bench")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, psk: filepath.Join(dir, "psk")}
	onInterrupt(func() { os.RemoveAll(dir) })
	for _, need := range []string{"iperf3", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(need); err != nil {
			return nil, fmt.Errorf("%s not found: apt-get install iperf3 openssh-client openssh-server", need)
		}
	}
	progress("building quicport and rawquic")
	e.quicport = filepath.Join(dir, "quicport")
	e.rawquic = filepath.Join(dir, "rawquic")
	for bin, pkg := range map[string]string{e.quicport: "./cmd/quicport", e.rawquic: "./bench/rawquic"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	if err := os.WriteFile(e.psk, []byte("benchmark-psk-0123456789abcdef\n"), 0o600); err != nil {
		return nil, err
	}
	if err := e.startQuicportServer(); err != nil {
		return nil, err
	}
	if err := e.startSSHD(); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	for _, c := range e.procs {
		stop(c)
	}
	os.RemoveAll(e.dir)
}

// stop ends a helper: SIGINT first, so that quicport server stops its data
// planes too (SIGKILL would leave them waiting to be adopted), then SIGKILL.
func stop(c *exec.Cmd) {
	_ = c.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { c.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		c.Process.Kill()
		<-done
	}
}

func (e *env) quicportEnv() []string { return quicportEnvIn(e.dir) }

// quicportEnvIn gives quicport its configuration, state and runtime
// directories under dir.
func quicportEnvIn(dir string) []string {
	return append(os.Environ(), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"), "XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_STATE_HOME="+filepath.Join(dir, "state"), "QUICPORT_RUNTIME_DIR="+filepath.Join(dir, "run"))
}

// start runs a long-lived helper process owned by the env.
func (e *env) start(args ...string) (*exec.Cmd, error) {
	cmd := helper(args[0], args[1:]...)
	cmd.Env = e.quicportEnv()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e.procs = append(e.procs, cmd)
	return cmd, nil
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func waitTCP(addr string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s does not accept connections", addr)
}

// runQuicport starts quicport with args, the bench's XDG directories, and
// its output on stderr. The caller owns the process.
func (e *env) runQuicport(args ...string) (*exec.Cmd, error) { return e.runQuicportIn(e.dir, args...) }

// runQuicportIn is runQuicport with the XDG directories under dir.
func (e *env) runQuicportIn(dir string, args ...string) (*exec.Cmd, error) {
	cmd := helper(e.quicport, append([]string{"--log-level", "warn"}, args...)...)
	cmd.Env = quicportEnvIn(dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// quicportClient starts a PSK client of the quicport server at server with
// forward arguments (-L/-R or -r/-l).
func (e *env) quicportClient(server string, forward []string) (*exec.Cmd, error) {
	return e.runQuicport(append([]string{"client", "-s", server, "--psk-file", e.psk, "--accept-new-host"}, forward...)...)
}

func (e *env) startQuicportServer() error {
	cmd, addr, pid, err := e.launchServer(e.dir)
	if cmd != nil {
		e.procs = append(e.procs, cmd)
		e.qpServerPID = cmd.Process.Pid
	}
	e.qpServer, e.qpPID = addr, pid
	return err
}

// launchServer starts a quicport server on a free loopback port with its
// state under dir, and returns it, its address and the PID of its data
// plane once that serves. The caller owns the process.
func (e *env) launchServer(dir string) (*exec.Cmd, string, int, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	// The scale scenario opens 10,000 connections and 500 sessions as fast
	// as it can: lift the connection rate and handshake limits, which are
	// not what is measured.
	cmd, err := e.runQuicportIn(dir, "server", "--no-api", "--listen", addr, "--psk-file", e.psk, "--conn-rate", "1000000", "--max-unauthenticated", "100000")
	if err != nil {
		return nil, "", 0, err
	}
	// The server is a control plane; clients are served by its data plane,
	// whose memory is what the scale scenario measures. Its state file
	// names it once it serves.
	deadline := time.Now().Add(30 * time.Second)
	for {
		files, _ := filepath.Glob(filepath.Join(dir, "state", "quicport", "dataplanes", "dp-*.state"))
		for _, f := range files {
			var pid int
			if _, err := fmt.Sscanf(filepath.Base(f), "dp-%d.state", &pid); err == nil && pid > 0 {
				return cmd, addr, pid, nil
			}
		}
		if time.Now().After(deadline) {
			return cmd, addr, 0, errors.New("quicport server: no data plane within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// quicportPath tunnels through the quicport server at server (the bench's
// own unless the loss scenario's).
func (e *env) quicportPath(name, server string, remote bool, flags ...string) *path {
	p := &path{name: name}
	if server == e.qpServer {
		p.shared = []int{e.qpServerPID}
	}
	p.setup = func(dest string) (string, error) {
		port := freePort()
		entry := fmt.Sprintf("127.0.0.1:%d", port)
		forward := []string{"-L", entry, "-R", dest}
		if remote {
			forward = []string{"-r", strconv.Itoa(port), "-l", dest}
		}
		cmd, err := e.quicportClient(server, append(forward, flags...))
		if err != nil {
			return "", err
		}
		p.procs = append(p.procs, cmd)
		return entry, waitTCP(entry)
	}
	return p
}

// twoConnections is quicport LPF (or RPF) with --quic-connections 2:
// each tunneled connection on the less busy of two QUIC connections, so a
// ping does not queue behind a bulk transfer's packets.
func (e *env) twoConnections(server string, remote bool) *path {
	name := quicportRows[2]
	if remote {
		name = quicportRows[3]
	}
	p := e.quicportPath(name, server, remote, "--quic-connections", "2")
	p.manyConns = true
	return p
}

// rawQUIC runs the bare quic-go forwarder; its server listens on ip:port and
// runs with prefix (a command that runs it in another network namespace).
// Port 0 picks a free one on loopback.
func (e *env) rawQUIC(prefix []string, ip string, port int) *path {
	p := &path{name: "raw quic-go"}
	p.setup = func(dest string) (string, error) {
		qport := port
		if qport == 0 {
			qport = freePort()
		} else {
			port++ // the next setup's server
		}
		qaddr := net.JoinHostPort(ip, strconv.Itoa(qport))
		entry := fmt.Sprintf("127.0.0.1:%d", freePort())
		argv := slices.Concat(prefix, []string{e.rawquic, "server", "-quic", qaddr, "-dest", dest})
		srv := helper(argv[0], argv[1:]...)
		if err := srv.Start(); err != nil {
			return "", err
		}
		p.procs = append(p.procs, srv)
		time.Sleep(200 * time.Millisecond)
		cl := helper(e.rawquic, "client", "-quic", qaddr, "-listen", entry)
		if err := cl.Start(); err != nil {
			return "", err
		}
		p.procs = append(p.procs, cl)
		return entry, waitTCP(entry)
	}
	return p
}

// startSSHD starts a throwaway OpenSSH server on loopback for the ssh rows.
func (e *env) startSSHD() error {
	dir := filepath.Join(e.dir, "ssh")
	os.MkdirAll(dir, 0o700)
	for _, k := range []string{"host", "user"} {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "user.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	if os.Geteuid() == 0 {
		os.MkdirAll("/run/sshd", 0o755)
	}
	e.sshKey = filepath.Join(dir, "user")
	u, err := user.Current()
	if err != nil {
		return err
	}
	e.sshUser = u.Username
	e.sshPort = freePort()
	cmd, err := e.runSSHD(nil, "127.0.0.1", e.sshPort)
	if cmd != nil {
		e.procs = append(e.procs, cmd)
		e.sshdPID = cmd.Process.Pid
	}
	return err
}

// runSSHD starts sshd on ip:port with the keys startSSHD made; prefix is a
// command that runs it in another network namespace. The caller owns the
// process.
func (e *env) runSSHD(prefix []string, ip string, port int) (*exec.Cmd, error) {
	sshd := "/usr/sbin/sshd"
	if p, err := exec.LookPath("sshd"); err == nil {
		sshd = p
	}
	dir := filepath.Join(e.dir, "ssh")
	cfg := fmt.Sprintf("Port %d\nListenAddress %s\nHostKey %s\nPidFile %s\nAuthorizedKeysFile %s\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\nAllowTcpForwarding yes\nLogLevel ERROR\n",
		port, ip, filepath.Join(dir, "host"), filepath.Join(dir, fmt.Sprintf("sshd-%s-%d.pid", ip, port)), filepath.Join(dir, "authorized_keys"))
	cfgPath := filepath.Join(dir, fmt.Sprintf("sshd_config-%s-%d", ip, port))
	os.WriteFile(cfgPath, []byte(cfg), 0o600)
	argv := slices.Concat(prefix, []string{sshd, "-D", "-e", "-f", cfgPath})
	cmd := helper(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("sshd: %w", err)
	}
	return cmd, waitTCP(net.JoinHostPort(ip, strconv.Itoa(port)))
}

// ssh forwards with OpenSSH through the sshd at host:port.
func (e *env) ssh(name, flag, cipher, host string, port int) *path {
	p := &path{name: name}
	if host == "127.0.0.1" && port == e.sshPort {
		p.shared = []int{e.sshdPID}
	}
	p.setup = func(dest string) (string, error) {
		entryPort := freePort()
		entry := fmt.Sprintf("127.0.0.1:%d", entryPort)
		args := []string{"-N", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
			"-o", "LogLevel=ERROR", "-o", "ExitOnForwardFailure=yes", "-i", e.sshKey, "-p", strconv.Itoa(port)}
		if cipher != "" {
			args = append(args, "-c", cipher)
		}
		args = append(args, flag, fmt.Sprintf("127.0.0.1:%d:%s", entryPort, dest), e.sshUser+"@"+host)
		cmd := helper("ssh", args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return "", err
		}
		p.procs = append(p.procs, cmd)
		return entry, waitTCP(entry)
	}
	return p
}

func (e *env) iperfServer() (string, error) {
	port := freePort()
	if _, err := e.start("iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port)); err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return addr, waitTCP(addr)
}

func echoServer() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go serveEchoOn(ln)
	return ln, nil
}

func serveEchoOn(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			progress("echo server: %v", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			c.(*net.TCPConn).SetNoDelay(true)
			// Hide ReadFrom: TCP-to-TCP io.Copy splices through a pipe,
			// two more file descriptors per connection, which 10,000
			// idle connections cannot afford.
			io.Copy(struct{ io.Writer }{c}, c)
			c.Close()
		}()
	}
}

// udpTable offers UDP at increasing rates, directly and through a quicport
// local UDP forward (with a TCP forward beside it for iperf3's control
// connection), and reports what arrived.
func (e *env) udpTable(o options, iperf string) (string, error) {
	port := freePort()
	entry := fmt.Sprintf("127.0.0.1:%d", port)
	var procs []*exec.Cmd
	defer func() {
		for _, c := range procs {
			stop(c)
		}
	}()
	for _, proto := range []string{"tcp", "udp"} {
		cmd, err := e.quicportClient(e.qpServer, []string{"-L", entry + "/" + proto, "-R", iperf + "/" + proto})
		if err != nil {
			return "", err
		}
		procs = append(procs, cmd)
	}
	if err := waitTCP(entry); err != nil {
		return "", err
	}
	time.Sleep(300 * time.Millisecond)
	var b strings.Builder
	b.WriteString("### UDP (iperf3 -u, 1,200-byte datagrams): delivered Mbit/s and loss\n\n" +
		"Forward: iperf3's client sends, through the entrance; reverse (`-R`): its server sends, through the side that dials.\n\n" +
		"| offered | direct | quicport LPF | direct, reverse | quicport LPF, reverse |\n|---|---|---|---|---|\n")
	for _, rate := range o.udpRates {
		fmt.Fprintf(&b, "| %s |", rate)
		for _, path := range []struct {
			target  string
			reverse bool
		}{{iperf, false}, {entry, false}, {iperf, true}, {entry, true}} {
			target := path.target
			var got, loss []float64
			for range o.runs {
				bps, lost, err := iperfUDP(target, o.duration, rate, path.reverse)
				if err != nil {
					progress("udp %s via %s: %v", rate, target, err)
					continue
				}
				got, loss = append(got, bps/1e6), append(loss, lost)
			}
			fmt.Fprintf(&b, " %.0f (%.2f%% lost) |", median(got), median(loss))
		}
		b.WriteString("\n")
		progress("udp %s done", rate)
	}
	b.WriteString("\n")
	return b.String(), nil
}

func iperfUDP(entry string, d time.Duration, rate string, reverse bool) (bps, lossPct float64, err error) {
	host, port, _ := net.SplitHostPort(entry)
	args := []string{"-c", host, "-p", port, "-u", "-b", rate, "-l", "1200", "-t", fmt.Sprint(d.Seconds()), "-J"}
	if reverse {
		args = append(args, "-R")
	}
	out, err := exec.Command("iperf3", args...).Output()
	var r struct {
		End struct {
			Sum struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				LostPercent   float64 `json:"lost_percent"`
			} `json:"sum"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return 0, 0, fmt.Errorf("iperf3 -u: %v (%v)", err, jerr)
	}
	if r.Error != "" {
		return 0, 0, errors.New(r.Error)
	}
	// The receiver's view: offered rate minus what was lost.
	return r.End.Sum.BitsPerSecond * (1 - r.End.Sum.LostPercent/100), r.End.Sum.LostPercent, nil
}

// scaleTable holds many idle tunneled connections through one quicport
// session and many sessions on one server, and reports memory per
// connection and per session.
func (e *env) scaleTable(o options) (string, error) {
	// The echo server runs in its own process: this one holds the client
	// ends of the connections, and each process has its own fd limit.
	echo := fmt.Sprintf("127.0.0.1:%d", freePort())
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	if _, err := e.start(self, "-serve-echo", echo); err != nil {
		return "", err
	}
	if err := waitTCP(echo); err != nil {
		return "", err
	}
	port := freePort()
	entry := fmt.Sprintf("127.0.0.1:%d", port)
	cmd, err := e.quicportClient(e.qpServer, []string{"-L", entry, "-R", echo})
	if err != nil {
		return "", err
	}
	defer stop(cmd)
	if err := waitTCP(entry); err != nil {
		return "", err
	}
	time.Sleep(500 * time.Millisecond)
	cBase, sBase := rssKiB(cmd.Process.Pid), rssKiB(e.qpPID)
	type round struct{ failed, cPeak, sPeak, cAfter, sAfter int }
	// Two rounds of open, exchange, hold, close: the second shows whether
	// anything grows from one round to the next.
	var rounds []round
	for r := range 2 {
		progress("scale: round %d, opening %d connections", r+1, o.scale)
		var cPeak, sPeak int
		failed, err := holdConnections(entry, o.scale, 1, 0, func() {
			cPeak, sPeak = rssKiB(cmd.Process.Pid), rssKiB(e.qpPID)
		})
		if err != nil {
			return "", err
		}
		// holdConnections closed them; give both ends time to unwind.
		time.Sleep(3 * time.Second)
		rounds = append(rounds, round{failed, cPeak, sPeak, rssKiB(cmd.Process.Pid), rssKiB(e.qpPID)})
	}
	perConn := func(peak, base int) float64 { return float64(peak-base) / float64(o.scale) }

	sessPer, sessErr := e.sessions(o.sessions, echo)
	busyN := min(o.scale, 2000)
	busyC, busyS, busyErr := e.idleAfterTraffic(echo, busyN)
	var b strings.Builder
	b.WriteString("### Scale (quicport LPF, one session; two rounds of open, one message each, hold, close)\n\n")
	b.WriteString("| round | connections | failed | client KiB/conn | server KiB/conn | client RSS held / after close (MiB) | server RSS held / after close (MiB) |\n|---|---|---|---|---|---|---|\n")
	for i, r := range rounds {
		fmt.Fprintf(&b, "| %d | %d | %d | %.1f | %.1f | %.0f / %.0f | %.0f / %.0f |\n", i+1, o.scale, r.failed,
			perConn(r.cPeak, cBase), perConn(r.sPeak, sBase), mib(r.cPeak), mib(r.cAfter), mib(r.sPeak), mib(r.sAfter))
	}
	fmt.Fprintf(&b, "\nRSS before the first round: client %.0f MiB, server %.0f MiB.\n\n", mib(cBase), mib(sBase))
	if busyErr != nil {
		fmt.Fprintf(&b, "Idle after traffic: %v\n\n", busyErr)
	} else {
		fmt.Fprintf(&b, "Idle after traffic (a fresh server and client): %d connections that each echoed 256 KiB, 50 at a time, then sat idle: %.1f KiB client, %.1f KiB server RSS per connection.\n\n", busyN, busyC, busyS)
	}
	if sessErr != nil {
		fmt.Fprintf(&b, "Sessions: %v\n\n", sessErr)
	} else {
		fmt.Fprintf(&b, "%d client sessions on one server: %.1f KiB of server RSS per session.\n\n", o.sessions, sessPer)
	}
	return b.String(), nil
}

// holdConnections opens n connections through entry one by one, each
// exchanging one byte (so each is established end to end without flooding
// the far side's listen backlog), then has them echo payload bytes —
// parallel at a time, or all at once if 0 — lets them sit idle for a
// second, calls held, and closes them. It returns how many failed the
// exchange.
func holdConnections(entry string, n, payload, parallel int, held func()) (int, error) {
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	msg := []byte("x")
	for i := range n {
		c, err := net.Dial("tcp", entry)
		if err != nil {
			return 0, fmt.Errorf("connection %d: %w", i, err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return 0, fmt.Errorf("connection %d: %w", i, err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			return 0, fmt.Errorf("connection %d: %w", i, err)
		}
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	data := make([]byte, payload) // shared, only read
	if parallel == 0 {
		parallel = n
	}
	slots := make(chan struct{}, parallel)
	for _, c := range conns {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			c.SetDeadline(time.Now().Add(2 * time.Minute))
			go c.Write(data) // a failed write shows as a short echo
			if got, err := io.CopyN(io.Discard, c, int64(payload)); err != nil || got != int64(payload) {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	time.Sleep(time.Second)
	held()
	return int(failed.Load()), nil
}

func mib(kib int) float64 { return float64(kib) / 1024 }

// sessions opens n client sessions (in this process) to a fresh server and
// returns its data plane's RSS growth per session.
func (e *env) sessions(n int, echo string) (float64, error) {
	psk, err := auth.ReadSecretFile(e.psk)
	if err != nil {
		return 0, err
	}
	// A server of its own: the shared one's RSS is full of memory the
	// connection rounds freed, which new sessions would reuse unseen.
	srv, addr, dpPID, err := e.launchServer(filepath.Join(e.dir, "sessions"))
	if srv != nil {
		defer stop(srv)
	}
	if err != nil {
		return 0, err
	}
	time.Sleep(500 * time.Millisecond)
	dest, _ := proto.ParseAddr(echo, true, false)
	base := rssKiB(dpPID)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ready := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src, _ := proto.ParseAddr("127.0.0.1:0", true, true)
			var once sync.Once
			// Like the CLI's clients, these retry a refused attempt: with
			// hundreds of handshakes at once on a busy host, quic-go's
			// queue of 32 connections waiting for Accept can overflow,
			// and the connections it refuses would otherwise end the
			// measurement.
			err := client.Run(ctx, client.Config{
				Reconnect: true, MaxAttempts: 5,
				Server: addr, Auth: auth.ClientConfig{PSK: auth.PSK(psk)}, Insecure: true,
				TOFU:    tlsid.TOFU{Out: io.Discard},
				Forward: client.Forward{Source: src, Dest: dest},
				OnReady: func(client.Ready) { once.Do(func() { ready <- nil }) },
			})
			once.Do(func() { ready <- err })
		}()
	}
	var firstErr error
	for range n {
		if err := <-ready; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	time.Sleep(time.Second)
	peak := rssKiB(dpPID)
	cancel()
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(peak-base) / float64(n), nil
}

// idleAfterTraffic starts a fresh server and a fresh client (memory that
// earlier rounds freed would otherwise be reused unseen) and holds n
// connections through them that each echoed 256 KiB, 50 at a time, before
// going idle: what a connection that once carried a transfer keeps
// holding. It returns client and server (data plane) RSS per connection.
func (e *env) idleAfterTraffic(echo string, n int) (client, server float64, err error) {
	srv, addr, dpPID, err := e.launchServer(filepath.Join(e.dir, "after-traffic"))
	if srv != nil {
		defer stop(srv)
	}
	if err != nil {
		return 0, 0, err
	}
	entry := fmt.Sprintf("127.0.0.1:%d", freePort())
	cmd, err := e.quicportClient(addr, []string{"-L", entry, "-R", echo})
	if err != nil {
		return 0, 0, err
	}
	defer stop(cmd)
	if err := waitTCP(entry); err != nil {
		return 0, 0, err
	}
	time.Sleep(500 * time.Millisecond)
	cBase, sBase := rssKiB(cmd.Process.Pid), rssKiB(dpPID)
	progress("scale: %d connections, 256 KiB each, then idle", n)
	var cHeld, sHeld int
	failed, err := holdConnections(entry, n, 256<<10, 50, func() { cHeld, sHeld = rssKiB(cmd.Process.Pid), rssKiB(dpPID) })
	if err != nil {
		return 0, 0, err
	}
	if failed > 0 {
		return 0, 0, fmt.Errorf("%d of %d connections failed their echo", failed, n)
	}
	return float64(cHeld-cBase) / float64(n), float64(sHeld-sBase) / float64(n), nil
}
