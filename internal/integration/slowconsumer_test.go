//go:build linux

package integration

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tunnel"
)

// stalledConn is a tunneled connection to an echo server whose reader
// stopped: it writes and never reads the echo. The echo server then blocks
// writing, stops reading, and the stream fills its flow-control window on
// both ends of the tunnel.
type stalledConn struct {
	c       *net.TCPConn
	written atomic.Int64
	sent    hash.Hash // what was written, once the writer has stopped
	stopped chan error
}

func startStalled(t *testing.T, addr string, seed uint64) *stalledConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &stalledConn{c: c.(*net.TCPConn), sent: sha256.New(), stopped: make(chan error, 1)}
	go func() {
		src := rand.NewChaCha8([32]byte{byte(seed)})
		buf := make([]byte, 64<<10)
		for {
			src.Read(buf)
			n, err := s.c.Write(buf)
			s.sent.Write(buf[:n])
			s.written.Add(int64(n))
			if err != nil {
				s.stopped <- err
				return
			}
		}
	}()
	return s
}

// finish stops the writer, half-closes, reads the whole echo and checks it.
func (s *stalledConn) finish() error {
	s.c.SetWriteDeadline(time.Now())
	if err := <-s.stopped; !errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	s.c.SetWriteDeadline(time.Time{})
	if err := s.c.CloseWrite(); err != nil {
		return err
	}
	s.c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	got := sha256.New()
	n, err := io.Copy(got, s.c)
	if err != nil {
		return err
	}
	if n != s.written.Load() || string(got.Sum(nil)) != string(s.sent.Sum(nil)) {
		return errors.New("the echo differs from what was written (length or sha256)")
	}
	return nil
}

// Consumers that stop reading hold up only their own connections. With
// seven of them stalled on one tunnel, each holding its stream's window on
// both ends, another connection of the same tunnel still echoes 64 MiB
// intact; then the stalled ones read on and get all of theirs. If the
// session's connection-level window did not cover the stalled streams
// (quic-go's default does not), the other connection would wait for as
// long as they stay stalled: here, for ever. It holds at the default
// stream window and at the smallest --stream-window (64 KiB), where the
// seven fill seven eighths of the session's 512 KiB: upstream quic-go
// raises a connection's window only after a quarter of it has been read
// since the last raise, which the last eighth never makes, and it hung
// here until quicport's patch raised it whenever the peer runs short of
// credit (third_party/quic-go/QUICPORT.md).
func TestStalledConsumersSlowNobody(t *testing.T) {
	for _, window := range []int64{0, tunnel.MinStreamWindow} {
		t.Run(fmt.Sprintf("window=%d", window), func(t *testing.T) { stalledConsumers(t, window) })
	}
}

func stalledConsumers(t *testing.T, window int64) {
	psk := auth.PSK("stalled-consumers-test-psk")
	srv := testutil.StartServer(t, server.Config{Auth: auth.ServerConfig{PSK: psk}, StreamWindow: window})
	echo := testutil.EchoServer(t)
	c := testutil.StartClient(t, client.Config{
		Server: srv.AddrString(), Auth: auth.ClientConfig{PSK: psk}, TOFU: testutil.KnownHosts(t), StreamWindow: window,
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
	})
	entrance := c.Ready.LocalListen.String()

	const stalledConns = 7
	var stalled []*stalledConn
	for i := range stalledConns {
		stalled = append(stalled, startStalled(t, entrance, uint64(i+1)))
	}
	// Wait until none of them gets anything more in: every buffer on the
	// way is full.
	var last int64 = -1
	for deadline := time.Now().Add(time.Minute); ; {
		time.Sleep(500 * time.Millisecond)
		var total int64
		for _, s := range stalled {
			total += s.written.Load()
		}
		if total == last {
			t.Logf("%d stalled connections hold %d MiB written and not read back", stalledConns, total>>20)
			break
		}
		last = total
		if time.Now().After(deadline) {
			t.Fatal("the stalled connections still take data after a minute")
		}
	}

	done := make(chan error, 1)
	go func() { done <- testutil.EchoCheck(entrance, 64<<20, 99) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("echo beside %d stalled connections: %v", stalledConns, err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("echo of 64 MiB beside %d stalled connections did not finish in 2 minutes", stalledConns)
	}
	for i, s := range stalled {
		if err := s.finish(); err != nil {
			t.Errorf("stalled connection %d, once it reads again: %v", i, err)
		}
	}
}
