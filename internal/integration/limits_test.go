//go:build linux

package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

// badHandshake connects from 127.0.0.2 and authenticates with a wrong PSK.
func badHandshake(ctx context.Context, server *net.UDPAddr) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		return
	}
	defer udp.Close()
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := tr.Dial(ctx, server, tlsid.ClientTLSConfig("localhost", nil, nil), tunnel.QUICConfig(0, 0))
	if err != nil {
		return // refused before the handshake: the cheap path
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return
	}
	st.SetDeadline(time.Now().Add(5 * time.Second))
	binding, _ := auth.Binding(conn.ConnectionState().TLS)
	auth.Client(st, binding, auth.ClientConfig{PSK: auth.PSK("wrong")})
}

func connectTime(t *testing.T, cfg client.Config) time.Duration {
	t.Helper()
	start := time.Now()
	c, err := testutil.TryClient(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	c.Stop()
	return d
}

func medianDuration(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// floodEnv, when set to a server address, makes the test binary the
// flood's attacker instead of running tests (see TestMain and runFlood).
const floodEnv = "QUICPORT_TEST_FLOOD"

// floodAttempts is how many bad handshakes the flood makes at least.
const floodAttempts = 2000

// runFlood is the attacker of TestFloodOfBadHandshakes, in a process of its
// own: bad handshakes at server from four workers until it has made
// floodAttempts of them and its stdin is closed.
func runFlood(server string) int {
	addr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		fmt.Fprintln(os.Stderr, "flood:", err)
		return 1
	}
	stop := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(stop) }()
	var made atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					if made.Load() >= floodAttempts {
						return
					}
				default:
				}
				badHandshake(context.Background(), addr)
				made.Add(1)
			}
		})
	}
	wg.Wait()
	return 0
}

