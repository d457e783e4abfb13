package tunnel

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

// One sendmsg with UDP_SEGMENT arrives as the datagrams it was cut into,
// the last one shorter, each intact.
func TestSegmenterSendsDatagrams(t *testing.T) {
	dst, c := udpPair(t)
	var run []byte
	for i := range 10 {
		run = append(run, bytes.Repeat([]byte{byte(i)}, 1200)...)
	}
	run = run[:len(run)-200] // the last datagram is 1000 bytes
	if !newSegmenter().write(c, run, 1200, netip.AddrPort{}) {
		t.Fatal("loopback did not take a segmented send")
	}
	buf := make([]byte, 65535)
	dst.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := range 10 {
		n, err := dst.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		want := 1200
		if i == 9 {
			want = 1000
		}
		if n != want || !bytes.Equal(buf[:n], bytes.Repeat([]byte{byte(i)}, n)) {
			t.Fatalf("datagram %d: %d bytes, want %d bytes of %d", i, n, want, i)
		}
	}
}
