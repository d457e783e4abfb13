package tunnel

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A tunneled UDP socket gets udpSocketBuffer each way: all of it with
// CAP_NET_ADMIN (root, as in CI), else as much as net.core.*mem_max allows.
func TestGrowUDPBuffers(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	growUDPBuffers(c, udpSocketBuffer)
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []struct {
		opt    int
		sysctl string
	}{{unix.SO_RCVBUF, "rmem_max"}, {unix.SO_SNDBUF, "wmem_max"}} {
		var got int
		var gerr error
		_ = raw.Control(func(fd uintptr) { got, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, o.opt) })
		if gerr != nil {
			t.Fatal(gerr)
		}
		want := udpSocketBuffer
		if os.Geteuid() != 0 {
			b, err := os.ReadFile("/proc/sys/net/core/" + o.sysctl)
			if err != nil {
				t.Fatal(err)
			}
			max, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			want = min(want, max)
		}
		// The kernel reports twice what was set (bookkeeping overhead).
		if got < 2*want {
			t.Errorf("%s: socket buffer %d bytes, want at least %d", o.sysctl, got, 2*want)
		}
	}
}
