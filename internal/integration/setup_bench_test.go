//go:build linux

package integration

import (
	"io"
	"net"
	"testing"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// BenchmarkConnectionSetup measures what a new tunneled connection costs
// until its first byte comes back: TCP connect at the entrance, one byte,
// its echo. "direct" (straight to the echo server) is the baseline for the
// ratio; run with -bench ConnectionSetup -benchtime 3000x.
func BenchmarkConnectionSetup(b *testing.B) {
	paths := benchPaths(b)
	for _, path := range paths {
		b.Run(path.name, func(b *testing.B) {
			buf := []byte{1}
			for b.Loop() {
				c, err := net.Dial("tcp", path.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

// BenchmarkRoundTrip measures a 64-byte ping-pong on an established
// tunneled connection; "direct" is the baseline.
func BenchmarkRoundTrip(b *testing.B) {
	paths := benchPaths(b)
	for _, path := range paths {
		b.Run(path.name, func(b *testing.B) {
			c, err := net.Dial("tcp", path.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 64)
			for b.Loop() {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type benchPath struct{ name, addr string }

// benchPaths starts an echo server and an in-process server with an LPF and
// an RPF client to it, and returns the three ways in: direct, lpf, rpf.
func benchPaths(b *testing.B) []benchPath {
	echo := testutil.EchoServer(b)
	psk := auth.PSK("bench-psk-0123456789abcdef")
	srv := testutil.StartServer(b, server.Config{Auth: auth.ServerConfig{PSK: psk}, ConnRate: 1e6})
	entry := func(remote bool) string {
		cfg := client.Config{Server: srv.AddrString(), Auth: auth.ClientConfig{PSK: psk}, TOFU: testutil.KnownHosts(b)}
		if remote {
			cfg.Forward = client.Forward{Remote: true, Source: mustAddr(b, "0"), Dest: mustAddr(b, echo)}
		} else {
			cfg.Forward = client.Forward{Source: mustAddr(b, "127.0.0.1:0"), Dest: mustAddr(b, echo)}
		}
		c := testutil.StartClient(b, cfg)
		if remote {
			return net.JoinHostPort("127.0.0.1", testutil.Port(b, c.Ready.RemoteListen))
		}
		return c.Ready.LocalListen.String()
	}
	return []benchPath{{"direct", echo}, {"lpf", entry(false)}, {"rpf", entry(true)}}
}
