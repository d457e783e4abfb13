package tunnel

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// earlyDialer is how quicport dials a destination.
func earlyDialer(timeout time.Duration) *net.Dialer {
	return &net.Dialer{Timeout: timeout, Control: ConnectEarly}
}

// On loopback the handshake is over (or at least under way) when
// ConnectEarly returns: a second connect, Go's, says so instead of
// starting one (EINPROGRESS).
func TestConnectEarlyStartsTheHandshake(t *testing.T) {
	for _, tc := range []struct {
		network, host string
		family        int
	}{{"tcp4", "127.0.0.1", syscall.AF_INET}, {"tcp6", "::1", syscall.AF_INET6}} {
		t.Run(tc.network, func(t *testing.T) {
			ln, err := net.Listen(tc.network, net.JoinHostPort(tc.host, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			fd, err := syscall.Socket(tc.family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), "socket")
			defer f.Close()
			raw, err := f.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			if err := ConnectEarly(tc.network, ln.Addr().String(), raw); err != nil {
				t.Fatalf("ConnectEarly: %v", err)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			var sa syscall.Sockaddr = &syscall.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}
			if tc.family == syscall.AF_INET6 {
				sa = &syscall.SockaddrInet6{Port: port, Addr: [16]byte{15: 1}}
			}
			var cerr error
			_ = raw.Control(func(fd uintptr) { cerr = syscall.Connect(int(fd), sa) })
			switch cerr {
			case nil, syscall.EISCONN, syscall.EALREADY:
			default:
				t.Fatalf("second connect: %v, want success, EISCONN or EALREADY (EINPROGRESS: ConnectEarly did not connect)", cerr)
			}
		})
	}
}

// Dialing with ConnectEarly gives a working connection, the error Go
// gives for a closed port, a timeout for a handshake that does not
// finish, and leaves UDP alone.
func TestDialWithConnectEarly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c)
	}()
	c, err := earlyDialer(5*time.Second).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("through a socket connected early")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo: %q, %v", got, err)
	}
	c.Close()

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	_, err = earlyDialer(5*time.Second).Dial("tcp", addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial a closed port: %v, want connection refused", err)
	}

	// A listener whose accept queue is full drops SYNs: the handshake
	// stays under way and the dial ends with its timeout, as without
	// ConnectEarly.
	full := fullListener(t)
	c1, err := earlyDialer(5*time.Second).Dial("tcp", full)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	start := time.Now()
	c2, err := earlyDialer(300*time.Millisecond).Dial("tcp", full)
	if err == nil {
		c2.Close()
		t.Fatal("dial to a full accept queue succeeded; the test did not set up a stalled handshake")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial to a full accept queue: %v, want a timeout", err)
	}
	if time.Since(start) < 250*time.Millisecond {
		t.Fatalf("dial gave up after %v, before its timeout", time.Since(start))
	}

	u, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	uc, err := earlyDialer(5*time.Second).Dial("udp", u.LocalAddr().String())
	if err != nil {
		t.Fatalf("dial UDP: %v", err)
	}
	uc.Close()
}

// fullListener returns the address of a loopback listener with a backlog
// of 0, which queues one connection and drops the SYNs after it.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
}
