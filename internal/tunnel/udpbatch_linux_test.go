package tunnel

import (
	"net"
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
