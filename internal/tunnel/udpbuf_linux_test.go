package tunnel

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A tunneled UDP socket gets a receive buffer of udpReceiveBuffer: all of it
// with CAP_NET_ADMIN (root, as in CI), else as much as net.core.rmem_max
// allows. Its send buffer stays at the default.
func TestGrowReceiveBuffer(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	get := func(opt int) int {
		raw, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		_ = raw.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, opt) })
		if gerr != nil {
			t.Fatal(gerr)
		}
		return v
	}
	sndBefore := get(unix.SO_SNDBUF)
	growReceiveBuffer(c, udpReceiveBuffer)
	want := udpReceiveBuffer
	if os.Geteuid() != 0 {
		b, err := os.ReadFile("/proc/sys/net/core/rmem_max")
		if err != nil {
			t.Fatal(err)
		}
		max, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		want = min(want, max)
	}
	// The kernel reports twice what was set (bookkeeping overhead).
	if got := get(unix.SO_RCVBUF); got < 2*want {
		t.Errorf("receive buffer %d bytes, want at least %d", got, 2*want)
	}
	if got := get(unix.SO_SNDBUF); got != sndBefore {
		t.Errorf("send buffer changed from %d to %d bytes", sndBefore, got)
	}
}
