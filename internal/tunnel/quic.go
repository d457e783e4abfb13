package tunnel

import (
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
)

// Defaults shared by client and server.
const (
	DefaultKeepAlive   = 5 * time.Second
	DefaultIdleTimeout = 10 * time.Second
	// MaxStreams is how many tunneled connections one session may have
	// open at once in each direction.
	MaxStreams = 16384

	// StreamWindow is the default for the most a stream may have in
	// flight towards a receiver that has not read it yet: quic-go's
	// default, which a single bulk transfer needs across a long path
	// (6 MiB is 50 ms at 1 Gbit/s). --stream-window changes it within
	// [MinStreamWindow, MaxStreamWindow].
	StreamWindow = 6 << 20
	// MinStreamWindow and MaxStreamWindow bound --stream-window: below
	// 64 KiB a stream moves less than one GSO batch per round trip;
	// above 64 MiB (5 Gbit/s across 100 ms) a session could make its
	// peer hold half a gigabyte.
	MinStreamWindow = 64 << 10
	MaxStreamWindow = 64 << 20
	// FirstStreamWindow is what a new stream may send before its reader
	// has read anything (quic-go's default); auto-tuning grows the window
	// up to StreamWindow as the reader keeps up.
	FirstStreamWindow = 512 << 10
	// ConnWindow is the same for all streams of a session together: what
	// a session may hold of the receiver's memory. A stream whose
	// consumer stopped reading keeps its whole window in use, and every
	// other stream of the session shares what is left. quic-go's default
	// of 2.5 stream windows, which it reaches only on long paths (on a
	// short one it stops at 1.5), lets two or three stalled consumers
	// starve everyone else. Eight stream windows, given from the start,
	// leave a whole window for the rest with seven consumers stalled.
	// Streams opened before the client authenticates get none of it (see
	// the server's refuseEarlyStreams). SetWindows keeps the ratio for
	// any stream window.
	ConnWindow = connWindowStreams * StreamWindow

	connWindowStreams = 8
)

// QUICConfig returns the QUIC settings of a quicport endpoint. Zero
// durations select the defaults.
func QUICConfig(keepAlive, idle time.Duration) *quic.Config {
	if keepAlive == 0 {
		keepAlive = DefaultKeepAlive
	}
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	qc := &quic.Config{
		HandshakeIdleTimeout:  idle,
		MaxIdleTimeout:        idle,
		KeepAlivePeriod:       keepAlive,
		MaxIncomingStreams:    MaxStreams,
		MaxIncomingUniStreams: -1, // quicport uses bidirectional streams only
		// A relay that aborts still delivers what its TCP peer sent
		// before the abort (see Relay): RESET_STREAM_AT.
		EnableStreamResetPartialDelivery: true,
	}
	SetWindows(qc, StreamWindow)
	return qc
}

// SetWindows gives qc's streams a receive window of up to w bytes (0
// selects StreamWindow) and its connection eight of them (as ConnWindow
// is of StreamWindow), in full from the start. w outside [MinStreamWindow, MaxStreamWindow] is
// the caller's error; CheckStreamWindow says so.
func SetWindows(qc *quic.Config, w int64) {
	if w == 0 {
		w = StreamWindow
	}
	qc.InitialStreamReceiveWindow = uint64(min(w, FirstStreamWindow))
	qc.MaxStreamReceiveWindow = uint64(w)
	qc.InitialConnectionReceiveWindow = uint64(connWindowStreams * w)
	qc.MaxConnectionReceiveWindow = uint64(connWindowStreams * w)
}

// CheckStreamWindow refuses a stream window (in bytes) outside the range
// SetWindows takes, saying what is allowed. 0 means the default.
func CheckStreamWindow(w int64) error {
	if w != 0 && (w < MinStreamWindow || w > MaxStreamWindow) {
		return fmt.Errorf("stream window %d bytes is outside %d KiB to %d MiB", w, MinStreamWindow>>10, MaxStreamWindow>>20)
	}
	return nil
}
