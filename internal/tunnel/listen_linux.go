package tunnel

import (
	"context"
	"net"
	"syscall"
)

// Keepalive of accepted TCP connections: Go's defaults for them (the
// first probe after 15 s idle, then one every 15 s, given up after 9).
const (
	keepAliveIdle     = 15 // seconds
	keepAliveInterval = 15 // seconds
	keepAliveCount    = 9
)

// ListenTCP listens on addr ("host:port") like net.Listen("tcp", addr),
// and its accepted connections have the same TCP keepalive as Go gives
// them, set once on the listening socket instead of per connection.
//
// Go turns keepalive on for each accepted connection with four setsockopt
// calls, on the way from accept to the goroutine that handles it, in
// every tunneled connection's setup at a tunnel's entrance. Linux copies
// a listening socket's options to the connections it accepts, keepalive
// and its timings among them, so here they are set once on the
// listening socket, and Go is told to leave them alone.
func ListenTCP(addr string) (*net.TCPListener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: setKeepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// setKeepAlive is a net.ListenConfig Control hook that sets keepalive on
// the listening socket for its accepted connections to inherit.
func setKeepAlive(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		for _, o := range []struct{ level, opt, v int }{
			{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, keepAliveIdle},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, keepAliveInterval},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, keepAliveCount},
		} {
			if serr = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}
