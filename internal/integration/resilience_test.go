//go:build linux

package integration

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tlsid"
)

// restartable is a server that can be stopped and started again on the same
// UDP address with the same identity.
type restartable struct {
	t    *testing.T
	cfg  server.Config
	addr string
	srv  *testutil.Server
}

func newRestartable(t *testing.T, cr creds) *restartable {
	cert, err := tlsid.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &restartable{t: t, cfg: server.Config{Auth: cr.server, Certificate: cert}}
	r.start()
	r.addr = r.srv.AddrString()
	r.cfg.Listen = r.addr
	return r
}

func (r *restartable) start() { r.srv = testutil.StartServer(r.t, r.cfg) }
func (r *restartable) stop()  { r.srv.Stop(r.t) }

// After the server restarts, a remote-forward client re-establishes the
// same remote port by itself.
func TestRemoteForwardSurvivesServerRestart(t *testing.T) {
	cr := credentials(t)[0]
	srv := newRestartable(t, cr)
	echo := testutil.EchoServer(t)
	port := testutil.FreePort(t)
	var ready atomic.Int32
	testutil.StartClient(t, client.Config{
		Server: srv.addr, Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward:   client.Forward{Remote: true, Source: mustAddr(t, testutil.Itoa(port)), Dest: mustAddr(t, echo)},
		Reconnect: true, ReconnectDelay: 100 * time.Millisecond,
		OnReady: func(client.Ready) { ready.Add(1) },
	})
	entry := "127.0.0.1:" + testutil.Itoa(port)
	if err := testutil.EchoCheck(entry, 1<<20, 1); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		srv.stop()
		srv.start()
		waitFor(t, func() bool { return ready.Load() == int32(i+2) }, "the client to re-establish its forward")
		if err := testutil.EchoCheck(entry, 1<<20, uint64(i)); err != nil {
			t.Fatalf("after restart %d: %v", i+1, err)
		}
	}
}

// A local-forward client keeps its listener while reconnecting: a
// connection that arrives meanwhile waits and then goes through.
func TestLocalForwardWaitsForTunnel(t *testing.T) {
	cr := credentials(t)[0]
	srv := newRestartable(t, cr)
	echo := testutil.EchoServer(t)
	var ready atomic.Int32
	c := testutil.StartClient(t, client.Config{
		Server: srv.addr, Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward:   client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
		Reconnect: true, ReconnectDelay: 100 * time.Millisecond, ConnectWait: time.Second,
		OnReady: func(client.Ready) { ready.Add(1) },
	})
	srv.stop()
	conn, err := net.Dial("tcp", c.Ready.LocalListen.String())
	if err != nil {
		t.Fatalf("local listener closed while reconnecting: %v", err)
	}
	defer conn.Close()
	time.Sleep(300 * time.Millisecond)
	srv.start()
	msg := []byte("arrived while the tunnel was down")
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo = %q, %v", got, err)
	}
	if ready.Load() != 2 {
		t.Errorf("forward established %d times, want 2", ready.Load())
	}

	// A connection that waits longer than ConnectWait is closed.
	srv.stop()
	waitFor(t, func() bool {
		c, err := net.Dial("tcp", c.Ready.LocalListen.String())
		if err != nil {
			t.Fatalf("local listener closed while reconnecting: %v", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		_, err = c.Read(make([]byte, 1))
		if err == nil {
			t.Fatal("read data from a connection with no tunnel")
		}
		return time.Since(start) >= 900*time.Millisecond
	}, "a waiting connection to be closed after ConnectWait")
}

func TestReconnectOffAndMaxAttempts(t *testing.T) {
	cr := credentials(t)[0]
	srv := newRestartable(t, cr)
	base := client.Config{
		Server: srv.addr, Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, "22")},
		Timeout: 500 * time.Millisecond, ReconnectDelay: 50 * time.Millisecond,
	}
	// --reconnect=false: the session's end is the client's end.
	c := testutil.StartClient(t, base)
	srv.stop()
	select {
	case <-c.Done():
		if err := c.Err(); !errors.Is(err, client.ErrServerClosed) {
			t.Errorf("error = %v, want ErrServerClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("client without reconnect kept running after the server left")
	}
	// Reconnect with at most 2 attempts against a server that stays down.
	cfg := base
	cfg.Reconnect, cfg.MaxAttempts = true, 2
	srv.start()
	c = testutil.StartClient(t, cfg)
	srv.stop()
	select {
	case <-c.Done():
		if err := c.Err(); err == nil || !strings.Contains(err.Error(), "giving up after 2 reconnection attempts") {
			t.Errorf("error = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("client did not give up")
	}
}

// replyAfterEOF is a TCP server that reads its peer's whole request, and
// only after the peer's FIN answers with the request's sha256 and closes:
// HTTP/1.0 style, as `nc -N` uses it.
func replyAfterEOF(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				h := sha256.New()
				if _, err := io.Copy(h, c); err != nil {
					return
				}
				c.Write(h.Sum(nil))
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHalfClose(t *testing.T) {
	cr := credentials(t)[0]
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			dest := replyAfterEOF(t)
			srv := testutil.StartServer(t, server.Config{Auth: cr.server})
			cfg := client.Config{Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t)}
			if m.remote {
				cfg.Forward = client.Forward{Remote: true, Source: mustAddr(t, "0"), Dest: mustAddr(t, dest)}
			} else {
				cfg.Forward = client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, dest)}
			}
			entry := entryOf(t, testutil.StartClient(t, cfg), m.remote)
			conn, err := net.Dial("tcp", entry)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			req := []byte(strings.Repeat("GET / HTTP/1.0\r\n", 4096))
			if _, err := conn.Write(req); err != nil {
				t.Fatal(err)
			}
			conn.(*net.TCPConn).CloseWrite()
			reply, err := io.ReadAll(conn)
			want := sha256.Sum256(req)
			if err != nil || string(reply) != string(want[:]) {
				t.Fatalf("reply after half-close = %x, %v; want %x", reply, err, want)
			}
		})
	}
}

