//go:build linux

package integration

import (
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// connectionsPerSession is how many tunneled connections each of the
// server's sessions carries now, one entry per session.
func connectionsPerSession(srv *testutil.Server) []int64 {
	var out []int64
	for _, s := range srv.Sessions() {
		out = append(out, s.Connections)
	}
	return out
}

// holdOpen opens a tunneled connection through entry, checks that one
// byte comes back through it, and leaves it open until the test ends.
func holdOpen(t *testing.T, entry string) {
	t.Helper()
	c, err := net.Dial("tcp", entry)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("held connection: %v", err)
	}
}

// A local forward with Sessions: 3 keeps three sessions, puts each new
// connection on the one carrying the fewest, moves every byte intact, and
// comes back whole after the server restarts.
func TestLocalForwardOverSeveralSessions(t *testing.T) { testSeveralSessions(t, false) }

// A remote forward with Sessions: 3 shares its port among three sessions,
// on which the server places each connection it accepts; the rest is as
// for a local forward.
func TestRemoteForwardOverSeveralSessions(t *testing.T) { testSeveralSessions(t, true) }

func testSeveralSessions(t *testing.T, remote bool) {
	const sessions = 3
	cr := credentials(t)[1] // X25519: sessions count per key
	srv := newRestartable(t, cr)
	echo := testutil.EchoServer(t)
	f := client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)}
	var entry string
	if remote {
		port := testutil.Itoa(testutil.FreePort(t))
		f = client.Forward{Remote: true, Source: mustAddr(t, port), Dest: mustAddr(t, echo)}
		entry = "127.0.0.1:" + port
	}
	var ready atomic.Int32
	c := testutil.StartClient(t, client.Config{
		Server: srv.addr, Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward:   f,
		Reconnect: true, ReconnectDelay: 100 * time.Millisecond,
		Sessions: sessions,
		OnReady:  func(client.Ready) { ready.Add(1) },
	})
	if !remote {
		entry = c.Ready.LocalListen.String()
	}
	waitFor(t, func() bool { return len(srv.srv.Sessions()) == sessions && ready.Load() == sessions }, "three sessions")

	// One connection each, not three on the first.
	for range sessions {
		holdOpen(t, entry)
	}
	waitFor(t, func() bool {
		per := connectionsPerSession(srv.srv)
		return len(per) == sessions && per[0] == 1 && per[1] == 1 && per[2] == 1
	}, "one held connection on each session")
	t.Logf("held connections per session: %v", connectionsPerSession(srv.srv))

	// A burst of connections, each echoed and checked (sha256).
	burst := func() {
		t.Helper()
		var g errgroup.Group
		for i := range 24 {
			g.Go(func() error {
				if err := testutil.EchoCheck(entry, 1<<20, uint64(i)); err != nil {
					return fmt.Errorf("connection %d: %w", i, err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	burst()
	var total int64
	for _, s := range srv.srv.Sessions() {
		total += int64(s.BytesReceived)
		if s.BytesReceived < 2<<20 {
			t.Errorf("a session received %d bytes of the burst's 24 MiB; want the burst spread over all three", s.BytesReceived)
		}
	}
	if want := int64(24<<20 + sessions); total != want {
		t.Errorf("sessions received %d bytes in all, want %d", total, want)
	}

	// The server restarts: every session reconnects, and the forward
	// works again on all three.
	srv.stop()
	srv.start()
	waitFor(t, func() bool { return len(srv.srv.Sessions()) == sessions }, "three sessions after the restart")
	burst()
	if got := ready.Load(); got != 2*sessions {
		t.Errorf("sessions established %d times, want %d", got, 2*sessions)
	}
	select {
	case <-c.Done():
		t.Fatalf("client ended: %v", c.Err())
	default:
	}
	if !remote {
		return
	}
	// The client ends: its last session to leave closes the shared port.
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		ln, err := net.Listen("tcp", entry)
		if err == nil {
			ln.Close()
		}
		return err == nil
	}, "the shared port to close after the client ended")
}

// A session the server refuses (its per-key limit) does not take the
// forward down: the others carry every connection, and the refused one
// keeps trying.
func TestLocalForwardSessionsBeyondTheServersLimit(t *testing.T) {
	cr := credentials(t)[1]
	srv := testutil.StartServer(t, server.Config{Auth: cr.server, MaxSessionsPerKey: 2})
	echo := testutil.EchoServer(t)
	c := testutil.StartClient(t, client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward:   client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
		Reconnect: true, ReconnectDelay: 50 * time.Millisecond,
		Sessions: 3,
	})
	// Two sessions, and the third authenticated and refused twice.
	waitFor(t, func() bool { return srv.Stats().AuthSuccess >= 4 }, "the third session to be refused twice")
	if n := len(srv.Sessions()); n != 2 {
		t.Errorf("server has %d sessions, want its limit of 2", n)
	}
	for i := range 8 {
		if err := testutil.EchoCheck(c.Ready.LocalListen.String(), 256<<10, uint64(i)); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	select {
	case <-c.Done():
		t.Fatalf("client ended: %v", c.Err())
	default:
	}
}
