package tunnel

import (
	"encoding/binary"
	"net"
	"os"
	"strconv"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// groBatch is how many receive buffers one recvmmsg fills, as many as
// quic-go reads without GRO, so a socket whose datagrams the kernel does not
// coalesce (many peers, each sending little) costs no more system calls than
// before.
const groBatch = 8

// groBuffer holds the largest run the kernel hands over: a UDP datagram's
// payload is at most 65,507 bytes, coalesced runs included.
const groBuffer = 64 << 10

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

// groReader reads coalesced runs of datagrams into large buffers and hands
// them out one datagram at a time. It is not safe for concurrent use.
type groReader struct {
	pc   *ipv4.PacketConn // reads with recvmmsg, through Go's poller
	runs []ipv4.Message   // the large buffers
	n    int              // runs filled by the last read
	next int              // the run being cut apart
	off  int              // where its next datagram starts
	seg  int              // the size it was cut to
	oob  []byte           // its control messages, UDP_GRO left out
}

func newGROReader(c *net.UDPConn) *groReader {
	r := &groReader{pc: ipv4.NewPacketConn(c), runs: make([]ipv4.Message, groBatch)}
	for i := range r.runs {
		r.runs[i].Buffers = [][]byte{make([]byte, groBuffer)}
		r.runs[i].OOB = make([]byte, 256)
	}
	return r
}

// ReadBatch fills ms with the datagrams left from the last read, reading
// more only when none are left. It returns at least one datagram or an
// error, as quic-go expects of it.
func (r *groReader) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	if r.next >= r.n {
		n, err := r.pc.ReadBatch(r.runs, flags)
		if err != nil {
			return 0, err
		}
		r.n, r.next = n, 0
		r.start()
	}
	i := 0
	for i < len(ms) && r.next < r.n {
		run := &r.runs[r.next]
		end := min(r.off+r.seg, run.N)
		m := &ms[i]
		m.N = copy(m.Buffers[0], run.Buffers[0][r.off:end])
		m.Flags = 0
		if m.N < end-r.off {
			m.Flags = unix.MSG_TRUNC // as recvmmsg reports a datagram larger than the buffer
		}
		oob := r.oob
		if len(oob) > len(m.OOB) {
			oob = oob[:wholeCmsgs(oob, len(m.OOB))]
		}
		m.NN = copy(m.OOB, oob)
		m.Addr = run.Addr
		i++
		r.off = end
		if r.off >= run.N {
			r.next++
			r.start()
		}
	}
	return i, nil
}

// start prepares to cut apart the run r.next: its segment size from the
// UDP_GRO control message (none: the run is one datagram), and its other
// control messages (ECN, packet info), which hold for each datagram in it.
func (r *groReader) start() {
	r.off = 0
	if r.next >= r.n {
		return
	}
	run := &r.runs[r.next]
	r.seg = run.N
	r.oob = r.oob[:0]
	cmsgs := run.OOB[:run.NN]
	for len(cmsgs) > 0 {
		h, body, rest, err := unix.ParseOneSocketControlMessage(cmsgs)
		if err != nil {
			break
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(body) == 4 {
			// The kernel writes the size as a C int.
			if s := int(binary.NativeEndian.Uint32(body)); s > 0 {
				r.seg = s
			}
		} else {
			r.oob = append(r.oob, cmsgs[:len(cmsgs)-len(rest)]...)
		}
		cmsgs = rest
	}
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