// IPv6 end to end: server on [::1], client to [::1], remote ports on both
// address families, local forward to an IPv6 destination.
func TestIPv6(t *testing.T) {
	if ln, err := net.Listen("tcp", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	cr := credentials(t)[1]
	echo6, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	echo6.Close()
	echo := testutil.EchoServer(t) // 127.0.0.1
	srv := testutil.StartServer(t, server.Config{Auth: cr.server, Listen: "[::1]:0"})
	if !strings.HasPrefix(srv.AddrString(), "[::1]:") {
		t.Fatalf("server address %s", srv.AddrString())
	}
	rpf := testutil.StartClient(t, client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward: client.Forward{Remote: true, Source: mustAddr(t, "0"), Dest: mustAddr(t, echo)},
	})
	port := testutil.Port(t, rpf.Ready.RemoteListen)
	for _, host := range []string{"127.0.0.1", "::1"} {
		if err := testutil.EchoCheck(net.JoinHostPort(host, port), 1<<20, 3); err != nil {
			t.Errorf("remote port on %s: %v", host, err)
		}
	}
	// A local forward whose destination is IPv6, listening on [::1].
	dest6 := testutil.EchoServer6(t)
	lpf := testutil.StartClient(t, client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward: client.Forward{Source: mustAddr(t, "[::1]:0"), Dest: mustAddr(t, dest6)},
	})
	if err := testutil.EchoCheck(lpf.Ready.LocalListen.String(), 1<<20, 4); err != nil {
		t.Errorf("local forward to %s: %v", dest6, err)
	}
}

