//go:build linux

package integration

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// resetAfter writes data to c, waits until its peer has acknowledged all
// of it, and then resets the connection (RST), as a TCP peer that aborts
// does. TCP delivers what was sent before a reset; so must the tunnel.
func resetAfter(t *testing.T, c *net.TCPConn, data []byte) {
	if _, err := c.Write(data); err != nil {
		t.Errorf("write before the reset: %v", err)
		return
	}
	raw, _ := c.SyscallConn()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var queued int
		raw.Control(func(fd uintptr) { queued, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
		if queued == 0 {
			break
		}
	}
	c.SetLinger(0)
	c.Close()
}

// readUntilError reads c to its end and returns what it read and how the
// connection ended. It starts late, so that the reset reaches the relay
// in front of it while the relay's last bytes still wait in its kernel's
// send queue, which a reset would discard.
func readUntilError(c net.Conn) ([]byte, error) {
	time.Sleep(200 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(time.Minute))
	var got bytes.Buffer
	_, err := io.Copy(&got, c)
	return got.Bytes(), err
}

// Bytes a TCP peer sent before it reset its connection reach the other
// end, and then the other end sees a reset, not a clean close: in both
// directions, through remote and local forwards.
func TestDataBeforeAResetArrives(t *testing.T) {
	cr := credentials(t)[0]
	data := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{1}).Read(data)
	want := sha256.Sum256(data)
	check := func(t *testing.T, who string, got []byte, err error) {
		t.Helper()
		if sha256.Sum256(got) != want {
			t.Errorf("%s read %d of the %d bytes sent before the reset (or other bytes)", who, len(got), len(data))
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s saw the connection end with %v, want a reset (ECONNRESET)", who, err)
		}
	}
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			// The destination: resets at once (after sending data) or
			// reads to the end and reports.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type result struct {
				got []byte
				err error
			}
			dest := make(chan result, 1)
			destResets := make(chan bool, 1)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					if <-destResets {
						resetAfter(t, c.(*net.TCPConn), data)
						continue
					}
					got, err := readUntilError(c)
					c.Close()
					dest <- result{got, err}
				}
			}()
			srv := testutil.StartServer(t, server.Config{Auth: cr.server})
			cfg := client.Config{Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t)}
			cfg.Forward = client.Forward{Remote: m.remote, Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, ln.Addr().String())}
			if m.remote {
				cfg.Forward.Source = mustAddr(t, "0")
			}
			entry := entryOf(t, testutil.StartClient(t, cfg), m.remote)

			for round := range 3 {
				// The destination sends, then resets.
				destResets <- true
				c, err := net.Dial("tcp", entry)
				if err != nil {
					t.Fatal(err)
				}
				got, err := readUntilError(c)
				c.Close()
				check(t, "the entrance", got, err)

				// The entrance sends, then resets.
				destResets <- false
				c, err = net.Dial("tcp", entry)
				if err != nil {
					t.Fatal(err)
				}
				resetAfter(t, c.(*net.TCPConn), data)
				select {
				case r := <-dest:
					check(t, "the destination", r.got, r.err)
				case <-time.After(time.Minute):
					t.Fatalf("round %d: the destination's connection did not end", round)
				}
				if t.Failed() {
					t.Fatalf("failed in round %d", round)
				}
			}
		})
	}
}
