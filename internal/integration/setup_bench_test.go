//go:build linux

package integration

import (
	"io"
	"net"
	"syscall"
	"testing"
	"time"

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
			defer reportCPU(b)()
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
			defer reportCPU(b)()
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

// reportCPU starts counting the CPU time of this process, which holds
// both tunnel ends, the echo server and the benchmark's own client; the
// func it returns reports it per operation as "cpu-µs/op". On a small
// machine where every process of a round trip shares the cores, the CPU a
// connection or message costs is what its latency is made of, and it
// varies far less from run to run than the latency does.
func reportCPU(b *testing.B) func() {
	start := processCPU(b)
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((processCPU(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
		}
	}
}

func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
