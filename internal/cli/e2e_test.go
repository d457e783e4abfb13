package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quicport/quicport/internal/audit"
	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

// quicportBin is the quicport binary, for servers: they start data planes
// from their executable, which in-process would be the test binary.
var quicportBin string

// proc is quicport's Run in a goroutine (or, for a server, the real binary),
// with JSON logs parsed as they come.
type proc struct {
	t      *testing.T
	cancel context.CancelFunc
	code   chan int
	mu     sync.Mutex
	lines  []map[string]any
	out    bytes.Buffer // everything written to stdout and stderr
	stderr bytes.Buffer
	newLog chan struct{}
}

func start(t *testing.T, env map[string]string, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &proc{t: t, cancel: cancel, code: make(chan int, 1), newLog: make(chan struct{}, 1)}
	pr, pw := io.Pipe()
	if _, ok := env["XDG_STATE_HOME"]; !ok {
		env["XDG_STATE_HOME"] = t.TempDir() // state files stay out of the real home
	}
	getenv := func(k string) string { return env[k] }
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.Write(sc.Bytes())
			p.out.WriteByte('\n')
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				p.lines = append(p.lines, m)
			}
			p.mu.Unlock()
			select {
			case p.newLog <- struct{}{}:
			default:
			}
		}
	}()
	errW := &lockedWriter{mu: &p.mu, w: &p.stderr}
	if slices.Contains(args, "server") {
		// The server starts data plane processes from its executable:
		// run it as the real binary, with exactly env as environment.
		cmd := exec.Command(quicportBin, append([]string{"--log-format", "json"}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		cmd.Stdout, cmd.Stderr = pw, errW
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		p.cancel = func() { _ = cmd.Process.Signal(os.Interrupt) }
		go func() {
			cmd.Wait()
			pw.Close()
			wg.Wait()
			p.code <- cmd.ProcessState.ExitCode()
		}()
		t.Cleanup(func() { p.stop(); cancel() })
		return p
	}
	go func() {
		code := Run(ctx, append([]string{"--log-format", "json"}, args...), Stdio{In: strings.NewReader(""), Out: pw, Err: errW}, getenv)
		pw.Close()
		wg.Wait()
		p.code <- code
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// waitLog waits for a log line with the given message and returns it.
func (p *proc) waitLog(msg string) map[string]any {
	p.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if l["msg"] == msg {
				p.mu.Unlock()
				return l
			}
		}
		p.mu.Unlock()
		select {
		case <-p.newLog:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			p.t.Fatalf("no log line %q; output so far:\n%s\nstderr:\n%s", msg, p.output(), p.errors())
		}
	}
}

func (p *proc) output() string { p.mu.Lock(); defer p.mu.Unlock(); return p.out.String() }
func (p *proc) errors() string { p.mu.Lock(); defer p.mu.Unlock(); return p.stderr.String() }

// wait returns the exit code once Run returns.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case c := <-p.code:
		p.code <- c
		return c
	case <-time.After(30 * time.Second):
		p.t.Fatal("quicport did not exit within 30s")
		return -1
	}
}

