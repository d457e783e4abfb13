//go:build linux

package integration

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/steer"
	"github.com/quicport/quicport/internal/testutil"
)

// steering loads the BPF steering program; CI runs as root, where it must
// load, elsewhere the test is skipped.
func steering(t *testing.T) *steer.Steering {
	t.Helper()
	s, err := steer.New(steer.NewSalt())
	if err != nil {
		if errors.Is(err, steer.ErrUnsupported) && os.Getenv("CI") == "" {
			t.Skipf("needs BPF (run as root): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// prober connects to addr every 10 ms and checks the echo of one byte,
// counting failures, until stop is called, which returns the counts.
func prober(addr string) (stop func() (ok, failed int)) {
	var okN, failN atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					failN.Add(1)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				b := []byte{'p'}
				if _, err := c.Write(b); err != nil {
					failN.Add(1)
					return
				}
				if _, err := io.ReadFull(c, b); err != nil {
					failN.Add(1)
					return
				}
				okN.Add(1)
			}()
		}
	}()
	return func() (int, int) {
		close(done)
		wg.Wait()
		return int(okN.Load()), int(failN.Load())
	}
}

// A draining server hands its clients to a new server on the same UDP port
// without losing a byte: transfers under way complete, idle connections stay
// usable, the remote port never refuses a connection, and the old server
// returns from Serve once its last connection has ended. This is the
// mechanism of a graceful restart, in one process; the restart test drives
// it through quicport server and quicport ctl.
func TestDrainMovesClientsWithoutLoss(t *testing.T) {
	st := steering(t)
	cr := credentials(t)[0]
	cert := testutil.Identity(t)
	// plane starts data plane id on addr's port.
	plane := func(id uint8, addr string, takeOver func(uint16, proto.Protocol, string) (*os.File, error)) *testutil.Server {
		pc, err := st.Listen(addr, id)
		if err != nil {
			t.Fatal(err)
		}
		return testutil.StartServer(t, server.Config{Auth: cr.server, Certificate: cert, PacketConn: pc,
			ConnectionIDs: steer.CIDGenerator{ID: id, Salt: st.Salt()}, TakeOver: takeOver})
	}
	if err := st.SetCurrent(1); err != nil {
		t.Fatal(err)
	}
	old := plane(1, "127.0.0.1:0", nil)
	addr := old.AddrString()

	echo := testutil.EchoServer(t)
	var rpfReady, lpfReady, lpf2Ready, rpf2Ready atomic.Int32
	port, port2 := testutil.FreePort(t), testutil.FreePort(t)
	rpf := testutil.StartClient(t, client.Config{
		Server: addr, Auth: cr.client, TOFU: testutil.KnownHosts(t), Reconnect: true,
		Forward: client.Forward{Remote: true, Source: mustAddr(t, testutil.Itoa(port)), Dest: mustAddr(t, echo)},
		OnReady: func(client.Ready) { rpfReady.Add(1) },
	})
	lpf := testutil.StartClient(t, client.Config{
		Server: addr, Auth: cr.client, TOFU: testutil.KnownHosts(t), Reconnect: true,
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
		OnReady: func(client.Ready) { lpfReady.Add(1) },
	})
	// A local forward over two sessions: each moves on its own.
	lpf2 := testutil.StartClient(t, client.Config{
		Server: addr, Auth: cr.client, TOFU: testutil.KnownHosts(t), Reconnect: true, Sessions: 2,
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
		OnReady: func(client.Ready) { lpf2Ready.Add(1) },
	})
	// A remote forward whose two sessions share the port: the new data
	// plane takes the port over for the first to move, the second joins.
	rpf2 := testutil.StartClient(t, client.Config{
		Server: addr, Auth: cr.client, TOFU: testutil.KnownHosts(t), Reconnect: true, Sessions: 2,
		Forward: client.Forward{Remote: true, Source: mustAddr(t, testutil.Itoa(port2)), Dest: mustAddr(t, echo)},
		OnReady: func(client.Ready) { rpf2Ready.Add(1) },
	})
	rpfEntry, lpfEntry, lpf2Entry, rpf2Entry := entryOf(t, rpf, true), entryOf(t, lpf, false), entryOf(t, lpf2, false), entryOf(t, rpf2, true)
	waitFor(t, func() bool { return lpf2Ready.Load() == 2 && rpf2Ready.Load() == 2 }, "both sessions of the two-session forwards")

	idle := idleConns(t, 24, lpfEntry, rpfEntry, lpf2Entry, rpf2Entry)
	stopProbe, stopProbe2 := prober(rpfEntry), prober(rpf2Entry)
	entries := []string{lpfEntry, rpfEntry, lpf2Entry, rpf2Entry}
	transfers := make(chan error, len(entries))
	for i, entry := range entries {
		go func() { transfers <- testutil.EchoCheck(entry, 64<<20, uint64(i)) }()
	}
	time.Sleep(300 * time.Millisecond) // the transfers are under way

	// The restart: a new server on the same port, new connections to it,
	// the old one drains and hands over.
	plane(2, addr, old.HandOver)
	if err := st.SetCurrent(2); err != nil {
		t.Fatal(err)
	}
	old.Drain()

	for range entries {
		if err := <-transfers; err != nil {
			t.Fatalf("transfer across the restart: %v", err)
		}
	}
	waitFor(t, func() bool {
		return rpfReady.Load() == 2 && lpfReady.Load() == 2 && lpf2Ready.Load() == 4 && rpf2Ready.Load() == 4
	}, "every client to set its forwards up on the new server")
	for _, c := range idle {
		echoOnce(t, c, "after")
	}
	time.Sleep(200 * time.Millisecond) // probes after the hand-over
	for i, stop := range []func() (int, int){stopProbe, stopProbe2} {
		ok, failed := stop()
		if failed > 0 {
			t.Fatalf("remote port %d failed %d of %d probes during the restart", i+1, failed, ok+failed)
		}
		t.Logf("%d probes of remote port %d, none failed", ok, i+1)
	}
	for _, c := range idle {
		c.Close()
	}
	select {
	case <-old.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("the drained server still serves %d sessions after its last connection ended", old.Stats().SessionsActive)
	}
	// New connections go through the new server.
	for _, entry := range entries {
		if err := testutil.EchoCheck(entry, 1<<20, 9); err != nil {
			t.Fatalf("after the restart: %v", err)
		}
	}
}

// idleConns opens n connections through the entries in turn, checks each
// echoes, and leaves them open (closed when the test ends): connections a
// restart must keep.
func idleConns(t *testing.T, n int, entries ...string) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for i := range n {
		c, err := net.Dial("tcp", entries[i%len(entries)])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		echoOnce(t, c, "before")
		conns = append(conns, c)
	}
	return conns
}

func echoOnce(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
		t.Fatalf("echo %q = %q, %v", msg, got, err)
	}
}

// A draining server refuses new QUIC connections at once, with a reason the
// client shows, while its established session goes on.
func TestDrainingServerRefusesNewConnections(t *testing.T) {
	cr := credentials(t)[0]
	srv := testutil.StartServer(t, server.Config{Auth: cr.server})
	echo := testutil.EchoServer(t)
	cfg := client.Config{Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)}}
	c := testutil.StartClient(t, cfg)
	srv.Drain()
	start := time.Now()
	_, err := testutil.TryClient(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "refused the connection: it is restarting") {
		t.Fatalf("new client of a draining server: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("refusal took %v; it should come with the first packet", d)
	}
	if err := testutil.EchoCheck(c.Ready.LocalListen.String(), 1<<20, 1); err != nil {
		t.Fatalf("the established session after the drain began: %v", err)
	}
}
