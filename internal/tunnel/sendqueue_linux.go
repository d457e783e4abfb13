package tunnel

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// waitSent waits until c's peer has acknowledged everything written to c,
// so that a reset (which discards what is still queued) loses nothing. A
// peer that stops taking data for a second is not waited for further.
func waitSent(c *net.TCPConn) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	queued := func() int {
		n := 0
		_ = raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
		return n
	}
	for last, since := queued(), time.Now(); last > 0 && time.Since(since) < time.Second; {
		time.Sleep(time.Millisecond)
		if n := queued(); n < last {
			last, since = n, time.Now()
		}
	}
}
