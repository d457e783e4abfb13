//go:build linux

// Package integration holds end-to-end tests of quicport: real servers and
// clients in-process on loopback sockets, with every byte verified. They
// use network namespaces, BPF steering and systemd, so every file is for
// Linux only (and `GOOS=darwin go vet ./...` still checks the rest).
package integration

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// quicportBin is the quicport binary built for tests that run real processes.
var quicportBin string

func TestMain(m *testing.M) {
	if addr := os.Getenv(floodEnv); addr != "" {
		os.Exit(runFlood(addr)) // TestFloodOfBadHandshakes's attacker
	}
	dir, err := os.MkdirTemp("", "quicport-test-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	quicportBin, err = testutil.BuildQuicport(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	flag.Parse() // the watchdog reads -test.timeout
	stop := testutil.Watchdog()
	code := m.Run()
	stop()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goroutine leak: %v\n", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// creds is a matching pair of server policy and client credentials.
type creds struct {
	name   string
	server auth.ServerConfig
	client auth.ClientConfig
}

func credentials(t *testing.T) []creds {
	serverKey, clientKey := testutil.Key(t), testutil.Key(t)
	psk := auth.PSK("integration-test-psk-0123456789")
	return []creds{
		{"psk", auth.ServerConfig{PSK: psk}, auth.ClientConfig{PSK: psk}},
		{"x25519",
			auth.ServerConfig{PrivateKey: serverKey, AuthorizedKeys: []auth.AuthorizedKey{{Key: clientKey.Public()}}},
			auth.ClientConfig{PrivateKey: clientKey, ServerKey: serverKey.Public()}},
	}
}

func mustAddr(t testing.TB, spec string) proto.Addr {
	t.Helper()
	a, err := proto.ParseAddr(spec, true, true)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// setup starts a server and a client forwarding to a fresh echo server and
// returns the address where tunneled connections enter.
func setup(t *testing.T, remote bool, cr creds) (entry string, srv *testutil.Server) {
	t.Helper()
	echo := testutil.EchoServer(t)
	srv = testutil.StartServer(t, server.Config{Auth: cr.server})
	cfg := client.Config{Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t)}
	if remote {
		cfg.Forward = client.Forward{Remote: true, Source: mustAddr(t, "0"), Dest: mustAddr(t, echo)}
	} else {
		cfg.Forward = client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)}
	}
	c := testutil.StartClient(t, cfg)
	return entryOf(t, c, remote), srv
}

// entryOf returns where tunneled connections enter a client's forward: the
// server's port (remote forwards, on 127.0.0.1) or the client's listener.
func entryOf(t *testing.T, c *testutil.Client, remote bool) string {
	t.Helper()
	if remote {
		return net.JoinHostPort("127.0.0.1", testutil.Port(t, c.Ready.RemoteListen))
	}
	return c.Ready.LocalListen.String()
}

func modes() []struct {
	name   string
	remote bool
} {
	return []struct {
		name   string
		remote bool
	}{{"rpf", true}, {"lpf", false}}
}

// 64 MiB each way through one tunneled connection, sha256 checked.
func TestBulkIntegrity(t *testing.T) {
	const size = 64 << 20
	for _, m := range modes() {
		for _, cr := range credentials(t) {
			t.Run(m.name+"/"+cr.name, func(t *testing.T) {
				entry, srv := setup(t, m.remote, cr)
				if err := testutil.EchoCheck(entry, size, 1); err != nil {
					t.Fatal(err)
				}
				st := srv.Stats()
				if st.BytesSent != size || st.BytesRecv != size {
					t.Errorf("server counted %d sent / %d received, want %d each", st.BytesSent, st.BytesRecv, size)
				}
			})
		}
	}
}

// 200 concurrent tunneled connections through one session, each verified.
func TestConcurrentConnections(t *testing.T) {
	const conns, size = 200, 256 << 10
	cr := credentials(t)[0]
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			entry, srv := setup(t, m.remote, cr)
			var g errgroup.Group
			for i := range conns {
				g.Go(func() error {
					if err := testutil.EchoCheck(entry, size, uint64(i)); err != nil {
						return fmt.Errorf("connection %d: %w", i, err)
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			if got := srv.Stats().ConnectionsTotal; got != conns {
				t.Errorf("server counted %d connections, want %d", got, conns)
			}
		})
	}
}

// Consecutive bulk transfers where the receiving side stops reading early
// must not wedge the session (quic-go issue 4182): after each aborted
// transfer, a fresh connection still moves data.
func TestAbortedTransfersDoNotWedge(t *testing.T) {
	cr := credentials(t)[0]
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			entry, _ := setup(t, m.remote, cr)
			for i := range 5 {
				c, err := net.Dial("tcp", entry)
				if err != nil {
					t.Fatal(err)
				}
				// Write up to 8 MiB without reading the echo, then close.
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 1<<20)
				for range 8 {
					if _, err := c.Write(buf); err != nil {
						break
					}
				}
				c.Close()
				if err := testutil.EchoCheck(entry, 1<<20, uint64(i)); err != nil {
					t.Fatalf("after aborted transfer %d: %v", i, err)
				}
			}
		})
	}
}

// After many tunneled connections close, goroutines and heap return to
// where they were: nothing per connection outlives it.
func TestNoGrowthAfterConnectionsClose(t *testing.T) {
	cr := credentials(t)[0]
	entry, srv := setup(t, false, cr)
	measure := func() (int, uint64) {
		var ms runtime.MemStats
		for range 3 {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapInuse
	}
	round := func() {
		var conns []net.Conn
		for range 1000 {
			c, err := net.Dial("tcp", entry)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
			c.Write([]byte("x"))
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
		waitFor(t, func() bool { return srv.Stats().ConnectionsActive == 0 }, "all connections to end")
	}
	round() // warm up pools and maps
	time.Sleep(time.Second)
	g0, h0 := measure()
	for range 2 {
		round()
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		g, h := measure()
		if (g <= g0+2 && h <= h0+2<<20) || time.Now().After(deadline) {
			if g > g0+2 || h > h0+2<<20 {
				t.Fatalf("after 2,000 more connections: %d goroutines (was %d), heap %d KiB (was %d KiB)", g, g0, h>>10, h0>>10)
			}
			t.Logf("goroutines %d -> %d, heap %d -> %d KiB", g0, g, h0>>10, h>>10)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Byte counters move with the data, not when a connection ends.
func TestBytesCountedWhileConnectionIsOpen(t *testing.T) {
	cr := credentials(t)[0]
	entry, srv := setup(t, false, cr)
	c, err := net.Dial("tcp", entry)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 256 << 10
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go c.Write(make([]byte, n))
	if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { st := srv.Stats(); return st.BytesRecv == n && st.BytesSent == n }, "the counters to show the open connection's bytes")
	if st := srv.Stats(); st.ConnectionsActive != 1 {
		t.Fatalf("ConnectionsActive = %d, want the still open connection", st.ConnectionsActive)
	}
}
