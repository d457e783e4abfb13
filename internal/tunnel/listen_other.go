//go:build !linux

package tunnel

import "net"

// ListenTCP listens on addr like net.Listen("tcp", addr); Go sets each
// accepted connection's keepalive (see listen_linux.go for Linux).
func ListenTCP(addr string) (*net.TCPListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}
