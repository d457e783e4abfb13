package tunnel

import (
	"net"
	"syscall"
	"testing"
)

// keepAliveOpts reads a connection's keepalive options: on/off, idle,
// interval, count.
func keepAliveOpts(t *testing.T, c *net.TCPConn) [4]int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v [4]int
	var serr error
	rc.Control(func(fd uintptr) {
		for i, o := range [][2]int{
			{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL},
			{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT},
		} {
			if v[i], serr = syscall.GetsockoptInt(int(fd), o[0], o[1]); serr != nil {
				return
			}
		}
	})
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

// acceptOne connects to ln and returns the accepted side.
func acceptOne(t *testing.T, ln net.Listener) *net.TCPConn {
	t.Helper()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// Connections accepted by ListenTCP's listener have the keepalive Go
// gives the connections of net.Listen's, inherited from the listening
// socket rather than set per connection.
func TestListenTCPKeepAlive(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			ref, err := net.Listen("tcp", addr)
			if err != nil {
				t.Skipf("no %s here: %v", addr, err)
			}
			defer ref.Close()
			want := keepAliveOpts(t, acceptOne(t, ref))
			if want != [4]int{1, keepAliveIdle, keepAliveInterval, keepAliveCount} {
				t.Fatalf("Go's own accepted connection has keepalive %v; update the constants in listen_linux.go to it", want)
			}

			ln, err := ListenTCP(addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if got := keepAliveOpts(t, acceptOne(t, ln)); got != want {
				t.Errorf("accepted connection has keepalive %v (on, idle, interval, count), want %v", got, want)
			}
		})
	}
}

func TestListenTCPTakenPort(t *testing.T) {
	ln, err := ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln2, err := ListenTCP(ln.Addr().String()); err == nil {
		ln2.Close()
		t.Fatal("a second listener on the same port succeeded")
	}
}