// Signals on real processes: SIGINT on a client releases its remote port
// at once; SIGKILL frees it within the idle timeout; SIGINT on the server
// makes clients reconnect instead of exiting.
func TestSignals(t *testing.T) {
	dir := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + dir + "/config", "XDG_DATA_HOME=" + dir + "/data", "QUICPORT_PSK=signals-test-psk"}
	// Both ends use a 2 s idle timeout, so a vanished peer is noticed fast.
	srv := testutil.StartProcess(t, quicportBin, env, "server", "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--quic-idle-timeout", "2")
	listen := srv.WaitLog("quicport server listening", 1, 20*time.Second)["listen"].(string)
	echo := testutil.EchoServer(t)
	port := testutil.Itoa(testutil.FreePort(t))
	rpf := func() *testutil.Process {
		return testutil.StartProcess(t, quicportBin, env, "client", "-s", listen, "--accept-new-host",
			"-r", port, "-l", echo, "--quic-idle-timeout", "2", "--reconnect-delay", "0.2")
	}

	t.Run("SIGINT releases the port at once", func(t *testing.T) {
		c := rpf()
		c.WaitLog("forward established", 1, 20*time.Second)
		c.Signal(syscall.SIGINT)
		if code := c.Wait(10 * time.Second); code != 0 {
			t.Errorf("client exit code after SIGINT = %d, want 0", code)
		}
		start := time.Now()
		c2 := rpf()
		c2.WaitLog("forward established", 1, 5*time.Second)
		if d := time.Since(start); d > time.Second {
			t.Errorf("the next client got the port after %v, want under a second", d)
		}
		if strings.Contains(c2.Output(), "already in use") {
			t.Error("port still in use after SIGINT")
		}
		c2.Signal(syscall.SIGTERM)
		c2.Wait(10 * time.Second)
	})

	t.Run("SIGKILL frees the port within the idle timeout", func(t *testing.T) {
		c := rpf()
		c.WaitLog("forward established", 1, 20*time.Second)
		c.Signal(syscall.SIGKILL)
		c.Wait(10 * time.Second)
		// The next client normally takes the port over at once (the old
		// session's client does not answer: TestKilledClientsPortIsTakenOver);
		// at the latest the 2 s idle timeout frees it. A client refused
		// "port in use" meanwhile exits, so keep starting one.
		killed := time.Now()
		var c2 *testutil.Process
		for {
			c2 = rpf()
			if c2.WaitAny([]string{"forward established"}, 10*time.Second) {
				break
			}
			if !strings.Contains(c2.Output(), "already in use on the server") {
				t.Fatalf("client failed for another reason:\n%s", c2.Output())
			}
			if time.Since(killed) > 4*time.Second {
				t.Fatalf("port still held %v after the client was killed (idle timeout 2s)", time.Since(killed))
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("port free again %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
		if err := testutil.EchoCheck("127.0.0.1:"+port, 1<<20, 5); err != nil {
			t.Fatal(err)
		}
		c2.Signal(syscall.SIGTERM)
		c2.Wait(10 * time.Second)
	})

	// SIGINT stops the server and its data planes (SIGTERM stops only
	// the control plane: TestControlPlaneRestart).
	t.Run("SIGINT on the server makes clients reconnect", func(t *testing.T) {
		c := rpf()
		c.WaitLog("forward established", 1, 20*time.Second)
		srv.Signal(syscall.SIGINT)
		if code := srv.Wait(20 * time.Second); code != 0 {
			t.Errorf("server exit code after SIGINT = %d, want 0", code)
		}
		c.WaitLog("tunnel down; reconnecting", 1, 10*time.Second)
		if !strings.Contains(c.Output(), "server closed the session") {
			t.Errorf("client was not told the server is closing:\n%s", c.Output())
		}
		if c.Exited() {
			t.Fatal("client exited when the server shut down")
		}
		srv2 := testutil.StartProcess(t, quicportBin, env, "server", "--api-listen", "127.0.0.1:0", "--listen", listen)
		srv2.WaitLog("quicport server listening", 1, 20*time.Second)
		c.WaitLog("forward established", 2, 30*time.Second)
		if err := testutil.EchoCheck("127.0.0.1:"+port, 1<<20, 6); err != nil {
			t.Fatal(err)
		}

		// A server that vanishes without a word is noticed within the
		// idle timeout.
		srv2.KillAll()
		killed := time.Now()
		c.WaitLog("tunnel down; reconnecting", 2, 10*time.Second)
		if d := time.Since(killed); d > 4*time.Second {
			t.Errorf("client noticed the dead server after %v (idle timeout 2s)", d)
		}
	})
}

// A client killed with SIGKILL and started again gets its remote port back
// on its first attempt, long before the old session's idle timeout: the
// server sees that the old session's client no longer answers and hands its
// port over. A client whose holder still answers is refused, and the holder
// keeps its port. With two QUIC connections sharing the port, the same
// holds for both: a rival is refused while either answers, and both are
// closed when the killed client's successor takes the port.
func TestKilledClientsPortIsTakenOver(t *testing.T) {
	for _, name := range []string{"tcp", "udp", "tcp-shared"} {
		protocol, sessions := strings.TrimSuffix(name, "-shared"), "1"
		if protocol != name {
			sessions = "2"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			env := []string{"XDG_CONFIG_HOME=" + dir + "/config", "XDG_DATA_HOME=" + dir + "/data", "XDG_STATE_HOME=" + dir + "/state", "QUICPORT_PSK=takeover-test-psk"}
			// An idle timeout far longer than the test: only the take-over can free the port.
			srv := testutil.StartProcess(t, quicportBin, env, "server", "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--quic-idle-timeout", "120")
			listen := srv.WaitLog("quicport server listening", 1, 20*time.Second)["listen"].(string)
			var echo, port string
			if protocol == "udp" {
				echo, port = startUDPEcho(t).addr(), freeUDPPort(t)
			} else {
				echo, port = testutil.EchoServer(t), testutil.Itoa(testutil.FreePort(t))
			}
			rpf := func() *testutil.Process {
				return testutil.StartProcess(t, quicportBin, env, "client", "-s", listen, "--accept-new-host",
					"-r", port+"/"+protocol, "-l", echo+"/"+protocol, "--quic-idle-timeout", "120", "--reconnect-delay", "0.2",
					"--quic-connections", sessions)
			}
			check := func(seed int) {
				t.Helper()
				if protocol == "tcp" {
					if err := testutil.EchoCheck("127.0.0.1:"+port, 1<<20, uint64(seed)); err != nil {
						t.Fatal(err)
					}
					return
				}
				raddr, _ := net.ResolveUDPAddr("udp", "127.0.0.1:"+port)
				c, err := net.DialUDP("udp", nil, raddr)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				for seq, n := range []int{1, 1200, 9000, 65507} {
					if err := exchange(c, seed, seq, n); err != nil {
						t.Fatal(err)
					}
				}
			}

			first := rpf()
			first.WaitLog("forward established", 1, 20*time.Second)
			check(1)
			rival := rpf()
			if code := rival.Wait(20 * time.Second); code == 0 || !strings.Contains(rival.Output(), "already in use on the server") {
				t.Fatalf("a second client took the port of one that answers (exit %d):\n%s", code, rival.Output())
			}
			check(2)

			first.Signal(syscall.SIGKILL)
			first.Wait(10 * time.Second)
			next := rpf()
			if !next.WaitAny([]string{"forward established"}, 30*time.Second) {
				t.Fatalf("the restarted client did not get its port:\n%s", next.Output())
			}
			if strings.Contains(next.Output(), "already in use") {
				t.Errorf("the restarted client was refused first:\n%s", next.Output())
			}
			n, _ := strconv.Atoi(sessions)
			line := srv.WaitLog("closing session: its client stopped answering and connected again", n, 10*time.Second)
			if peer := fmt.Sprint(line["new_peer"]); !strings.HasPrefix(peer, "127.0.0.1:") {
				t.Errorf("new_peer = %q, want the new session's address", peer)
			}
			check(3)
		})
	}
}

// freeUDPPort returns a UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return testutil.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
}