// stop cancels Run (like SIGINT) and returns its exit code.
func (p *proc) stop() int {
	p.cancel()
	return p.wait()
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// With no authentication options the server creates a PSK file once, never
// logs the PSK, and reuses it; a client with that PSK forwards data.
func TestServerAutoPSK(t *testing.T) {
	home := t.TempDir()
	env := map[string]string{"XDG_CONFIG_HOME": filepath.Join(home, "config"), "XDG_DATA_HOME": filepath.Join(home, "data")}
	srv := start(t, env, "server", "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0")
	listening := srv.waitLog("quicport server listening")
	pskPath := filepath.Join(home, "config", "quicport", "psk")
	fi, err := os.Stat(pskPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("psk mode = %v, want 0600", fi.Mode().Perm())
	}
	psk, _ := os.ReadFile(pskPath)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(psk)))
	if err != nil || len(raw) != 32 {
		t.Errorf("psk file holds %q, want base64 of 32 bytes", psk)
	}
	if listening["auth"] != "psk" || listening["cert_sha256"] == nil {
		t.Errorf("start-up line %v lacks auth mode or fingerprint", listening)
	}
	for _, f := range []string{"config/quicport/server.crt", "config/quicport/server.key"} {
		if _, err := os.Stat(filepath.Join(home, f)); err != nil {
			t.Error(err)
		}
	}

	echo := testutil.EchoServer(t)
	cl := start(t, env, "client", "-s", listening["listen"].(string), "--accept-new-host",
		"--psk-file", pskPath, "-L", "127.0.0.1:0", "-R", echo)
	ready := cl.waitLog("forward established")
	if err := testutil.EchoCheck(ready["local_listen"].(string), 4<<20, 1); err != nil {
		t.Fatal(err)
	}
	if code := cl.stop(); code != 0 {
		t.Errorf("client exit code after cancel = %d, want 0", code)
	}
	if code := srv.stop(); code != 0 {
		t.Errorf("server exit code after cancel = %d, want 0", code)
	}
	for _, out := range []string{srv.output(), srv.errors(), cl.output(), cl.errors()} {
		if strings.Contains(out, strings.TrimSpace(string(psk))) {
			t.Fatalf("the PSK appears in the output:\n%s", out)
		}
	}

	// The second start reuses the file.
	srv2 := start(t, env, "server", "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0")
	srv2.waitLog("quicport server listening")
	if again, _ := os.ReadFile(pskPath); !bytes.Equal(again, psk) {
		t.Error("server replaced the existing PSK")
	}
	if !strings.Contains(srv2.output(), "using the PSK from file") {
		t.Error("second start did not say it reuses the PSK file")
	}
}

// X25519 credentials through the environment variables of the spec, a
// remote forward, and the server's public key in its start-up line.
func TestX25519FromEnvironment(t *testing.T) {
	dir := t.TempDir()
	serverKey, clientKey := testutil.Key(t), testutil.Key(t)
	writeFile(t, filepath.Join(dir, "server.key"), serverKey.Encode()+"\n", 0o600)
	writeFile(t, filepath.Join(dir, "authorized_keys"), "# team\n"+clientKey.Public().String()+" alice\n", 0o644)
	writeFile(t, filepath.Join(dir, "server.pub"), serverKey.Public().String()+"\n", 0o644)
	srv := start(t, map[string]string{
		"XDG_CONFIG_HOME":              filepath.Join(dir, "config"),
		"QUICPORT_PRIVKEY_FILE":        filepath.Join(dir, "server.key"),
		"QUICPORT_CLIENT_PUBKEYS_FILE": filepath.Join(dir, "authorized_keys"),
	}, "server", "--api-listen", "127.0.0.1:0", "-l", "127.0.0.1:0")
	listening := srv.waitLog("quicport server listening")
	if listening["auth"] != "x25519" || listening["pubkey"] != serverKey.Public().String() {
		t.Fatalf("start-up line %v, want x25519 and the server's public key", listening)
	}

	echo := testutil.EchoServer(t)
	clientEnv := map[string]string{
		"XDG_DATA_HOME":               filepath.Join(dir, "data"),
		"QUICPORT_PRIVKEY":            clientKey.Encode(),
		"QUICPORT_SERVER_PUBKEY_FILE": filepath.Join(dir, "server.pub"),
	}
	cl := start(t, clientEnv, "client", "-s", listening["listen"].(string), "-r", "0", "-l", echo)
	ready := cl.waitLog("forward established")
	entry := "127.0.0.1:" + testutil.Port(t, ready["remote_listen"].(string))
	if err := testutil.EchoCheck(entry, 4<<20, 2); err != nil {
		t.Fatal(err)
	}
	cl.stop()
	// The pinned key vouched for the certificate: it is now in known_hosts.
	kh, err := os.ReadFile(filepath.Join(dir, "data", "quicport", "known_hosts"))
	if err != nil || !strings.Contains(string(kh), listening["listen"].(string)+" "+listening["cert_sha256"].(string)) {
		t.Errorf("known_hosts = %q, %v; want the server's fingerprint", kh, err)
	}
	if strings.Contains(srv.output()+cl.output()+cl.errors(), clientKey.Encode()) {
		t.Fatal("a private key appears in the output")
	}

	// A key the server does not know: exit 1, and the message says the
	// server refused it and how to fix it.
	stranger := testutil.Key(t)
	clientEnv["QUICPORT_PRIVKEY"] = stranger.Encode()
	bad := start(t, clientEnv, "client", "-s", listening["listen"].(string), "-r", "0", "-l", echo)
	if code := bad.wait(); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	want := "quicport: server rejected authentication: client public key " + stranger.Public().String() + " is not authorized; add it to the server's --client-pubkeys or --client-pubkeys-file"
	if !strings.Contains(bad.errors(), want) {
		t.Errorf("stderr = %q, want %q", bad.errors(), want)
	}
}

