package tunnel

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// groListen returns a loopback socket of network (udp4 or udp6) read
// through WithGRO, as quic-go reads it: with ECN reception on, into batches
// of 1,452-byte buffers.
func groListen(t *testing.T, network string) (*net.UDPConn, groConn) {
	t.Helper()
	ip := net.IPv4(127, 0, 0, 1)
	if network == "udp6" {
		ip = net.IPv6loopback
	}
	udp, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close() })
	setsockopt(t, udp, ecnOption(network, true), 1)
	return udp, withGRO(t, udp)
}

// withGRO is udp read through WithGRO, which must have turned generic
// receive offload on.
func withGRO(t testing.TB, udp *net.UDPConn) groConn {
	t.Helper()
	c, ok := WithGRO(LossyConn{UDPConn: udp}).(groConn)
	if !ok {
		t.Fatal("WithGRO did not turn generic receive offload on (Linux 5.0 or later has it)")
	}
	return c
}

// ecnOption is the socket option that receives (recv) or sends the ECN
// bits on network.
func ecnOption(network string, recv bool) [2]int {
	switch {
	case network == "udp6" && recv:
		return [2]int{unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS}
	case network == "udp6":
		return [2]int{unix.IPPROTO_IPV6, unix.IPV6_TCLASS}
	case recv:
		return [2]int{unix.IPPROTO_IP, unix.IP_RECVTOS}
	}
	return [2]int{unix.IPPROTO_IP, unix.IP_TOS}
}

func setsockopt(t *testing.T, c *net.UDPConn, opt [2]int, v int) {
	t.Helper()
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), opt[0], opt[1], v) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
}

// quicBatch is a batch of buffers as quic-go hands them to ReadBatch, with
// oob bytes for control messages (quic-go's: 128).
func quicBatch(oob int) []ipv4.Message {
	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1452)}
		ms[i].OOB = make([]byte, oob)
	}
	return ms
}

// groDatagram is one datagram as ReadBatch returned it.
type groDatagram struct {
	data  []byte
	from  netip.AddrPort
	ecn   int // the ECN bits; -1: no IP_TOS or IPV6_TCLASS control message
	trunc bool
}

// readDatagrams reads until it has n datagrams, into batches with oob
// bytes for control messages.
func readDatagrams(t *testing.T, udp *net.UDPConn, c groConn, n, oob int) []groDatagram {
	t.Helper()
	udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []groDatagram
	ms := quicBatch(oob)
	for len(got) < n {
		k, err := c.ReadBatch(ms, 0)
		if err != nil {
			t.Fatalf("after %d datagrams: %v", len(got), err)
		}
		if k == 0 {
			t.Fatal("ReadBatch returned no datagram and no error; quic-go would read stale buffers")
		}
		for _, m := range ms[:k] {
			d := groDatagram{data: append([]byte(nil), m.Buffers[0][:m.N]...), from: m.Addr.(*net.UDPAddr).AddrPort(), ecn: -1, trunc: m.Flags&unix.MSG_TRUNC != 0}
			cmsgs := m.OOB[:m.NN]
			for len(cmsgs) > 0 {
				h, body, rest, err := unix.ParseOneSocketControlMessage(cmsgs)
				if err != nil {
					t.Fatalf("control messages handed to quic-go do not parse: %v", err)
				}
				switch {
				case h.Level == unix.IPPROTO_UDP:
					t.Fatalf("a UDP-level control message (type %d) reached quic-go", h.Type)
				case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_TOS:
					d.ecn = int(body[0] & 3)
				case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_TCLASS:
					d.ecn = int(binary.NativeEndian.Uint32(body) & 3)
				}
				cmsgs = rest
			}
			got = append(got, d)
		}
	}
	if len(got) != n {
		t.Fatalf("read %d datagrams, want %d", len(got), n)
	}
	return got
}

