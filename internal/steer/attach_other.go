//go:build !linux

package steer

// attach: sk_reuseport programs exist only on Linux (New fails first).
func attach(fd, prog int) error { return ErrUnsupported }
