package main

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/testutil"
)

// The floor carries what it is given, message by message, both ways,
// with and without quic-go's hand-offs and timer added back; a second
// connection at the entrance gets a connection of its own at the exit,
// and so does the first connection of a restarted entrance, which counts
// its generations from 1 again.
func TestFloorCarriesMessages(t *testing.T) {
	for _, o := range []options{{}, {hops: 2, timer: true}} {
		var entry string
		echo := testutil.EchoServer(t)
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		go runExit(u, echo, o)
		for round := range 4 {
			// Three entrances, one connection each, then a second connection
			// through the last: each entrance's first connection is its
			// generation 1, as the one before it was.
			if round < 3 {
				ln, uc := entrance(t, u.LocalAddr().(*net.UDPAddr))
				go runEntry(ln, uc, o)
				entry = ln.Addr().String()
			}
			c, err := net.Dial("tcp", entry)
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(10 * time.Second))
			rng := rand.New(rand.NewPCG(uint64(round), uint64(o.hops)))
			sent, got := sha256.New(), sha256.New()
			msg, back := make([]byte, maxPayload), make([]byte, maxPayload)
			for range 300 {
				n := 1 + rng.IntN(maxPayload)
				for i := range msg[:n] {
					msg[i] = byte(rng.Uint32())
				}
				// One message at a time: the floor has no retransmission, and
				// on loopback a datagram waiting alone is not dropped.
				if _, err := c.Write(msg[:n]); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, back[:n]); err != nil {
					t.Fatalf("%+v, connection %d: reading the echo: %v", o, round+1, err)
				}
				sent.Write(msg[:n])
				got.Write(back[:n])
			}
			if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
				t.Fatalf("%+v, connection %d: the echo differs from what was sent (sha256)", o, round+1)
			}
			c.Close()
		}
	}
}

// entrance makes the sockets of an entrance to the exit at exit, closed
// when the test ends.
func entrance(t *testing.T, exit *net.UDPAddr) (net.Listener, *net.UDPConn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	uc, err := net.DialUDP("udp", nil, exit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	return ln, uc
}
