package tunnel

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/proto"
)

// maxReadBatch is the most datagrams one read of a UDP forward's socket
// takes (one recvmmsg): a fast flow's datagrams cost a system call per
// batch, not one each.
const maxReadBatch = 16

// readBatch is the buffers of one recvmmsg. Every buffer holds the largest
// UDP payload, so no datagram is ever cut short; that makes a batch a
// megabyte, so a reader borrows one from readBatches only once its socket
// has datagrams, and gives it back when they are passed on. The memory is
// then as many batches as readers are busy at once, not one per flow.
type readBatch struct {
	hdrs  [maxReadBatch]unix.Mmsghdr
	iovs  [maxReadBatch]unix.Iovec
	names [maxReadBatch]unix.RawSockaddrInet6 // large enough for either family
	// Control messages: UDP_GRO's segment size, and on quic-go's socket
	// ECN and packet info too: 120 bytes for an IPv4 run to a dual-stack
	// socket (UDP_GRO, IPV6_PKTINFO, IP_PKTINFO, IP_TOS). The kernel drops
	// those that do not fit, so there is room to spare.
	oobs [maxReadBatch][256]byte
	bufs [maxReadBatch][]byte
	// dgs is where each datagram of the last read lies: with receive
	// offload one buffer can hold a run of them (up to 64).
	dgs []span
}

// batchesLent counts the batches readers hold: those busy with datagrams.
var batchesLent atomic.Int64

var readBatches = sync.Pool{New: func() any {
	b := new(readBatch)
	for i := range b.hdrs {
		b.bufs[i] = make([]byte, proto.MaxDatagram)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		h := &b.hdrs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.iovs[i]
		h.SetIovlen(1)
		h.Control = &b.oobs[i][0]
	}
	return b
}}

// recvmmsg reads the datagrams waiting on fd, without waiting for more.
func (b *readBatch) recvmmsg(fd uintptr) (int, error) {
	for i := range b.hdrs {
		b.hdrs[i].Hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		b.hdrs[i].Hdr.SetControllen(len(b.oobs[i]))
		b.hdrs[i].Len = 0
	}
	n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// datagramReader reads a UDP socket's datagrams in batches. It is not
// safe for concurrent use.
type datagramReader struct {
	rc  syscall.RawConn
	err error      // from getting rc
	b   *readBatch // borrowed from read until release
	// recv is readFD as a function value, made once: a closure per read
	// would be an allocation per read. n and rerr are its results.
	recv func(fd uintptr) bool
	n    int
	rerr error
}

// span is one datagram in a batch: bufs[msg][off:end].
type span struct{ msg, off, end int }

// newDatagramReader reads c, with generic receive offload on where the
// kernel offers it (see WithGRO): a run of datagrams from one source that
// arrived together then takes one buffer and one copy.
func newDatagramReader(c *net.UDPConn) *datagramReader {
	rc, err := c.SyscallConn()
	r := &datagramReader{rc: rc, err: err}
	if err == nil {
		enableGRO(c)
	}
	r.recv = r.readFD
	return r
}

// read waits for datagrams and returns how many it read: datagram(i) for
// i below that is each of them, valid until release. Errors are those of
// a read on the socket: deadlines, a closed socket, ICMP errors of a
// connected one.
func (r *datagramReader) read() (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	err := r.rc.Read(r.recv)
	if err == nil && r.rerr != nil {
		err = &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvmmsg", r.rerr)}
	}
	if err != nil {
		r.release()
		return 0, err
	}
	b := r.b
	b.dgs = b.dgs[:0]
	for i := range r.n {
		h := &b.hdrs[i]
		n := int(h.Len)
		seg := groSegment(b.oobs[i][:h.Hdr.Controllen])
		if seg <= 0 || seg >= n {
			b.dgs = append(b.dgs, span{i, 0, n})
			continue
		}
		for off := 0; off < n; off += seg {
			b.dgs = append(b.dgs, span{i, off, min(off+seg, n)})
		}
	}
	return len(b.dgs), nil
}

// readFD reads what waits on fd, taking a batch for it; with nothing there
// it gives the batch back and reports false, so the caller waits.
func (r *datagramReader) readFD(fd uintptr) bool {
	if r.b == nil {
		r.b = readBatches.Get().(*readBatch)
		batchesLent.Add(1)
	}
	r.n, r.rerr = r.b.recvmmsg(fd)
	for r.rerr == unix.EINTR {
		r.n, r.rerr = r.b.recvmmsg(fd)
	}
	if r.rerr == unix.EAGAIN {
		r.release() // nothing while the socket waits
		return false
	}
	return true
}

// datagram returns the i-th datagram of the last read and its source.
func (r *datagramReader) datagram(i int) ([]byte, netip.AddrPort) {
	d := r.b.dgs[i]
	return r.b.bufs[d.msg][d.off:d.end], sourceOf(&r.b.names[d.msg])
}

// controls returns the message of the last read that datagram i came
// from and that message's control messages.
func (r *datagramReader) controls(i int) (int, []byte) {
	msg := r.b.dgs[i].msg
	return msg, r.b.oobs[msg][:r.b.hdrs[msg].Hdr.Controllen]
}

// release gives back the batch of the last read.
func (r *datagramReader) release() {
	if r.b != nil {
		readBatches.Put(r.b)
		r.b = nil
		batchesLent.Add(-1)
	}
}

// sourceOf turns a sockaddr recvmmsg filled in into an address and port,
// as net.UDPConn's reads do (an IPv6 scope as its number).
func sourceOf(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}
