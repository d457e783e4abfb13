//go:build linux

package integration

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// closedUDPPort returns an address on network's loopback where no UDP
// socket listens: the host answers it with ICMP port unreachable.
func closedUDPPort(t *testing.T, network, addr string) string {
	t.Helper()
	pc, err := net.ListenPacket(network, addr)
	if err != nil {
		t.Skipf("no %s loopback here: %v", network, err)
	}
	a := pc.LocalAddr().String()
	pc.Close()
	return a
}

// A client learns from the host's ICMP answer that nothing listens on the
// server's port, at once, instead of after its handshake timeout; a server
// that is silent (a firewall that drops) still takes the timeout.
func TestClientSaysWhyServerIsUnreachable(t *testing.T) {
	cr := credentials(t)[0]
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for _, tc := range []struct {
		name, server string
		timeout      time.Duration
		want         string
	}{
		// A timeout far beyond the test's patience: only the ICMP
		// answer can end these attempts in time to pass.
		{"closed port", closedUDPPort(t, "udp4", "127.0.0.1:0"), 10 * time.Minute, "nothing listens on that UDP port"},
		{"closed port, IPv6", closedUDPPort(t, "udp6", "[::1]:0"), 10 * time.Minute, "nothing listens on that UDP port"},
		{"silent", silent.LocalAddr().String(), 300 * time.Millisecond, "no QUIC handshake within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := client.Config{
				Server: tc.server, Auth: cr.client, TOFU: testutil.KnownHosts(t), Timeout: tc.timeout,
				Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, "22")},
			}
			_, err := testutil.TryClient(t, cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "cannot reach server "+tc.server) {
				t.Fatalf("error = %v, want one that says %q", err, tc.want)
			}
		})
	}
}

// Once a session is up, an ICMP error for the client's socket must not end
// it: a stray one, or one answering a path-MTU probe, says nothing about
// the server. The kernel reports ICMP errors to the client only while it
// dials; the test forges a port unreachable for the client's established
// socket and checks that the session carries on.
func TestEstablishedSessionIgnoresICMPErrors(t *testing.T) {
	needRoot(t, "raw ICMP sockets")
	cr := credentials(t)[0]
	srv := testutil.StartServer(t, server.Config{Auth: cr.server})
	echo := testutil.EchoServer(t)
	var ready atomic.Int32
	cfg := client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
		OnReady: func(client.Ready) { ready.Add(1) },
	}
	c := testutil.StartClient(t, cfg)
	entry := c.Ready.LocalListen.String()
	if err := testutil.EchoCheck(entry, 1<<20, 1); err != nil {
		t.Fatal(err)
	}
	sessions := srv.Sessions()
	if len(sessions) != 1 {
		t.Fatalf("%d sessions, want 1", len(sessions))
	}
	clientAddr := netip.MustParseAddrPort(sessions[0].Peer)
	serverAddr := netip.MustParseAddrPort(srv.AddrString())

	// The forgery works: a socket that asks for ICMP errors gets it.
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	raw, _ := probe.SyscallConn()
	raw.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1) })
	forgePortUnreachable(t, probe.LocalAddr().(*net.UDPAddr).AddrPort(), serverAddr)
	probe.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := probe.ReadFromUDP(make([]byte, 1)); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("a socket with IP_RECVERR read %v after the forged ICMP, want ECONNREFUSED", err)
	}

	// The client's established session does not care.
	for range 3 {
		forgePortUnreachable(t, clientAddr, serverAddr)
	}
	time.Sleep(200 * time.Millisecond)
	if err := testutil.EchoCheck(entry, 1<<20, 2); err != nil {
		t.Fatalf("after a forged ICMP error: %v", err)
	}
	if n := ready.Load(); n != 1 {
		t.Errorf("the forward was set up %d times, want once (the session must not have ended)", n)
	}
	select {
	case <-c.Done():
		t.Errorf("client ended: %v", c.Err())
	default:
	}
}

// forgePortUnreachable sends an ICMP port unreachable to from, as a host
// would that got a UDP datagram from from to to where nothing listens.
func forgePortUnreachable(t *testing.T, from, to netip.AddrPort) {
	t.Helper()
	// The datagram that "bounced": its IPv4 header and UDP header.
	inner := make([]byte, 28)
	inner[0] = 0x45 // IPv4, 20-byte header
	binary.BigEndian.PutUint16(inner[2:], 28+100)
	inner[8] = 64 // TTL
	inner[9] = syscall.IPPROTO_UDP
	copy(inner[12:16], from.Addr().AsSlice())
	copy(inner[16:20], to.Addr().AsSlice())
	binary.BigEndian.PutUint16(inner[10:], checksum(inner[:20]))
	binary.BigEndian.PutUint16(inner[20:], from.Port())
	binary.BigEndian.PutUint16(inner[22:], to.Port())
	binary.BigEndian.PutUint16(inner[24:], 8+100)
	msg := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, inner...) // type 3 code 3: port unreachable
	binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	conn, err := net.ListenPacket("ip4:icmp", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.WriteTo(msg, &net.IPAddr{IP: from.Addr().AsSlice()}); err != nil {
		t.Fatal(err)
	}
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
