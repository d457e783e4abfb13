package tunnel

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// Only the refusals that mean "this datagram was lost" are hidden from
// quic-go: a datagram too large for UDP (EMSGSIZE, which quic-go's path MTU
// discovery relies on) still fails, on both write paths, and is not
// counted as refused.
func TestLossyConnPassesOtherErrors(t *testing.T) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	refused := 0
	c := LossyConn{UDPConn: udp, Refused: func(error) { refused++ }}
	dst := udp.LocalAddr().(*net.UDPAddr)
	tooBig := make([]byte, 70000)
	if _, err := c.WriteTo(tooBig, dst); !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("WriteTo of 70,000 bytes: %v, want EMSGSIZE", err)
	}
	if _, _, err := c.WriteMsgUDP(tooBig, nil, dst); !errors.Is(err, syscall.EMSGSIZE) {
		t.Errorf("WriteMsgUDP of 70,000 bytes: %v, want EMSGSIZE", err)
	}
	if refused != 0 {
		t.Errorf("%d sends counted as refused, want 0", refused)
	}
	// An ordinary datagram goes out and arrives.
	if _, _, err := c.WriteMsgUDP([]byte("ok"), nil, dst); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := udp.Read(buf)
	if err != nil || string(buf[:n]) != "ok" {
		t.Fatalf("read %q, %v; want \"ok\"", buf[:n], err)
	}
}

// Sending a packet allocates nothing (net.UDPConn's WriteMsgUDP allocates
// the socket address on every call; LossyConn sends without it).
func TestLossyConnSendsWithoutAllocating(t *testing.T) {
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	c := LossyConn{UDPConn: udp}
	dst := udp.LocalAddr().(*net.UDPAddr)
	msg, buf := []byte("ping"), make([]byte, 8)
	udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := c.WriteMsgUDP(msg, nil, dst); err != nil {
			t.Fatal(err)
		}
		if n, err := udp.Read(buf); err != nil || string(buf[:n]) != "ping" {
			t.Fatalf("read %q, %v; want %q", buf[:n], err, msg)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per packet sent, want 0", allocs)
	}
}