func TestClientCannotReachServer(t *testing.T) {
	// A UDP port nobody serves: the host's ICMP answer ends the attempt at
	// once, and the message says what it means.
	cl := start(t, map[string]string{"XDG_DATA_HOME": t.TempDir()}, "client", "-s", "127.0.0.1:9", "--reconnect=false", "--psk", "x", "-L", "127.0.0.1:0", "-R", "22")
	if code := cl.wait(); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if !strings.Contains(cl.errors(), "cannot reach server 127.0.0.1:9: nothing listens on that UDP port") {
		t.Errorf("stderr = %q", cl.errors())
	}
}

// Keys from the real wg work with quicport and the other way round.
func TestWireGuardKeyCompatibility(t *testing.T) {
	wg, err := exec.LookPath("wg")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("wg (wireguard-tools) is required under CI; .ci/run installs it")
		}
		t.Skip("wg not installed (apt-get install wireguard-tools)")
	}
	run := func(stdin string, name string, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		if name == "quicport" {
			if code := Run(context.Background(), args, Stdio{In: strings.NewReader(stdin), Out: &out, Err: &errb}, os.Getenv); code != 0 {
				t.Fatalf("quicport %v: exit %d: %s", args, code, errb.String())
			}
			return out.String()
		}
		cmd := testutil.Command(t, time.Minute, name, args...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, errb.String())
		}
		return out.String()
	}
	for range 20 {
		wgKey := run("", wg, "genkey")
		if a, b := run(wgKey, wg, "pubkey"), run(wgKey, "quicport", "pubkey"); a != b {
			t.Fatalf("wg genkey key: wg pubkey %q, quicport pubkey %q", a, b)
		}
		qKey := run("", "quicport", "keygen")
		if a, b := run(qKey, wg, "pubkey"), run(qKey, "quicport", "pubkey"); a != b {
			t.Fatalf("quicport keygen key: wg pubkey %q, quicport pubkey %q", a, b)
		}
	}
}

// Every authentication mode at debug level: no secret appears in any
// output, and secrets given in argv draw a warning.
func TestNoSecretsInOutputAtDebugLevel(t *testing.T) {
	dir := t.TempDir()
	serverKey, clientKey := testutil.Key(t), testutil.Key(t)
	psk := "debug-level-secret-psk-value-0123"
	echo := testutil.EchoServer(t)
	modes := []struct {
		name       string
		serverArgs []string
		clientArgs []string
		secrets    []string
	}{
		{"psk in argv", []string{"--psk", psk}, []string{"--psk", psk}, []string{psk}},
		{"x25519 in argv", []string{"--privkey", serverKey.Encode(), "--client-pubkeys", clientKey.Public().String()},
			[]string{"--privkey", clientKey.Encode(), "--server-pubkey", serverKey.Public().String()},
			[]string{serverKey.Encode(), clientKey.Encode()}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			env := map[string]string{"XDG_CONFIG_HOME": filepath.Join(dir, m.name, "c"), "XDG_DATA_HOME": filepath.Join(dir, m.name, "d")}
			srv := start(t, env, append([]string{"--log-level", "debug", "server", "--api-listen", "127.0.0.1:0", "-l", "127.0.0.1:0"}, m.serverArgs...)...)
			listen := srv.waitLog("quicport server listening")["listen"].(string)
			cl := start(t, env, append([]string{"--log-level", "debug", "client", "-s", listen, "--accept-new-host", "-L", "127.0.0.1:0", "-R", echo}, m.clientArgs...)...)
			ready := cl.waitLog("forward established")
			if err := testutil.EchoCheck(ready["local_listen"].(string), 1<<20, 3); err != nil {
				t.Fatal(err)
			}
			// A failing client too: its errors must not echo the secret.
			bad := start(t, env, append([]string{"--log-level", "debug", "client", "-s", listen, "--accept-new-host", "--reconnect=false", "-L", "127.0.0.1:0", "-R", echo},
				wrongCredentials(m.clientArgs)...)...)
			bad.wait()
			cl.stop()
			srv.stop()
			all := srv.output() + srv.errors() + cl.output() + cl.errors() + bad.output() + bad.errors()
			for _, s := range m.secrets {
				if strings.Contains(all, s) {
					t.Fatalf("a secret appears in the output:\n%s", all)
				}
			}
			if !strings.Contains(srv.output(), "visible to other users in the process list") {
				t.Error("no warning about a secret in argv")
			}
		})
	}
}

