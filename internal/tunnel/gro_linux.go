package tunnel

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// groConn is a LossyConn that reads with generic receive offload (UDP_GRO):
// the kernel hands over a run of datagrams that arrived together from one
// peer as one buffer, with the size they were cut to, instead of one
// buffer each. On loopback a sender's segmentation-offload batch arrives
// whole, never cut apart; from a network card, the kernel coalesces what
// arrives in one poll. quic-go v0.65 has no GRO of its own (quic-go issue
// #3838), but it reads through ReadBatch when the connection has one, so
// groConn cuts the runs apart there and quic-go sees datagrams as before.
//
// The kernel coalesces by address and port, not by QUIC connection, and a
// server's BPF steering picks the data plane by the first datagram of a
// run. That takes every datagram to its data plane because a quicport
// client dials each session from a socket of its own (client.dialAddr):
// one address and port pair is one QUIC connection.
type groConn struct {
	LossyConn
	r *groReader
}

// ReadBatch fills ms with datagrams, cutting runs apart. quic-go calls it
// from one goroutine (its receive loop), as groReader requires.
func (c groConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	return c.r.ReadBatch(ms, flags)
}

// WithGRO turns on generic receive offload on c's socket and returns a
// connection that reads through it. Where the kernel does not offer it
// (before Linux 5.0), or QUICPORT_DISABLE_GRO is true (for a network card
// whose driver gets it wrong), it returns c as it is.
func WithGRO(c LossyConn) net.PacketConn {
	if !enableGRO(c.UDPConn) {
		return c
	}
	return groConn{LossyConn: c, r: newGROReader(c.UDPConn)}
}

// enableGRO turns on generic receive offload on c's socket, unless
// QUICPORT_DISABLE_GRO is true, and reports whether it is on.
func enableGRO(c *net.UDPConn) bool {
	if off, err := strconv.ParseBool(os.Getenv("QUICPORT_DISABLE_GRO")); err == nil && off {
		return false
	}
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1)
	}); err != nil || serr != nil {
		return false
	}
	return true
}

// groSegment is the size the kernel cut a coalesced run to, from its
// UDP_GRO control message among cmsgs; 0 when there is none (the buffer
// is one datagram).
func groSegment(cmsgs []byte) int {
	for len(cmsgs) > 0 {
		h, body, rest, err := unix.ParseOneSocketControlMessage(cmsgs)
		if err != nil {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(body) == 4 {
			return int(binary.NativeEndian.Uint32(body)) // the kernel writes a C int
		}
		cmsgs = rest
	}
	return 0
}

// groReader hands out the datagrams of a datagramReader (recvmmsg into
// pooled buffers, runs cut apart) as quic-go's ReadBatch expects them. It
// allocates nothing per datagram: the source address quic-go gets is one
// *net.UDPAddr for as long as the source stays the same (a client's socket
// has one peer; a server's changes with each client's run). It is not safe
// for concurrent use.
type groReader struct {
	d    *datagramReader
	n    int // datagrams of the last read
	next int // the next one to hand out
	from netip.AddrPort
	addr *net.UDPAddr // from, as a net.Addr; never changed once handed out
	msg  int          // the message of the last read whose control messages oob holds
	oob  []byte       // those control messages, UDP_GRO left out
}

func newGROReader(c *net.UDPConn) *groReader {
	return &groReader{d: newDatagramReader(c)}
}

// ReadBatch fills ms with the datagrams left from the last read, reading
// more only when none are left. It returns at least one datagram or an
// error, as quic-go expects of it. flags is quic-go's (0); the read never
// blocks the thread, it waits in Go's poller.
func (r *groReader) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	for r.next >= r.n { // a read that succeeds has at least one
		n, err := r.d.read()
		if err != nil {
			return 0, err
		}
		r.n, r.next, r.msg = n, 0, -1
	}
	i := 0
	for ; i < len(ms) && r.next < r.n; i++ {
		b, from := r.d.datagram(r.next)
		m := &ms[i]
		m.N = copy(m.Buffers[0], b)
		m.Flags = 0
		if m.N < len(b) {
			m.Flags = unix.MSG_TRUNC // as recvmmsg reports a datagram larger than the buffer
		}
		if msg, cmsgs := r.d.controls(r.next); msg != r.msg {
			r.msg, r.oob = msg, withoutGRO(r.oob[:0], cmsgs)
		}
		oob := r.oob
		if len(oob) > len(m.OOB) {
			oob = oob[:wholeCmsgs(oob, len(m.OOB))]
		}
		m.NN = copy(m.OOB, oob)
		if r.addr == nil || from != r.from {
			r.from, r.addr = from, net.UDPAddrFromAddrPort(from)
		}
		m.Addr = r.addr
		r.next++
	}
	if r.next >= r.n {
		r.d.release() // all copied out: a reader that waits holds no buffers
	}
	return i, nil
}

// withoutGRO appends to dst the control messages in cmsgs but UDP_GRO's
// (ECN, packet info: they hold for each datagram of a run), which quic-go
// does not know.
func withoutGRO(dst, cmsgs []byte) []byte {
	for len(cmsgs) > 0 {
		h, _, rest, err := unix.ParseOneSocketControlMessage(cmsgs)
		if err != nil {
			break
		}
		if h.Level != unix.IPPROTO_UDP || h.Type != unix.UDP_GRO {
			dst = append(dst, cmsgs[:len(cmsgs)-len(rest)]...)
		}
		cmsgs = rest
	}
	return dst
}

// wholeCmsgs is how many bytes of the control messages in b fit in max
// bytes without cutting one: quic-go stops reading the socket at a control
// message it cannot parse.
func wholeCmsgs(b []byte, max int) int {
	n := 0
	for n < len(b) {
		_, _, rest, err := unix.ParseOneSocketControlMessage(b[n:])
		if err != nil {
			break
		}
		next := len(b) - len(rest)
		if next > max {
			break
		}
		n = next
	}
	return n
}