// 2,000 or more handshakes with bad credentials while a good client
// connects and moves 64 MiB: the good client succeeds, connects about as
// fast as without the flood, and the server's memory returns to its
// baseline. The attacker runs in a process of its own at the lowest CPU
// priority: a real flood spends its own CPU on other machines, and on a
// small test machine an attacker at equal priority (worse, one built with
// the race detector) slows the good client by taking its CPU, which says
// nothing about the server.
func TestFloodOfBadHandshakes(t *testing.T) {
	if c, err := net.ListenPacket("udp", "127.0.0.2:0"); err != nil {
		t.Skipf("127.0.0.2 unusable: %v", err)
	} else {
		c.Close()
	}
	nice, err := exec.LookPath("nice")
	if err != nil {
		t.Fatalf("nice (coreutils) not found: %v", err)
	}
	cr := credentials(t)[0]
	srv := testutil.StartServer(t, server.Config{Auth: cr.server})
	echo := testutil.EchoServer(t)
	cfg := client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
	}
	var unloaded []time.Duration
	for range 7 {
		unloaded = append(unloaded, connectTime(t, cfg))
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()

	flood := exec.Command(nice, "-n", "19", os.Args[0], "-test.run=^$")
	flood.Env = append(os.Environ(), floodEnv+"="+srv.AddrString())
	flood.Stderr = os.Stderr
	stopFlood, err := flood.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	var floodErr error
	floodExited := make(chan struct{})
	go func() { floodErr = flood.Wait(); close(floodExited) }()
	t.Cleanup(func() { flood.Process.Kill(); <-floodExited })
	waitFor(t, func() bool { return srv.Stats().SourcesRefused >= 100 }, "the flood to be under way")

	var loaded []time.Duration
	for range 7 {
		loaded = append(loaded, connectTime(t, cfg))
	}
	c := testutil.StartClient(t, cfg)
	if err := testutil.EchoCheck(c.Ready.LocalListen.String(), 32<<20, 7); err != nil { // 32 MiB each way
		t.Fatalf("good client during the flood: %v", err)
	}
	c.Stop()
	select {
	case <-floodExited:
		t.Fatalf("the flood ended before the good client was done: %v", floodErr)
	default:
	}
	stopFlood.Close()
	select {
	case <-floodExited:
		if floodErr != nil {
			t.Fatalf("flood: %v", floodErr)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the flood did not finish its attempts within 2 minutes")
	}
	// The unloaded baseline is sampled before and after the flood, so a
	// machine busy with other tests at one of those moments does not
	// decide the comparison.
	for range 7 {
		unloaded = append(unloaded, connectTime(t, cfg))
	}

	st := srv.Stats()
	t.Logf("connect p50 unloaded %v, during the flood %v; %d failures authenticated, %d refused cheaply",
		medianDuration(unloaded), medianDuration(loaded), st.AuthFailed, st.SourcesRefused)
	// 2x, with a floor for scheduler noise on a small machine and room for
	// the race detector's slower server.
	if limit := time.Duration(raceSlowdown * float64(max(2*medianDuration(unloaded), 20*time.Millisecond))); medianDuration(loaded) > limit {
		t.Errorf("connect time during the flood %v exceeds %v", medianDuration(loaded), limit)
	}
	// Refusals count Initial packets, so a refused attempt may count more
	// than once; at most ~40 attempts may reach authentication.
	if st.AuthFailed > 100 || st.SourcesRefused < 1500 {
		t.Errorf("%d bad attempts authenticated and %d were refused before the handshake; want the budget to stop nearly all", st.AuthFailed, st.SourcesRefused)
	}
	if st.AuthSuccess != 22 { // 14 unloaded, 7 loaded, one moving data
		t.Errorf("AuthSuccess = %d, want the 22 good sessions", st.AuthSuccess)
	}
	// Memory and goroutines return to the baseline.
	waitFor(t, func() bool { return runtime.NumGoroutine() <= goroutines+5 }, "goroutines to return to the baseline")
	// Closed connections linger briefly in quic-go (to answer
	// retransmissions) and pools empty over two collections: poll.
	var grown int64
	deadline := time.Now().Add(15 * time.Second)
	for {
		runtime.GC()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if grown = int64(after.HeapInuse) - int64(before.HeapInuse); grown <= 8<<20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if grown > 8<<20 {
		t.Errorf("heap is still %d KiB above its baseline after the flood", grown>>10)
	}
}

func TestSessionLimits(t *testing.T) {
	serverKey, clientKey := testutil.Key(t), testutil.Key(t)
	echo := testutil.EchoServer(t)
	srv := testutil.StartServer(t, server.Config{
		Auth:               auth.ServerConfig{PrivateKey: serverKey, AuthorizedKeys: []auth.AuthorizedKey{{Key: clientKey.Public()}}},
		MaxConnsPerSession: 2, MaxSessionsPerKey: 1, BandwidthLimit: 1 << 20,
	})
	cfg := client.Config{
		Server: srv.AddrString(), TOFU: testutil.KnownHosts(t),
		Auth:    auth.ClientConfig{PrivateKey: clientKey, ServerKey: serverKey.Public()},
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
	}
	c := testutil.StartClient(t, cfg)
	entry := c.Ready.LocalListen.String()

	// One key, one session.
	_, err := testutil.TryClient(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "already has 1 sessions") {
		t.Fatalf("second session of the key: %v", err)
	}

	// Two connections at once, not three.
	var held []net.Conn
	for range 2 {
		conn, err := net.Dial("tcp", entry)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Write([]byte("x"))
		io.ReadFull(conn, make([]byte, 1))
		held = append(held, conn)
	}
	third, err := dialMayBeRefused(t, entry)
	if err == nil {
		third.Write([]byte("x"))
		third.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := third.Read(make([]byte, 1)); err == nil {
			t.Fatal("a third connection got through a limit of 2")
		}
		third.Close()
	}
	if got := srv.Stats().ConnectionsRefused; got != 1 {
		t.Errorf("ConnectionsRefused = %d, want 1", got)
	}
	for _, h := range held {
		h.Close()
	}

	// 1 MiB/s: 3 MiB each way take at least two seconds.
	waitFor(t, func() bool { return srv.Stats().ConnectionsActive == 0 }, "held connections to end")
	start := time.Now()
	if err := testutil.EchoCheck(entry, 3<<20, 8); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("3 MiB through a 1 MiB/s limit took %v", d)
	}
}

// Connections that have not authenticated are capped; new tunneled
// connections are rate limited per session.
func TestUnauthenticatedCapAndConnRate(t *testing.T) {
	cr := credentials(t)[0]
	echo := testutil.EchoServer(t)
	srv := testutil.StartServer(t, server.Config{Auth: cr.server, MaxUnauthenticated: 2, ConnRate: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var idle []*quic.Conn
	for range 2 {
		conn, err := quic.DialAddr(ctx, srv.AddrString(), tlsid.ClientTLSConfig("localhost", nil, nil), tunnel.QUICConfig(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseWithError(0, "")
		idle = append(idle, conn)
	}
	waitFor(t, func() bool { return srv.Stats().Authenticating == 2 }, "two connections to be authenticating")
	third, err := quic.DialAddr(ctx, srv.AddrString(), tlsid.ClientTLSConfig("localhost", nil, nil), tunnel.QUICConfig(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-third.Context().Done():
	case <-ctx.Done():
		t.Fatal("a third unauthenticated connection was kept with a cap of 2")
	}
	if !strings.Contains(context.Cause(third.Context()).Error(), "too many connections authenticating") {
		t.Errorf("close reason = %v", context.Cause(third.Context()))
	}
	for _, c := range idle {
		c.CloseWithError(0, "")
	}
	// Once those are gone, a real client gets in.
	waitFor(t, func() bool {
		c, err := testutil.TryClient(t, client.Config{
			Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
			Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
		})
		if err != nil {
			return false
		}
		defer c.Stop()
		// 5 new connections per second, bursts of 10: of 30 opened at
		// once, some are refused, and the session is otherwise fine.
		refusedBefore := srv.Stats().ConnectionsRefused
		for range 30 {
			if conn, err := dialMayBeRefused(t, c.Ready.LocalListen.String()); err == nil {
				conn.Close()
			}
		}
		waitFor(t, func() bool { return srv.Stats().ConnectionsRefused-refusedBefore >= 15 }, "the connection rate limit to refuse")
		time.Sleep(time.Second) // the bucket refills
		if err := testutil.EchoCheck(c.Ready.LocalListen.String(), 64<<10, 1); err != nil {
			t.Fatalf("after the burst: %v", err)
		}
		return true
	}, "a good client after the unauthenticated connections left")
}

// dialMayBeRefused connects to a tunnel entrance whose server is expected to
// refuse some connections. A refused connection is reset by the client; when
// that reset lands before the dialer has looked at its socket, which a busy
// host makes likely, the dial itself reports ECONNRESET. That is a refusal,
// returned as an error; any other dial error fails the test.
func dialMayBeRefused(t *testing.T, addr string) (net.Conn, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	return conn, err
}
