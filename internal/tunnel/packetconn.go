package tunnel

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/time/rate"
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
// LossyConn reports these as sent and tells Refused; if the path stays
// broken, the idle timeout ends the connection as it would any silent
// outage. Every other error goes through: quic-go needs EMSGSIZE for path
// MTU discovery and EIO to turn GSO off.
//
// It embeds *net.UDPConn, so quic-go still finds what it uses for batched
// reads, GSO and ECN (SyscallConn, ReadMsgUDP, WriteMsgUDP).
type LossyConn struct {
	*net.UDPConn
	// Refused, if set, is called with the error of each datagram refused
	// this way. It runs on quic-go's send path and must not block.
	Refused func(error)
}

// RefusedSends returns a LossyConn.Refused that counts refused datagrams
// in n and logs a warning at most once a minute, so that an operator
// learns of a firewall rule or a full queue that drops the tunnel's
// packets without a line per packet.
func RefusedSends(n *atomic.Uint64, log *slog.Logger) func(error) {
	warn := &rate.Sometimes{Interval: time.Minute}
	return func(err error) {
		total := n.Add(1)
		warn.Do(func() {
			log.Warn("the system refused to send UDP datagrams; QUIC resends them as lost packets. Check for a firewall rule that drops outgoing UDP (or a full conntrack table) and the route",
				"err", err, "refused_total", total)
		})
	}
}

// WriteMsgUDP is how quic-go sends on Linux (GSO batches included). It
// sends through WriteMsgUDPAddrPort, the same system call without the
// allocation net.UDPConn's WriteMsgUDP makes for every packet (the socket
// address as an interface value).
func (c LossyConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	n, oobn, err = c.UDPConn.WriteMsgUDPAddrPort(b, oob, addr.AddrPort()) // a nil addr is the zero AddrPort, as for a connected socket
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
// and tells Refused.
func (c LossyConn) lost(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EPERM, syscall.ENOBUFS, syscall.ENETUNREACH, syscall.EHOSTUNREACH, syscall.ENETDOWN, syscall.EHOSTDOWN} {
		if errors.Is(err, errno) {
			if c.Refused != nil {
				c.Refused(err)
			}
			return true
		}
	}
	return false
}