func fill(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

// A segmentation-offload batch crosses loopback as one run; ReadBatch cuts
// it back into its datagrams, each with its sender and ECN bits, across as
// many calls as quic-go's batches need.
func TestGROCutsRunsIntoDatagrams(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			udp, c := groListen(t, network)
			src, err := net.DialUDP(network, nil, udp.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			setsockopt(t, src, ecnOption(network, false), 0x02) // ECT(0)

			var run []byte
			for i := range 13 {
				run = append(run, fill(byte(i), 1200)...)
			}
			run = run[:len(run)-500] // the last datagram is 700 bytes
			if !newSegmenter().write(src, run, 1200, netip.AddrPort{}) {
				t.Fatal("loopback did not take a segmented send")
			}
			got := readDatagrams(t, udp, c, 13, 128)
			if c.r.msg != 0 {
				t.Errorf("the 13 datagrams came in %d messages, want one: the kernel did not coalesce them", c.r.msg+1)
			}
			for i, d := range got {
				want := fill(byte(i), 1200)
				if i == 12 {
					want = want[:700]
				}
				if !bytes.Equal(d.data, want) {
					t.Errorf("datagram %d: %d bytes, want %d bytes of %d", i, len(d.data), len(want), i)
				}
				if d.from != src.LocalAddr().(*net.UDPAddr).AddrPort() {
					t.Errorf("datagram %d from %v, want %v", i, d.from, src.LocalAddr())
				}
				if d.ecn != 0x02 {
					t.Errorf("datagram %d: ECN bits %d, want ECT(0) (2) as sent", i, d.ecn)
				}
			}
		})
	}
}

// A run comes apart with every control message quic-go asks for: an IPv4
// run to a dual-stack socket with ECN and packet info on for both
// families, the most control messages a read carries (120 bytes). Were
// they too many for the reader's buffer, the kernel would drop the last
// ones, the ECN bits among them (and UDP_GRO's, were it not first). The
// IPv6 socket takes IPv4 as a dual-stack server's does, bound to
// loopback only (::ffff:127.0.0.1).
func TestGROCutsRunsWithEveryControlMessage(t *testing.T) {
	// Go will not bind an IPv6 socket to an IPv4-mapped address: by hand.
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "udp6")
	defer f.Close()
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: netip.MustParseAddr("::ffff:127.0.0.1").As16()}); err != nil {
		t.Fatal(err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		t.Fatal(err)
	}
	udp := pc.(*net.UDPConn)
	defer udp.Close()
	for _, opt := range [][2]int{
		{unix.IPPROTO_IP, unix.IP_RECVTOS}, {unix.IPPROTO_IP, unix.IP_PKTINFO},
		{unix.IPPROTO_IPV6, unix.IPV6_RECVTCLASS}, {unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO},
	} {
		setsockopt(t, udp, opt, 1)
	}
	c := withGRO(t, udp)
	port := udp.LocalAddr().(*net.UDPAddr).Port
	src, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	setsockopt(t, src, ecnOption("udp4", false), 0x02) // ECT(0)
	var run []byte
	for i := range 5 {
		run = append(run, fill(byte(i), 1200)...)
	}
	if !newSegmenter().write(src, run, 1200, netip.AddrPort{}) {
		t.Fatal("loopback did not take a segmented send")
	}
	got := readDatagrams(t, udp, c, 5, 128)
	for i, d := range got {
		if !bytes.Equal(d.data, fill(byte(i), 1200)) {
			t.Errorf("datagram %d: %d bytes, want 1200 bytes of %d", i, len(d.data), i)
		}
		if d.ecn != 0x02 {
			t.Errorf("datagram %d: ECN bits %d, want ECT(0) (2) as sent", i, d.ecn)
		}
	}
	if c.r.msg != 0 {
		t.Errorf("the 5 datagrams came in %d messages, want one: the kernel did not coalesce them", c.r.msg+1)
	}
}

// Datagrams that were not coalesced — from several senders, of different
// sizes, empty, or larger than quic-go's buffer — come out one for one, in
// order, and a datagram too large for the buffer is marked truncated, as
// recvmmsg marks it.
func TestGROPassesSingleDatagrams(t *testing.T) {
	udp, c := groListen(t, "udp4")
	var srcs []*net.UDPConn
	for range 2 {
		s, err := net.DialUDP("udp4", nil, udp.LocalAddr().(*net.UDPAddr))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		srcs = append(srcs, s)
	}
	sent := []struct {
		from int
		data []byte
	}{
		{0, fill(1, 100)},
		{1, fill(2, 1400)},
		{0, nil},
		{1, fill(3, 2000)},
		{0, fill(4, 1)},
	}
	for _, s := range sent {
		if _, err := srcs[s.from].Write(s.data); err != nil {
			t.Fatal(err)
		}
	}
	got := readDatagrams(t, udp, c, len(sent), 128)
	for i, s := range sent {
		d := got[i]
		want, trunc := s.data, false
		if len(want) > 1452 {
			want, trunc = want[:1452], true
		}
		if !bytes.Equal(d.data, want) || d.trunc != trunc {
			t.Errorf("datagram %d: %d bytes (truncated %v), want %d (truncated %v)", i, len(d.data), d.trunc, len(want), trunc)
		}
		if from := srcs[s.from].LocalAddr().(*net.UDPAddr).AddrPort(); d.from != from {
			t.Errorf("datagram %d from %v, want %v", i, d.from, from)
		}
	}
}

