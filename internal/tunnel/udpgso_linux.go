package tunnel

import (
	"errors"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// segmenter sends runs of equal-sized datagrams to a connected UDP socket in
// one sendmsg each, with generic segmentation offload (UDP_SEGMENT): the
// kernel, or the network card, cuts the run into datagrams. It costs one
// system call per run instead of one per datagram.
type segmenter struct {
	oob []byte
	// tooBig is the smallest segment size the path refused (EINVAL: larger
	// than its MTU allows); 0 before any refusal. -1: the path cannot
	// segment at all (EIO: no transmit checksum offload).
	tooBig int
}

func newSegmenter() *segmenter {
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	return &segmenter{oob: oob}
}

// write sends run, datagrams of seg bytes each (the last may be shorter),
// in one system call, to `to`, or to c's peer when `to` is zero. It reports
// false when it did not send them; the caller then sends them one by one.
func (g *segmenter) write(c *net.UDPConn, run []byte, seg int, to netip.AddrPort) bool {
	if g.tooBig < 0 || (g.tooBig > 0 && seg >= g.tooBig) {
		return false
	}
	*(*uint16)(unsafe.Pointer(&g.oob[unix.CmsgSpace(0)])) = uint16(seg)
	var err error
	if to.IsValid() {
		_, _, err = c.WriteMsgUDPAddrPort(run, g.oob, to)
	} else {
		_, _, err = c.WriteMsgUDP(run, g.oob, nil)
	}
	switch {
	case err == nil:
		return true
	case errors.Is(err, unix.EIO):
		g.tooBig = -1
	case errors.Is(err, unix.EINVAL):
		g.tooBig = seg
	}
	return false
}
