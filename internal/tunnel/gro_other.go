//go:build !linux

package tunnel

import "net"

// WithGRO returns c as it is: generic receive offload (UDP_GRO) is Linux's.
func WithGRO(c LossyConn) net.PacketConn { return c }
