//go:build linux

package integration

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// udpEcho echoes every datagram to its sender and records the source
// addresses it has seen.
type udpEcho struct {
	pc      net.PacketConn
	mu      sync.Mutex
	sources map[string]int
}

func startUDPEcho(t *testing.T) *udpEcho {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc.(*net.UDPConn).SetReadBuffer(4 << 20)
	e := &udpEcho{pc: pc, sources: map[string]int{}}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			e.mu.Lock()
			e.sources[from.String()]++
			e.mu.Unlock()
			pc.WriteTo(buf[:n], from)
		}
	}()
	return e
}

func (e *udpEcho) addr() string { return e.pc.LocalAddr().String() }

func (e *udpEcho) sourceCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sources)
}

// exchange sends one datagram of size n (tagged with source and sequence
// numbers) and waits for the identical reply, resending on loss.
func exchange(c *net.UDPConn, src, seq, n int) error {
	msg := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(src), byte(seq), byte(seq >> 8)})
	rng.Read(msg)
	if n >= 8 {
		binary.BigEndian.PutUint32(msg, uint32(src))
		binary.BigEndian.PutUint32(msg[4:], uint32(seq))
	}
	buf := make([]byte, 65535)
	for try := 0; try < 10; try++ {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			m, err := c.Read(buf)
			if err != nil {
				break // timeout: resend
			}
			if bytes.Equal(buf[:m], msg) {
				return nil
			}
			if m == n && n >= 8 && binary.BigEndian.Uint32(buf) == uint32(src) && binary.BigEndian.Uint32(buf[4:]) < uint32(seq) {
				continue // a late duplicate of an earlier exchange
			}
			return fmt.Errorf("source %d, datagram %d (%d bytes): reply of %d bytes does not match", src, seq, n, m)
		}
	}
	return fmt.Errorf("source %d, datagram %d (%d bytes): no reply after 10 tries", src, seq, n)
}

// udpEchoThrough starts a UDP echo, a server and a client whose UDP
// forward, remote or local, leads to it, and returns the echo and the
// forward's entrance.
func udpEchoThrough(t *testing.T, cr creds, remote bool) (*udpEcho, *net.UDPAddr) {
	echo := startUDPEcho(t)
	srv := testutil.StartServer(t, server.Config{Auth: cr.server})
	cfg := client.Config{Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t)}
	if remote {
		cfg.Forward = client.Forward{Remote: true, Source: mustAddr(t, "0/udp"), Dest: mustAddr(t, echo.addr()+"/udp")}
	} else {
		cfg.Forward = client.Forward{Source: mustAddr(t, "127.0.0.1:0/udp"), Dest: mustAddr(t, echo.addr()+"/udp")}
	}
	entry := entryOf(t, testutil.StartClient(t, cfg), remote)
	raddr, err := net.ResolveUDPAddr("udp", entry)
	if err != nil {
		t.Fatal(err)
	}
	return echo, raddr
}

// 50 concurrent sources through one session, datagram sizes from 1 to
// 65,507 bytes, every reply matched to its request, in both directions.
func TestUDPForwarding(t *testing.T) {
	cr := credentials(t)[0]
	sizes := []int{1, 7, 8, 512, 1200, 1472, 9000, 32768, 65507}
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			echo, raddr := udpEchoThrough(t, cr, m.remote)
			var g errgroup.Group
			for src := range 50 {
				g.Go(func() error {
					conn, err := net.DialUDP("udp", nil, raddr)
					if err != nil {
						return err
					}
					defer conn.Close()
					for seq, n := range sizes {
						if err := exchange(conn, src, seq, n); err != nil {
							return err
						}
					}
					return nil
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			if got := echo.sourceCount(); got != 50 {
				t.Errorf("destination saw %d sources, want one per client source (50)", got)
			}
		})
	}
}

// A flow ends after the idle timeout: its stream and its socket on the
// dialing side are freed, and the next datagram from the same source
// starts a new flow (a new socket, so a new source port at the destination).
func TestUDPIdleExpiry(t *testing.T) {
	cr := credentials(t)[0]
	echo := startUDPEcho(t)
	srv := testutil.StartServer(t, server.Config{Auth: cr.server, UDPIdleTimeout: 300 * time.Millisecond})
	c := testutil.StartClient(t, client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward:        client.Forward{Source: mustAddr(t, "127.0.0.1:0/udp"), Dest: mustAddr(t, echo.addr()+"/udp")},
		UDPIdleTimeout: 300 * time.Millisecond,
	})
	raddr, _ := net.ResolveUDPAddr("udp", c.Ready.LocalListen.String())
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := exchange(conn, 1, 0, 100); err != nil {
		t.Fatal(err)
	}
	if got := srv.Stats().UDPFlowsActive; got != 1 {
		t.Fatalf("server has %d UDP flows, want 1", got)
	}
	// The reply is counted once its write into the tunnel returns, which
	// can be after the client has it.
	waitFor(t, func() bool { st := srv.Stats(); return st.BytesRecv >= 100 && st.BytesSent >= 100 }, "the UDP payload to be counted both ways")
	waitFor(t, func() bool { return srv.Stats().UDPFlowsActive == 0 }, "the idle flow to be freed on the server")
	if err := exchange(conn, 1, 1, 100); err != nil {
		t.Fatal(err)
	}
	if got := echo.sourceCount(); got != 2 {
		t.Errorf("destination saw %d source sockets, want 2 (the first was closed on expiry)", got)
	}
}

