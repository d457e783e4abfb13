// Package congestion lets an application give a connection its own
// congestion controller through Config.Congestion.
//
// This package is not in upstream quic-go: quicport adds it to its copy of
// quic-go (see QUICPORT.md at the root of this module). It exposes the
// interface quic-go's own sender implements, under names an importer of
// the module can use.
package congestion

import (
	"github.com/quic-go/quic-go/internal/congestion"
	"github.com/quic-go/quic-go/internal/monotime"
	"github.com/quic-go/quic-go/internal/protocol"
	"github.com/quic-go/quic-go/internal/utils"
)

type (
	// ByteCount counts bytes.
	ByteCount = protocol.ByteCount
	// PacketNumber is a QUIC packet number.
	PacketNumber = protocol.PacketNumber
	// Time is quic-go's monotonic clock reading.
	Time = monotime.Time
	// RTTStats is the connection's round-trip-time estimator (read it; do
	// not update it: quic-go does).
	RTTStats = utils.RTTStats
	// SendAlgorithm is what a congestion controller implements. quic-go
	// asks CanSend, HasPacingBudget and TimeUntilSend before it sends,
	// reports every packet to OnPacketSent, and every ack or loss to
	// OnPacketAcked and OnCongestionEvent (lostBytes 0: an ECN
	// congestion-experienced mark).
	SendAlgorithm = congestion.SendAlgorithmWithDebugInfos
	// Factory makes the controller of a new connection, and again when
	// the connection migrates to a new path.
	Factory = congestion.Factory
)

// Now reads the clock quic-go passes to the controller.
func Now() Time { return monotime.Now() }

// MinPacingDelay is the shortest wait quic-go arms its pacing timer for:
// a controller should let bursts cover at least this long.
const MinPacingDelay = congestion.MinPacingDelay
