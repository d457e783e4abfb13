package cli

import (
	"context"
	"errors"
	"net"
	"os"
)

// Signaled is the cause of the context's cancellation when a signal stops
// quicport (cmd/quicport sets it), so commands can tell SIGINT from
// SIGTERM.
type Signaled struct{ Signal os.Signal }

func (s Signaled) Error() string { return "received " + s.Signal.String() }

// stoppedBy reports whether ctx was cancelled by sig.
func stoppedBy(ctx context.Context, sig os.Signal) bool {
	var s Signaled
	return errors.As(context.Cause(ctx), &s) && s.Signal == sig
}

// notify sends a state to systemd (sd_notify) when NOTIFY_SOCKET is set:
// READY=1 once the server serves, RELOADING=1 during a graceful restart.
func notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte(state))
}
