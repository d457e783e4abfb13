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
// with and without quic-go's hand-offs and timer added back, and a second
// connection at the entrance gets a connection of its own at the exit.
func TestFloorCarriesMessages(t *testing.T) {
	for _, o := range []options{{}, {hops: 2, timer: true}} {
		echo := testutil.EchoServer(t)
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		go runExit(u, echo, o)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		uc, err := net.DialUDP("udp", nil, u.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { uc.Close() })
		go runEntry(ln, uc, o)

		for round := range 2 {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.SetDeadline(time.Now().Add(30 * time.Second))
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
