package tunnel

import (
	"net"
	"testing"
	"time"
)

// A peer that never reads does not hold waitSent: it gives up once the
// queue stops draining.
func TestWaitSentGivesUpOnAStalledPeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close() // and never reads
	// Fill the peer's receive buffer and our send queue.
	c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		if _, err := c.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	tc := c.(*net.TCPConn)
	queued := sendQueued(tc)
	if queued == 0 {
		t.Fatal("nothing queued: the test did not set up a stalled peer")
	}
	done := make(chan struct{})
	go func() { waitSent(tc); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("waitSent still waits for a peer that never reads (%d bytes queued)", queued)
	}
}
