//go:build !linux

package tunnel

import (
	"net"
	"net/netip"
)

// segmenter would send runs of equal-sized datagrams in one system call;
// only Linux has UDP_SEGMENT, so here every datagram goes on its own.
type segmenter struct{}

func newSegmenter() *segmenter { return &segmenter{} }

func (*segmenter) write(*net.UDPConn, []byte, int, netip.AddrPort) bool { return false }