// wrongCredentials replaces the secret values in args with wrong ones that
// still parse.
func wrongCredentials(args []string) []string {
	out := slices.Clone(args)
	for i := 0; i+1 < len(out); i++ {
		switch out[i] {
		case "--psk":
			out[i+1] = "wrong-" + out[i+1]
		case "--privkey":
			k, _ := auth.GenerateKey()
			out[i+1] = k.Encode()
		}
	}
	return out
}

func TestAuditVerifyCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		l.Record(audit.Event{Type: "forward_open", Fields: map[string]any{"n": i}})
	}
	l.Close()
	run := func() (int, string, string) {
		var out, errb bytes.Buffer
		code := Run(context.Background(), []string{"audit", "verify", path}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, os.Getenv)
		return code, out.String(), errb.String()
	}
	if code, out, _ := run(); code != 0 || !strings.Contains(out, "4 lines, hash chain intact") {
		t.Fatalf("intact log: exit %d, %q", code, out)
	}
	b, _ := os.ReadFile(path)
	os.WriteFile(path, bytes.Replace(b, []byte(`"n":1`), []byte(`"n":7`), 1), 0o600)
	if code, _, errOut := run(); code != 1 || !strings.Contains(errOut, "line 3: line 2 was edited") {
		t.Fatalf("edited log: exit %d, %q", code, errOut)
	}
}

// quicport data-plane configured by QUICPORT_DP_* variables serves clients,
// keeps its state file current for ctl status, and removes it on exit.
func TestDataPlaneAndCtlStatus(t *testing.T) {
	dir := t.TempDir()
	serverKey, clientKey := testutil.Key(t), testutil.Key(t)
	env := map[string]string{
		"XDG_CONFIG_HOME":            filepath.Join(dir, "config"),
		"XDG_STATE_HOME":             filepath.Join(dir, "state"),
		"QUICPORT_DP_AUTH_TYPE":      "x25519",
		"QUICPORT_DP_SERVER_PRIVKEY": serverKey.Encode(),
		"QUICPORT_DP_CLIENT_PUBKEYS": testutil.Key(t).Public().String() + "," + clientKey.Public().String(),
	}
	dp := start(t, env, "data-plane", "--listen", "127.0.0.1:0", "--congestion", "bbr", "--stream-window", "1M")
	listening := dp.waitLog("quicport data plane listening")
	if listening["auth"] != "x25519" || listening["congestion"] != "bbr" || listening["stream_window"] != float64(1<<20) {
		t.Fatalf("start-up line %v", listening)
	}
	echo := testutil.EchoServer(t)
	cl := start(t, map[string]string{"XDG_DATA_HOME": filepath.Join(dir, "data"), "QUICPORT_PRIVKEY": clientKey.Encode(), "QUICPORT_SERVER_PUBKEY": serverKey.Public().String()},
		"client", "-s", listening["listen"].(string), "-L", "127.0.0.1:0", "-R", echo)
	ready := cl.waitLog("forward established")
	if err := testutil.EchoCheck(ready["local_listen"].(string), 1<<20, 5); err != nil {
		t.Fatal(err)
	}
	status := func() string {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), []string{"ctl", "status"}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, func(k string) string { return env[k] }); code != 0 {
			t.Fatalf("ctl status: exit %d: %s", code, errb.String())
		}
		return out.String()
	}
	// The state file is rewritten every second; wait for the bytes.
	want := fmt.Sprintf("%-10d %-12s %-12d %-15d %d\n", os.Getpid(), "ACTIVE", 0, 1<<20, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(status(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("ctl status never showed %q:\n%s", want, status())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.HasPrefix(status(), "Data Planes:\nPID        State        Connections  Bytes Sent      Bytes Received\n") {
		t.Errorf("table header:\n%s", status())
	}
	// ctl drain --pid reaches a standalone data plane directly.
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"ctl", "drain", "--pid", fmt.Sprint(os.Getpid())}, Stdio{In: strings.NewReader(""), Out: &out, Err: &errb}, func(k string) string { return env[k] }); code != 0 ||
		!strings.Contains(out.String(), "is draining") {
		t.Fatalf("ctl drain: exit %d: %s%s", code, out.String(), errb.String())
	}
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(status(), "DRAINING"); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ctl status after drain:\n%s", status())
		}
	}
	cl.stop()
	if code := dp.stop(); code != 0 {
		t.Errorf("data plane exit code %d", code)
	}
	if out := status(); !strings.Contains(out, "(none running)") {
		t.Errorf("state file left after exit:\n%s", out)
	}
	if strings.Contains(dp.output()+dp.errors(), serverKey.Encode()) {
		t.Fatal("the data plane's private key is in its output")
	}
}

