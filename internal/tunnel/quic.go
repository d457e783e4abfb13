package tunnel

import (
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

	// StreamWindow is the most a stream may have in flight towards a
	// receiver that has not read it yet: quic-go's default, which a
	// single bulk transfer needs across a long path (6 MiB is 50 ms at
	// 1 Gbit/s).
	StreamWindow = 6 << 20
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
	// the server's refuseEarlyStreams).
	ConnWindow = 8 * StreamWindow
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
	return &quic.Config{
		HandshakeIdleTimeout:           idle,
		MaxIdleTimeout:                 idle,
		KeepAlivePeriod:                keepAlive,
		MaxIncomingStreams:             MaxStreams,
		MaxIncomingUniStreams:          -1, // quicport uses bidirectional streams only
		InitialStreamReceiveWindow:     FirstStreamWindow,
		MaxStreamReceiveWindow:         StreamWindow,
		InitialConnectionReceiveWindow: ConnWindow,
		MaxConnectionReceiveWindow:     ConnWindow,
		// A relay that aborts still delivers what its TCP peer sent
		// before the abort (see Relay): RESET_STREAM_AT.
		EnableStreamResetPartialDelivery: true,
	}
}
