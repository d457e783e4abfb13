package tunnel

import (
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"

	"github.com/quicport/quicport/internal/proto"
)

// maxReadBatch is the most datagrams one read of a UDP forward's socket
// takes: one recvmmsg on Linux (elsewhere x/net reads one at a time). A
// fast flow's datagrams then cost a system call per batch, not one each.
const maxReadBatch = 16

// datagramReader reads a UDP socket's datagrams in batches. Every buffer
// holds the largest UDP payload, so no datagram is ever cut short; to keep
// a quiet socket from holding a megabyte of them, a reader starts with one
// and doubles them, up to maxReadBatch, each time a read fills them all
// (datagrams were waiting). It is not safe for concurrent use.
type datagramReader struct {
	pc *ipv4.PacketConn // ipv4's ReadBatch reads either family
	ms []ipv4.Message
}

func newDatagramReader(c *net.UDPConn) *datagramReader {
	r := &datagramReader{pc: ipv4.NewPacketConn(c)}
	r.grow(1)
	return r
}

func (r *datagramReader) grow(n int) {
	for len(r.ms) < n {
		r.ms = append(r.ms, ipv4.Message{Buffers: [][]byte{make([]byte, proto.MaxDatagram)}})
	}
}

// read waits for datagrams and returns how many it read: datagram(i) for i
// below that is each of them, valid until the next read.
func (r *datagramReader) read() (int, error) {
	n, err := r.pc.ReadBatch(r.ms, 0)
	if n == len(r.ms) && n < maxReadBatch {
		defer r.grow(min(2*n, maxReadBatch))
	}
	return n, err
}

// datagram returns the i-th datagram of the last read and its source.
func (r *datagramReader) datagram(i int) ([]byte, netip.AddrPort) {
	m := &r.ms[i]
	var src netip.AddrPort
	if a, ok := m.Addr.(*net.UDPAddr); ok {
		src = a.AddrPort()
	}
	return m.Buffers[0][:m.N], src
}
