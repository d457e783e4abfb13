package tunnel

import (
	"errors"
	"net"
	"sync/atomic"
	"syscall"
)

// LossyConn is the UDP socket quicport hands to quic-go. quic-go closes a
// connection — and with it every tunneled connection — at the first
// datagram the kernel refuses to send. Some refusals say nothing about the
// connection, only that this one packet did not leave:
//
//   - EPERM: a firewall rule dropped it on output, or the conntrack table
//     is full;
//   - ENOBUFS: a full device or qdisc queue;
//   - ENETUNREACH, EHOSTUNREACH, ENETDOWN, EHOSTDOWN: no route for a
//     moment, as when a laptop changes networks.
//
// On a wire each would be a lost packet, and QUIC repairs lost packets.
// LossyConn reports these as sent and counts them; if the path stays
// broken, the idle timeout ends the connection as it would any silent
// outage. Every other error goes through: quic-go needs EMSGSIZE for path
// MTU discovery and EIO to turn GSO off.
//
// It embeds *net.UDPConn, so quic-go still finds what it uses for batched
// reads, GSO and ECN (SyscallConn, ReadMsgUDP, WriteMsgUDP).
type LossyConn struct {
	*net.UDPConn
	// Dropped counts the datagrams refused this way; nil counts nothing.
	Dropped *atomic.Uint64
}

// WriteMsgUDP is how quic-go sends on Linux (GSO batches included).
func (c LossyConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	n, oobn, err = c.UDPConn.WriteMsgUDP(b, oob, addr)
	if err != nil && c.lost(err) {
		return len(b), len(oob), nil
	}
	return n, oobn, err
}

// WriteTo is how quic-go sends where it cannot use WriteMsgUDP.
func (c LossyConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	n, err := c.UDPConn.WriteTo(b, addr)
	if err != nil && c.lost(err) {
		return len(b), nil
	}
	return n, err
}

// lost reports whether err means only that this datagram was not sent,
// and counts it.
func (c LossyConn) lost(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EPERM, syscall.ENOBUFS, syscall.ENETUNREACH, syscall.EHOSTUNREACH, syscall.ENETDOWN, syscall.EHOSTDOWN} {
		if errors.Is(err, errno) {
			if c.Dropped != nil {
				c.Dropped.Add(1)
			}
			return true
		}
	}
	return false
}
