package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/proto"
)

// startUDPListener runs a UDPListener on a loopback socket. Its one flow
// gets one end of a real QUIC stream; the other end is returned, for the
// test to read or not. It returns the socket's address and the drop counter.
func startUDPListener(t *testing.T, maxFlows int) (*net.UDPAddr, *atomic.Uint64, *quic.Stream) {
	t.Helper()
	return startUDPListenerOn(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, maxFlows)
}

// startUDPListenerOn is startUDPListener on the address at.
func startUDPListenerOn(t *testing.T, at *net.UDPAddr, maxFlows int) (*net.UDPAddr, *atomic.Uint64, *quic.Stream) {
	t.Helper()
	pc, err := net.ListenUDP("udp", at)
	if err != nil {
		t.Fatal(err)
	}
	st, peer := quicPair(t)
	var opened atomic.Bool
	var dropped atomic.Uint64
	u := &UDPListener{
		Conn: pc,
		Open: func(context.Context) (Stream, uint32, error) {
			if !opened.CompareAndSwap(false, true) {
				return nil, 0, errors.New("this test has one stream")
			}
			return st, 1, nil
		},
		MaxFlows: maxFlows,
		Dropped:  &dropped,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		pc.Close()
	})
	return pc.LocalAddr().(*net.UDPAddr), &dropped, peer
}

// udpPair returns a UDP socket on loopback and one connected to it, both
// closed when the test ends.
func udpPair(tb testing.TB) (listener, dialer *net.UDPConn) {
	tb.Helper()
	l, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	d, err := net.DialUDP("udp", nil, l.LocalAddr().(*net.UDPAddr))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return l, d
}

func sendDatagrams(t *testing.T, to *net.UDPAddr, n, size int) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for range n {
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func waitCount(t *testing.T, c *atomic.Uint64, what string, ok func(uint64) bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(c.Load()); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: dropped = %d", what, c.Load())
		}
	}
}

// Datagrams from a source beyond the flow limit are dropped and counted,
// each one.
func TestUDPListenerCountsFlowLimitDrops(t *testing.T) {
	addr, dropped, _ := startUDPListener(t, 1)
	sendDatagrams(t, addr, 1, 100) // the one flow there is room for
	time.Sleep(100 * time.Millisecond)
	if d := dropped.Load(); d != 0 {
		t.Fatalf("dropped %d datagrams of the first flow", d)
	}
	sendDatagrams(t, addr, 5, 100)
	waitCount(t, dropped, "5 datagrams of a second source", func(d uint64) bool { return d == 5 })
	time.Sleep(100 * time.Millisecond)
	if d := dropped.Load(); d != 5 {
		t.Fatalf("dropped = %d, want 5", d)
	}
}

// A flow whose stream cannot take more (its peer does not read, so flow
// control holds it) drops further datagrams instead of queueing them
// without bound, and counts them. And the listener still stops when told
// (the cleanup), though that flow is stuck in a stream write: a hand-over
// of the port must not wait for a peer that does not read.
func TestUDPListenerCountsBackedUpDrops(t *testing.T) {
	addr, dropped, peer := startUDPListener(t, 0)
	c := sendDatagrams(t, addr, 1, 1200)
	// The first datagram crosses the stream: the flow is open. From now on
	// nobody reads; the stream's window (512 KiB) and the flow's queue
	// (256) take the next ~700, so send until drops show.
	if n, err := proto.ReadDatagram(peer, make([]byte, proto.MaxDatagram)); err != nil || n != 1200 {
		t.Fatalf("first datagram: %d bytes, %v", n, err)
	}
	if d := dropped.Load(); d != 0 {
		t.Fatalf("dropped %d datagrams before the stream backed up", d)
	}
	for deadline := time.Now().Add(10 * time.Second); dropped.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("no datagram was counted as dropped")
		}
		for range 100 {
			if _, err := c.Write(make([]byte, 1200)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}
}

// runSizes is a sequence of datagram sizes with runs of equal sizes (sent
// segmented when they arrive together) and the sizes around them, from
// empty to the largest.
func runSizes() []int {
	var sizes []int
	for _, run := range []struct{ size, count int }{{1200, 40}, {0, 1}, {1200, 3}, {7, 1}, {1400, 20}, {65507, 1}, {1200, 1}, {500, 70}} {
		for range run.count {
			sizes = append(sizes, run.size)
		}
	}
	return sizes
}

// sendRuns frames the datagrams of runSizes onto w at once, so runs form,
// and checks that r receives every one intact and in order.
func sendRuns(t *testing.T, w io.Writer, r *net.UDPConn) {
	t.Helper()
	sizes := runSizes()
	var frames []byte
	for i, n := range sizes {
		frames, _ = proto.AppendDatagram(frames, datagram(i, n))
	}
	if _, err := w.Write(frames); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	r.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, n := range sizes {
		m, err := r.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(sizes), err)
		}
		if !bytes.Equal(buf[:m], datagram(i, n)) {
			t.Fatalf("datagram %d: %d bytes, want its %d bytes", i, m, n)
		}
	}
}

// datagram returns datagram i of n bytes, its bytes telling it apart.
func datagram(i, n int) []byte {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte(i*7 + j)
	}
	return b
}

// RelayUDP delivers every datagram of its stream to the destination.
func TestRelayUDPDeliversRuns(t *testing.T) {
	dst, conn := udpPair(t)
	growReceiveBuffer(dst, udpReceiveBuffer)
	writer, relayed := quicPair(t)
	relayDone := make(chan error, 1)
	go func() { relayDone <- RelayUDP(conn, relayed, time.Minute, Counters{}) }()
	sendRuns(t, writer, dst)
	writer.Close()
	if err := <-relayDone; err != nil {
		t.Fatal(err)
	}
}

// A UDPListener delivers every reply on a flow's stream to that flow's
// source, also from a socket on all addresses (IPv4 sources then appear
// IPv4-mapped), as remote forwards listen.
func TestUDPListenerDeliversRuns(t *testing.T) {
	for _, at := range []*net.UDPAddr{{IP: net.IPv4(127, 0, 0, 1)}, {}} {
		t.Run(at.String(), func(t *testing.T) {
			addr, _, peer := startUDPListenerOn(t, at, 0)
			src := sendDatagrams(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: addr.Port}, 1, 10) // opens the flow
			growReceiveBuffer(src, udpReceiveBuffer)
			if n, err := proto.ReadDatagram(peer, make([]byte, proto.MaxDatagram)); err != nil || n != 10 {
				t.Fatalf("first datagram: %d bytes, %v", n, err)
			}
			sendRuns(t, peer, src)
		})
	}
}
