//go:build !linux

package tunnel

import "net"

// WithGRO returns c as it is: generic receive offload (UDP_GRO) is Linux's.
// On Linux it is off unless QUICPORT_GRO is true.
func WithGRO(c LossyConn) net.PacketConn { return c }
