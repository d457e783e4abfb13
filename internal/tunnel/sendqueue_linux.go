package tunnel

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// waitSent waits until c's peer has acknowledged everything written to c,
// so that a reset (which discards what is still queued) loses nothing. A
// peer that stops taking data for a second is not waited for further. It
// asks every millisecond at first and backs off to every 50: a session
// that dies with many stalled connections must not spin.
func waitSent(c syscall.Conn) {
	pause := time.Millisecond
	for last, since := sendQueued(c), time.Now(); last > 0 && time.Since(since) < time.Second; {
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
		if n := sendQueued(c); n < last {
			last, since = n, time.Now()
		}
	}
}

// sendQueued returns how many bytes written to c its peer has not
// acknowledged yet (SIOCOUTQ), 0 when that cannot be asked.
func sendQueued(c syscall.Conn) int {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	_ = raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
	return n
}
