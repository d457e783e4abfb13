package tunnel

import (
	"net"
	"net/netip"
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
// baseline, as UDP forwards read before) against the batch reader. Both
// get the burst from one segmentation-offload send, which loopback
// delivers as 16 datagrams, so the sender costs both the same.
func BenchmarkReadDatagrams(b *testing.B) {
	const burst, size = 16, 1200
	for _, mode := range []string{"baseline-recvfrom", "batch"} {
		b.Run(mode, func(b *testing.B) {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			growReceiveBuffer(c, udpReceiveBuffer)
			src, err := net.DialUDP("udp", nil, c.LocalAddr().(*net.UDPAddr))
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			g := newSegmenter()
			run := make([]byte, burst*size)
			r := newDatagramReader(c)
			buf := make([]byte, 65535)
			b.SetBytes(burst * size)
			b.ReportAllocs()
			for b.Loop() {
				if !g.write(src, run, size, netip.AddrPort{}) {
					b.Fatal("segmentation offload refused")
				}
				for got := 0; got < burst; {
					if mode == "batch" {
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
