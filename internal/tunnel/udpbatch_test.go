package tunnel

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/proto"
)

// A datagramReader hands over every datagram whole and in order, from
// empty to the largest, with its source, also once it reads many at once.
func TestDatagramReaderReadsBatches(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	growReceiveBuffer(c, udpReceiveBuffer)
	src := sendDatagrams(t, c.LocalAddr().(*net.UDPAddr), 0, 0)
	sizes := runSizes()
	for i, n := range sizes { // all queued before the first read
		if _, err := src.Write(datagram(i, n)); err != nil {
			t.Fatal(err)
		}
	}
	r := newDatagramReader(c)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	most := 0
	for i := 0; i < len(sizes); {
		n, err := r.read()
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(sizes), err)
		}
		most = max(most, n)
		for j := range n {
			p, from := r.datagram(j)
			if !bytes.Equal(p, datagram(i, sizes[i])) {
				t.Fatalf("datagram %d: %d bytes, want its %d bytes", i, len(p), sizes[i])
			}
			if want := src.LocalAddr().(*net.UDPAddr).AddrPort(); from != want {
				t.Fatalf("datagram %d from %v, want %v", i, from, want)
			}
			i++
		}
		r.release()
	}
	if runtime.GOOS == "linux" && most != maxReadBatch {
		t.Errorf("at most %d datagrams in one read, want %d (recvmmsg, grown as datagrams waited)", most, maxReadBatch)
	}
}

// RelayUDP frames every datagram from the destination onto the stream,
// whole and in order, many to a write when they arrive together.
func TestRelayUDPFramesReplies(t *testing.T) {
	dst, conn := udpPair(t)
	growReceiveBuffer(conn, udpReceiveBuffer) // before RelayUDP does: the burst below comes first
	reader, relayed := quicPair(t)
	var toStream atomic.Uint64
	relayDone := make(chan error, 1)
	go func() {
		relayDone <- RelayUDP(conn, relayed, time.Minute, Counters{ToStream: []*atomic.Uint64{&toStream}})
	}()
	sizes := runSizes()
	want := 0
	for i, n := range sizes {
		if _, err := dst.WriteToUDPAddrPort(datagram(i, n), conn.LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
			t.Fatal(err)
		}
		want += n
	}
	readFlow(t, reader, 0, sizes, 0)
	if got := toStream.Load(); got != uint64(want) {
		t.Errorf("counted %d bytes to the stream, want %d", got, want)
	}
	reader.CancelRead(proto.StreamDone)
	reader.CancelWrite(proto.StreamDone)
	select {
	case <-relayDone:
	case <-time.After(10 * time.Second):
		t.Fatal("RelayUDP did not end with its stream")
	}
}

// readFlow reads the datagrams of sizes from the start-th on, tagged with
// flow k, from s and checks each one.
func readFlow(t *testing.T, s *quic.Stream, k int, sizes []int, start int) {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, proto.MaxDatagram)
	for i := start; i < len(sizes); i++ {
		n := sizes[i]
		m, err := proto.ReadDatagram(s, buf)
		if err != nil {
			t.Fatalf("flow %d, datagram %d of %d: %v", k, i, len(sizes), err)
		}
		if !bytes.Equal(buf[:m], datagram(k*1000+i, n)) {
			t.Fatalf("flow %d, datagram %d: %d bytes, want its %d bytes", k, i, m, n)
		}
	}
}

// Datagrams of several sources that arrive interleaved (so one read holds
// several flows' datagrams) each reach their own flow's stream, whole and
// in order, and none is dropped.
func TestUDPListenerSeparatesInterleavedFlows(t *testing.T) {
	const flows = 3
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	growReceiveBuffer(pc, udpReceiveBuffer)
	var mu sync.Mutex
	var peers []*quic.Stream
	var dropped atomic.Uint64
	u := &UDPListener{
		Conn: pc,
		Open: func(context.Context) (Stream, uint32, error) {
			mu.Lock()
			defer mu.Unlock()
			if len(peers) == flows {
				return nil, 0, errors.New("a flow too many")
			}
			st, peer := quicPair(t)
			peers = append(peers, peer)
			return st, uint32(len(peers)), nil
		},
		Dropped: &dropped,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- u.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var srcs []*net.UDPConn
	for range flows {
		srcs = append(srcs, sendDatagrams(t, pc.LocalAddr().(*net.UDPAddr), 0, 0))
	}
	sizes := runSizes()
	for i, n := range sizes {
		for k, c := range srcs {
			if _, err := c.Write(datagram(k*1000+i, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Which stream carries which source depends on which datagram the
	// listener read first; the first datagram on each tells.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		opened := len(peers)
		mu.Unlock()
		if opened == flows {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d flows opened", opened, flows)
		}
	}
	seen := map[int]bool{}
	for _, peer := range peers {
		peer.SetReadDeadline(time.Now().Add(10 * time.Second))
		first := make([]byte, proto.MaxDatagram)
		n, err := proto.ReadDatagram(peer, first)
		if err != nil {
			t.Fatal(err)
		}
		k := -1
		for j := range flows {
			if bytes.Equal(first[:n], datagram(j*1000, sizes[0])) {
				k = j
			}
		}
		if k < 0 || seen[k] {
			t.Fatalf("a flow's stream begins with a datagram of %d bytes that is no source's first, or another's", n)
		}
		seen[k] = true
		readFlow(t, peer, k, sizes, 1)
	}
	if d := dropped.Load(); d != 0 {
		t.Errorf("dropped %d datagrams", d)
	}
}
