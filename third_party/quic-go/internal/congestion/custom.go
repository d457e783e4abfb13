package congestion

import (
	"github.com/quic-go/quic-go/internal/monotime"
	"github.com/quic-go/quic-go/internal/protocol"
	"github.com/quic-go/quic-go/internal/utils"
)

// WithStats wraps an application's controller (Config.Congestion) so that
// the connection's statistics (ConnectionStats().CongestionWindow) follow
// its window, as quic-go's own sender keeps them. Added by quicport
// (QUICPORT.md).
func WithStats(c SendAlgorithmWithDebugInfos, stats *utils.ConnectionStats) SendAlgorithmWithDebugInfos {
	w := &statsReporting{SendAlgorithmWithDebugInfos: c, stats: stats}
	w.report()
	return w
}

type statsReporting struct {
	SendAlgorithmWithDebugInfos
	stats *utils.ConnectionStats
}

func (w *statsReporting) report() {
	w.stats.CongestionWindow.Store(uint64(w.GetCongestionWindow()))
}

func (w *statsReporting) OnPacketAcked(pn protocol.PacketNumber, acked, priorInFlight protocol.ByteCount, t monotime.Time) {
	w.SendAlgorithmWithDebugInfos.OnPacketAcked(pn, acked, priorInFlight, t)
	w.report()
}

func (w *statsReporting) OnCongestionEvent(pn protocol.PacketNumber, lost, priorInFlight protocol.ByteCount) {
	w.SendAlgorithmWithDebugInfos.OnCongestionEvent(pn, lost, priorInFlight)
	w.report()
}

func (w *statsReporting) OnRetransmissionTimeout(packetsRetransmitted bool) {
	w.SendAlgorithmWithDebugInfos.OnRetransmissionTimeout(packetsRetransmitted)
	w.report()
}

func (w *statsReporting) SetMaxDatagramSize(s protocol.ByteCount) {
	w.SendAlgorithmWithDebugInfos.SetMaxDatagramSize(s)
	w.report()
}