// A datagram on its way to quic-go costs no allocation: the source address
// it comes with is made once for as long as the source stays the same.
func TestGROReadsWithoutAllocating(t *testing.T) {
	udp, c := groListen(t, "udp4")
	src, err := net.DialUDP("udp4", nil, udp.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	udp.SetReadDeadline(time.Now().Add(5 * time.Second))
	ms := quicBatch(128)
	var first net.Addr
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := src.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		n, err := c.ReadBatch(ms, 0)
		if err != nil || n != 1 || string(ms[0].Buffers[0][:ms[0].N]) != "ping" {
			t.Fatalf("ReadBatch = %d datagrams (%q first), %v; want the one sent", n, ms[0].Buffers[0][:ms[0].N], err)
		}
		if first == nil {
			first = ms[0].Addr
		} else if ms[0].Addr != first {
			t.Fatalf("datagram from %v came with a new address value, want the first one again", ms[0].Addr)
		}
	})
	switch {
	case raceEnabled:
		t.Logf("%.1f allocations per datagram read, not checked under the race detector (.ci/run checks them without it)", allocs)
	case allocs != 0:
		t.Errorf("%.1f allocations per datagram read, want 0", allocs)
	}
	if got, want := first.(*net.UDPAddr).AddrPort(), src.LocalAddr().(*net.UDPAddr).AddrPort(); got != want {
		t.Errorf("datagrams from %v, want %v", got, want)
	}
}

// Control messages handed to quic-go are whole, even where they do not all
// fit its buffer: it stops reading the socket at one it cannot parse.
func TestWholeCmsgs(t *testing.T) {
	var b []byte
	for _, size := range []int{1, 12, 4} { // IP_TOS, IP_PKTINFO, a 4-byte one
		m := make([]byte, unix.CmsgSpace(size))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&m[0]))
		h.Level, h.Type = unix.IPPROTO_IP, 1
		h.SetLen(unix.CmsgLen(size))
		b = append(b, m...)
	}
	first, second := unix.CmsgSpace(1), unix.CmsgSpace(1)+unix.CmsgSpace(12)
	for _, tc := range []struct{ max, want int }{
		{len(b), len(b)}, {len(b) + 10, len(b)}, {len(b) - 1, second}, {second, second}, {second - 1, first}, {first - 1, 0}, {0, 0},
	} {
		if got := wholeCmsgs(b, tc.max); got != tc.want {
			t.Errorf("wholeCmsgs(%d bytes, %d) = %d, want %d", len(b), tc.max, got, tc.want)
		}
	}
}

// Where quic-go's buffer cannot take all control messages, it gets those
// that fit, whole (readDatagrams fails on one that does not parse): here
// the packet info, which Linux puts first, without the ECN bits.
func TestGROHandsOverWholeControlMessages(t *testing.T) {
	udp, c := groListen(t, "udp4")
	setsockopt(t, udp, [2]int{unix.IPPROTO_IP, unix.IP_PKTINFO}, 1)
	src, err := net.DialUDP("udp4", nil, udp.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if _, err := src.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	got := readDatagrams(t, udp, c, 1, unix.CmsgSpace(12)+8) // half of the next header
	if string(got[0].data) != "x" {
		t.Errorf("got %q, want %q", got[0].data, "x")
	}
}

// Reading one small datagram from the QUIC socket, as each packet of an
// idle tunnel's round trip is read: net.UDPConn's ReadMsgUDP (the baseline,
// how quic-go reads a socket without ReadBatch) against groConn's
// ReadBatch. Each iteration also pays the write that sends the datagram.
func BenchmarkQUICSocketRead(b *testing.B) {
	for _, mode := range []string{"baseline-readmsgudp", "gro-readbatch"} {
		b.Run(mode, func(b *testing.B) {
			udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer udp.Close()
			c := withGRO(b, udp)
			src, err := net.DialUDP("udp4", nil, udp.LocalAddr().(*net.UDPAddr))
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			ms := quicBatch(128)
			msg := make([]byte, 100)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := src.Write(msg); err != nil {
					b.Fatal(err)
				}
				if mode == "baseline-readmsgudp" {
					if _, _, _, _, err := udp.ReadMsgUDP(ms[0].Buffers[0], ms[0].OOB); err != nil {
						b.Fatal(err)
					}
					continue
				}
				if n, err := c.ReadBatch(ms, 0); err != nil || n != 1 {
					b.Fatal(n, err)
				}
			}
		})
	}
}
