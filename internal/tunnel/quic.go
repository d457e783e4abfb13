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
		HandshakeIdleTimeout:  idle,
		MaxIdleTimeout:        idle,
		KeepAlivePeriod:       keepAlive,
		MaxIncomingStreams:    MaxStreams,
		MaxIncomingUniStreams: -1, // quicport uses bidirectional streams only
		// A relay that aborts still delivers what its TCP peer sent
		// before the abort (see Relay): RESET_STREAM_AT.
		EnableStreamResetPartialDelivery: true,
	}
}
