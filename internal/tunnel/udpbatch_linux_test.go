package tunnel

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Readers that wait for datagrams hold no batch of buffers: a server with
// many quiet flows spends a megabyte per busy reader, not per flow.
func TestWaitingReadersHoldNoBatch(t *testing.T) {
	const readers, each = 20, 3
	var got atomic.Int64
	var wg sync.WaitGroup
	var socks []*net.UDPConn
	for range readers {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		socks = append(socks, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newDatagramReader(c)
			for {
				n, err := r.read()
				if err != nil {
					return
				}
				got.Add(int64(n))
				r.release()
			}
		}()
	}
	defer func() {
		for _, c := range socks {
			c.Close()
		}
		wg.Wait()
	}()
	for _, c := range socks {
		src := sendDatagrams(t, c.LocalAddr().(*net.UDPAddr), each, 1200)
		src.Close()
	}
	for deadline := time.Now().Add(10 * time.Second); got.Load() < readers*each || batchesLent.Load() != 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d datagrams read; %d batches held by readers that wait for more", got.Load(), readers*each, batchesLent.Load())
		}
	}
}

// Reading a burst of 16 datagrams of 1,200 bytes: one recvfrom each (the
// baseline, as UDP forwards read before) against the batch reader, without
// and with receive offload. All get the burst from one segmentation-offload
// send, which loopback delivers as 16 datagrams, or as one run to a socket
// with receive offload on, so the sender costs them the same.
func BenchmarkReadDatagrams(b *testing.B) {
	const burst, size = 16, 1200
	for _, mode := range []string{"baseline-recvfrom", "batch", "batch-gro"} {
		b.Run(mode, func(b *testing.B) {
			c, src := udpPair(b)
			growReceiveBuffer(c, udpReceiveBuffer)
			g := newSegmenter()
			run := make([]byte, burst*size)
			var r *datagramReader
			if mode != "baseline-recvfrom" {
				t := os.Getenv("QUICPORT_DISABLE_GRO")
				if mode == "batch" {
					os.Setenv("QUICPORT_DISABLE_GRO", "true")
				}
				r = newDatagramReader(c)
				os.Setenv("QUICPORT_DISABLE_GRO", t)
			}
			buf := make([]byte, 65535)
			b.SetBytes(burst * size)
			b.ReportAllocs()
			for b.Loop() {
				if !g.write(src, run, size, netip.AddrPort{}) {
					b.Fatal("segmentation offload refused")
				}
				for got := 0; got < burst; {
					if r != nil {
						n, err := r.read()
						if err != nil {
							b.Fatal(err)
						}
						got += n
						r.release()
						continue
					}
					if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
						b.Fatal(err)
					}
					got++
				}
			}
		})
	}
}

// A run of datagrams that arrives coalesced (one segmentation-offload send
// on loopback, as a network card's receive offload would merge them) is
// read in one buffer and handed out as the datagrams it was, the last one
// shorter.
func TestDatagramReaderSplitsCoalescedRuns(t *testing.T) {
	c, src := udpPair(t)
	r := newDatagramReader(c)
	const seg, count, last = 1000, 10, 500
	var run []byte
	var want [][]byte
	for i := range count + 1 {
		d := datagram(i, seg)
		if i == count {
			d = datagram(i, last)
		}
		want = append(want, d)
		run = append(run, d...)
	}
	if !newSegmenter().write(src, run, seg, netip.AddrPort{}) {
		t.Fatal("segmentation offload refused")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := r.read()
	if err != nil {
		t.Fatal(err)
	}
	defer r.release()
	if r.n != 1 || n != len(want) {
		t.Fatalf("read %d buffers holding %d datagrams, want 1 holding %d (receive offload)", r.n, n, len(want))
	}
	for i := range n {
		p, from := r.datagram(i)
		if !bytes.Equal(p, want[i]) {
			t.Fatalf("datagram %d: %d bytes, want its %d", i, len(p), len(want[i]))
		}
		if from != src.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("datagram %d from %v", i, from)
		}
	}
}