// The flow cap refuses new sources (logged, not fatal) and keeps serving
// the existing ones.
func TestUDPFlowLimit(t *testing.T) {
	cr := credentials(t)[0]
	echo := startUDPEcho(t)
	srv := testutil.StartServer(t, server.Config{Auth: cr.server})
	c := testutil.StartClient(t, client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward:     client.Forward{Source: mustAddr(t, "127.0.0.1:0/udp"), Dest: mustAddr(t, echo.addr()+"/udp")},
		UDPMaxFlows: 2,
	})
	raddr, _ := net.ResolveUDPAddr("udp", c.Ready.LocalListen.String())
	var conns []*net.UDPConn
	for range 3 {
		conn, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	for i := range 2 {
		if err := exchange(conns[i], i, 0, 64); err != nil {
			t.Fatal(err)
		}
	}
	conns[2].Write([]byte("third source"))
	conns[2].SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := conns[2].Read(make([]byte, 100)); err == nil {
		t.Fatal("a third source got through a cap of 2 flows")
	}
	if err := exchange(conns[0], 0, 1, 64); err != nil {
		t.Fatalf("existing flow after the cap refused a source: %v", err)
	}
}

// burstDatagram is datagram seq of a burst: n bytes (n >= 4), its sequence
// number first, the rest drawn from it.
func burstDatagram(seq, n int) []byte {
	msg := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seq), byte(seq >> 8), 0xb}).Read(msg)
	binary.BigEndian.PutUint32(msg, uint32(seq))
	return msg
}

// Bursts of datagrams, dozens in flight at once so that both sides read
// and write them in batches, and runs of equal-sized ones sent with
// segmentation offload so that the entrance reads them coalesced, come
// back through an echo intact: every one of 4,000 (sizes from 4 to 65,507
// bytes, mostly 1,200), in both modes. UDP may lose some; those are sent
// again, and each must arrive in the end.
func TestUDPBurstsArriveIntact(t *testing.T) {
	cr := credentials(t)[0]
	const total, window = 4000, 64
	size := func(seq int) int {
		switch {
		case seq%500 == 499:
			return 65507
		case seq%50 == 7:
			return 4
		case seq%10 == 3:
			return 1472
		}
		return 1200
	}
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			_, raddr := udpEchoThrough(t, cr, m.remote)
			conn, err := net.DialUDP("udp", nil, raddr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetReadBuffer(4 << 20)

			var mu sync.Mutex
			got := make([]bool, total)
			arrived := 0
			more := make(chan struct{}, 1) // a reply came: the window moved
			readErr := make(chan error, 1)
			go func() {
				buf := make([]byte, 65535)
				for {
					n, err := conn.Read(buf)
					if err != nil {
						readErr <- nil
						return
					}
					if n < 4 {
						readErr <- fmt.Errorf("a reply of %d bytes", n)
						return
					}
					seq := int(binary.BigEndian.Uint32(buf))
					if seq >= total || !bytes.Equal(buf[:n], burstDatagram(seq, size(seq))) {
						readErr <- fmt.Errorf("reply to datagram %d (%d bytes) does not match what was sent", seq, n)
						return
					}
					mu.Lock()
					if !got[seq] {
						got[seq] = true
						arrived++
					}
					mu.Unlock()
					select {
					case more <- struct{}{}:
					default:
					}
				}
			}()
			outstanding := func(sent int) int {
				mu.Lock()
				defer mu.Unlock()
				return sent - arrived
			}
			send := func(seq int) {
				if _, err := conn.Write(burstDatagram(seq, size(seq))); err != nil {
					t.Fatal(err)
				}
			}
			// Equal-sized neighbours go out as one segmentation-offload
			// run, so the entrance reads them coalesced (receive offload).
			inRuns := 0
			for seq := 0; seq < total; {
				for outstanding(seq) >= window {
					select {
					case <-more:
						continue
					case err := <-readErr:
						t.Fatal(err)
					case <-time.After(500 * time.Millisecond): // lost ones hold the window: go on
					}
					break
				}
				k := 1
				for k < 8 && seq+k < total && size(seq+k) == size(seq) && outstanding(seq)+k < window {
					k++
				}
				if k == 1 {
					send(seq)
				} else {
					var run []byte
					for i := range k {
						run = append(run, burstDatagram(seq+i, size(seq))...)
					}
					if err := sendSegmented(conn, run, size(seq)); err != nil {
						t.Fatal(err)
					}
					inRuns += k
				}
				seq += k
			}
			resent := 0
			for round := 0; ; round++ {
				deadline := time.Now().Add(time.Second)
				for outstanding(total) > 0 && time.Now().Before(deadline) {
					select {
					case <-more:
					case <-time.After(50 * time.Millisecond):
					case err := <-readErr:
						t.Fatal(err)
					}
				}
				mu.Lock()
				var missing []int
				for seq, ok := range got {
					if !ok {
						missing = append(missing, seq)
					}
				}
				mu.Unlock()
				if len(missing) == 0 {
					break
				}
				if round == 10 {
					t.Fatalf("%d of %d datagrams never came back after 10 rounds of resending", len(missing), total)
				}
				for _, seq := range missing {
					send(seq)
				}
				resent += len(missing)
			}
			select {
			case err := <-readErr:
				if err != nil {
					t.Fatal(err)
				}
			default:
			}
			t.Logf("%d datagrams (%d of them sent in runs) came back intact; %d were sent again", total, inRuns, resent)
		})
	}
}

// sendSegmented sends run as datagrams of seg bytes in one system call
// (UDP_SEGMENT), as QUIC stacks and quicport itself send.
func sendSegmented(c *net.UDPConn, run []byte, seg int) error {
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(seg))
	_, _, err := c.WriteMsgUDP(run, oob, nil)
	return err
}
