package client

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// watchNetwork reports on the returned channel when this machine gains an
// address or a route (rtnetlink's multicast groups), as when a laptop joins
// a network or an interface comes back up, until ctx ends. Bursts of such
// changes coalesce into one report. Where the watch cannot be set up it
// returns nil, a channel that never reports.
func watchNetwork(ctx context.Context, log *slog.Logger) <-chan struct{} {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		log.Debug("cannot watch the network for changes", "err", err)
		return nil
	}
	groups := uint32(unix.RTMGRP_IPV4_IFADDR | unix.RTMGRP_IPV6_IFADDR | unix.RTMGRP_IPV4_ROUTE | unix.RTMGRP_IPV6_ROUTE)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		unix.Close(fd)
		log.Debug("cannot watch the network for changes", "err", err)
		return nil
	}
	// Non-blocking, so the runtime's poller waits for it and Close ends a
	// pending Read.
	f := os.NewFile(uintptr(fd), "rtnetlink")
	changed := make(chan struct{}, 1)
	stop := context.AfterFunc(ctx, func() { f.Close() })
	go func() {
		defer f.Close() // also when the read fails for another reason
		defer stop()
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if errors.Is(err, unix.ENOBUFS) {
				// More changes than the socket could hold: a change all
				// the same.
				n, err = 0, nil
				signal(changed)
			}
			if err != nil {
				return
			}
			msgs, _ := syscall.ParseNetlinkMessage(buf[:n])
			for _, m := range msgs {
				if m.Header.Type == unix.RTM_NEWADDR || m.Header.Type == unix.RTM_NEWROUTE {
					signal(changed)
					break
				}
			}
		}
	}()
	return changed
}