// A server killed outright (SIGKILL, its data planes too) and started again
// on the same port answers a packet of a session it no longer has with a
// QUIC stateless reset. A local forward's client learns it from the first
// connection that arrives (announcing it takes such a packet) and
// reconnects at once, instead of waiting out its idle timeout (120 s here,
// on both sides); the connections after it go through. Keep-alives alone
// do not do it: quic-go answers only packets larger than its 42-byte
// reset, and a keep-alive is 37 bytes.
func TestKilledServersClientsReconnectAtOnce(t *testing.T) {
	dir := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + dir + "/config", "XDG_DATA_HOME=" + dir + "/data", "XDG_STATE_HOME=" + dir + "/state", "QUICPORT_PSK=reset-test-psk"}
	listen := "127.0.0.1:" + freeUDPPort(t)
	serve := func() *testutil.Process {
		srv := testutil.StartProcess(t, quicportBin, env, "server", "--api-listen", "127.0.0.1:0", "--listen", listen, "--quic-idle-timeout", "120")
		srv.WaitLog("data plane active", 1, 30*time.Second)
		return srv
	}
	srv := serve()
	echo := testutil.EchoServer(t)
	entry := "127.0.0.1:" + testutil.Itoa(testutil.FreePort(t))
	c := testutil.StartProcess(t, quicportBin, env, "client", "-s", listen, "--accept-new-host",
		"-L", entry, "-R", echo, "--quic-idle-timeout", "120", "--reconnect-delay", "0.2")
	c.WaitLog("forward established", 1, 20*time.Second)
	if err := testutil.EchoCheck(entry, 1<<20, 41); err != nil {
		t.Fatal(err)
	}

	srv.KillAll()
	srv.Wait(10 * time.Second)
	serve()
	// The first connection goes to the old session, which the new server
	// resets; it is lost with it (reset so fast that even the connect may
	// report it).
	if first, err := net.Dial("tcp", entry); err == nil {
		defer first.Close()
		first.Write([]byte("hello"))
	}
	line := c.WaitLog("tunnel down; reconnecting", 1, 30*time.Second)
	if msg := fmt.Sprint(line["err"]); !strings.Contains(msg, "no longer has this session") {
		t.Errorf("client's reason: %q, want that the server no longer has the session", msg)
	}
	c.WaitLog("forward established", 2, 30*time.Second)
	if err := testutil.EchoCheck(entry, 1<<20, 42); err != nil {
		t.Fatalf("after the server came back: %v", err)
	}
}