// --stream-window is what each side announces to its peer: a stream may
// send min(window, 512 KiB) before its reader has read anything (auto-
// tuning grows that to the window) and the connection eight windows.
// Raw QUIC peers read the announcements of a server (its data plane,
// which gets the flag from the server's command line) and of a client from
// their qlog. Then data moves intact through a tunnel at the smallest
// window.
func TestStreamWindowReachesThePeer(t *testing.T) {
	home := t.TempDir()
	env := map[string]string{"XDG_CONFIG_HOME": filepath.Join(home, "config"), "XDG_DATA_HOME": filepath.Join(home, "data")}
	srv := start(t, env, "server", "--no-api", "--listen", "127.0.0.1:0", "--stream-window", "256K")
	listening := srv.waitLog("quicport server listening")
	if listening["stream_window"] != float64(256<<10) {
		t.Errorf("start-up line %v: want stream_window 262144", listening)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	check := func(who string, pp *testutil.PeerParams, window int64) {
		t.Helper()
		got, err := pp.Remote(ctx)
		if err != nil {
			t.Fatalf("%s: no transport parameters: %v", who, err)
		}
		for k, want := range map[string]int64{"initial_max_data": 8 * window, "initial_max_stream_data_bidi_remote": min(window, 512<<10), "initial_max_stream_data_bidi_local": min(window, 512<<10)} {
			if got[k] != float64(want) {
				t.Errorf("%s announced %s = %v, want %d", who, k, got[k], want)
			}
		}
	}

	transport := func() *quic.Transport {
		udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		tr := &quic.Transport{Conn: udp}
		t.Cleanup(func() { tr.Close(); udp.Close() })
		return tr
	}

	toServer := testutil.NewPeerParams()
	qc := tunnel.QUICConfig(0, 0)
	qc.Tracer = toServer.Tracer
	serverAddr, err := net.ResolveUDPAddr("udp", listening["listen"].(string))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := transport().Dial(ctx, serverAddr, tlsid.ClientTLSConfig("localhost", nil, nil), qc)
	if err != nil {
		t.Fatal(err)
	}
	check("the server with --stream-window 256K", toServer, 256<<10)
	conn.CloseWithError(0, "")

	fromClient := testutil.NewPeerParams()
	qc = tunnel.QUICConfig(0, 0)
	qc.Tracer = fromClient.Tracer
	lt := transport()
	ln, err := lt.Listen(tlsid.ServerTLSConfig(testutil.Identity(t), false), qc)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pskPath := filepath.Join(home, "config", "quicport", "psk")
	raw := start(t, env, "client", "-s", lt.Conn.LocalAddr().String(), "--insecure", "--psk-file", pskPath, "-L", "127.0.0.1:0", "-R", "1", "--stream-window", "16M")
	check("the client with --stream-window 16M", fromClient, 16<<20)
	raw.stop()

	echo := testutil.EchoServer(t)
	cl := start(t, env, "client", "-s", listening["listen"].(string), "--accept-new-host", "--psk-file", pskPath,
		"-L", "127.0.0.1:0", "-R", echo, "--stream-window", "64K")
	ready := cl.waitLog("forward established")
	if err := testutil.EchoCheck(ready["local_listen"].(string), 16<<20, 3); err != nil {
		t.Fatalf("echo through a tunnel with 64 KiB windows on the client and 256 KiB on the server: %v", err)
	}
}
