package tunnel

import (
	"net/netip"
	"os"
	"syscall"
)

// ConnectEarly starts a TCP connection's handshake from a net.Dialer's
// Control hook (network "tcp4" or "tcp6", address the resolved
// "ip:port"; a ControlContext hook may call it last), so that the
// dialing goroutine does not wait for the handshake when it is already
// over by the time the connect returns.
//
// Go's dialer connects a non-blocking socket: connect returns
// EINPROGRESS, and the goroutine parks until the scheduler's next look
// at the network poller, behind every other runnable goroutine, even on
// loopback, where the handshake completes before the system call
// returns. With the handshake started here, Go's own connect is the
// second one on the socket: it returns at once with success when the
// handshake is done, the handshake's error when it failed (connection
// refused), or EALREADY while it goes on, and then Go waits for it as
// before. For a destination on the same host this takes the wait for
// the scheduler (about 16 µs on the machine of docs/BENCHMARKS.md) off
// every tunneled connection's setup; for a distant one it costs one
// system call.
//
// A dialer with a LocalAddr must not use it: the connect here would bind
// the socket before Go binds it to LocalAddr.
func ConnectEarly(network, address string, c syscall.RawConn) error {
	if network != "tcp4" && network != "tcp6" {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil || ap.Addr().Zone() != "" {
		return nil // let Go's connect deal with it
	}
	var sa syscall.Sockaddr
	if network == "tcp4" {
		a := ap.Addr().Unmap()
		if !a.Is4() {
			return nil
		}
		sa = &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.As4()}
	} else {
		sa = &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	var cerr error
	if err := c.Control(func(fd uintptr) { cerr = syscall.Connect(int(fd), sa) }); err != nil {
		return nil
	}
	switch cerr {
	case nil, syscall.EINPROGRESS, syscall.EINTR:
		// Under way (or done); Go's connect reports how it ended.
		return nil
	}
	// Failed at once (an unreachable network, say): what Go's own
	// connect would have said.
	return os.NewSyscallError("connect", cerr)
}
