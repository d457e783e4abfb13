//go:build !linux

package tunnel

import (
	"net"
	"net/netip"

	"github.com/quicport/quicport/internal/proto"
)

// maxReadBatch is the most datagrams one read takes: one, without
// recvmmsg.
const maxReadBatch = 1

// datagramReader reads a UDP socket's datagrams one at a time; on Linux
// it reads them in batches. It is not safe for concurrent use.
type datagramReader struct {
	c   *net.UDPConn
	buf []byte
	n   int
	src netip.AddrPort
}

func newDatagramReader(c *net.UDPConn) *datagramReader {
	return &datagramReader{c: c, buf: make([]byte, proto.MaxDatagram)}
}

// read waits for a datagram: datagram(0) is it, valid until release.
func (r *datagramReader) read() (int, error) {
	var err error
	r.n, r.src, err = r.c.ReadFromUDPAddrPort(r.buf)
	if err != nil {
		return 0, err
	}
	return 1, nil
}

// datagram returns the datagram of the last read and its source.
func (r *datagramReader) datagram(int) ([]byte, netip.AddrPort) { return r.buf[:r.n], r.src }

// release is a no-op: the reader keeps its one buffer.
func (r *datagramReader) release() {}
