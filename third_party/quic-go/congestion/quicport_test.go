package congestion

// Tests of NewCubic, added by quicport (QUICPORT.md).

import (
	"testing"
	"time"

	"github.com/quic-go/quic-go/internal/congestion"
	"github.com/quic-go/quic-go/internal/monotime"
	"github.com/quic-go/quic-go/internal/utils"
)

type fakeClock struct{ now monotime.Time }

func (c *fakeClock) Now() monotime.Time { return c.now }

// afterALoss runs quic-go's sender (CUBIC, or NewReno with reno) across a
// 20 ms path: slow start until the window passes 1,000 packets, one lost
// packet, then a full window every round trip for regrow. It returns the
// window before the loss, right after it, and at the end.
func afterALoss(t *testing.T, reno bool, regrow time.Duration) (before, cut, end ByteCount) {
	const mss, rtt = 1200, 20 * time.Millisecond
	clock := &fakeClock{now: monotime.Now()}
	stats := utils.NewRTTStats()
	stats.UpdateRTT(rtt, 0)
	s := newCubic(clock, stats, mss, reno)
	var pn PacketNumber
	round := func(lose bool) {
		var sent []PacketNumber
		var inflight ByteCount
		for inflight+mss <= s.GetCongestionWindow() {
			s.OnPacketSent(clock.now, inflight, pn, mss, true)
			sent = append(sent, pn)
			pn++
			inflight += mss
		}
		// One ACK frame for the round: quic-go reports each packet it
		// acks with what was in flight before the frame.
		clock.now = clock.now.Add(rtt)
		for i, p := range sent {
			if lose && i == 0 {
				s.OnCongestionEvent(p, mss, inflight)
			} else {
				s.OnPacketAcked(p, mss, inflight, clock.now)
			}
		}
	}
	for s.GetCongestionWindow() < 1000*mss {
		round(false)
		if pn > 1e6 {
			t.Fatalf("slow start never reached 1,000 packets (window %d)", s.GetCongestionWindow())
		}
	}
	before = s.GetCongestionWindow()
	round(true)
	cut = s.GetCongestionWindow()
	for range regrow / rtt {
		round(false)
	}
	return before, cut, s.GetCongestionWindow()
}

func TestCubicGrowsBackFasterThanNewReno(t *testing.T) {
	for _, regrow := range []time.Duration{time.Second, 3 * time.Second} {
		cb, cc, ce := afterALoss(t, false, regrow)
		rb, rc, re := afterALoss(t, true, regrow)
		t.Logf("%v after the loss: CUBIC %d → %d → %d packets, NewReno %d → %d → %d", regrow, cb/1200, cc/1200, ce/1200, rb/1200, rc/1200, re/1200)
		// Both take 0.7 of the window at a loss (quic-go's NewReno, as
		// Chromium's, uses CUBIC's factor).
		for _, w := range [][2]ByteCount{{cb, cc}, {rb, rc}} {
			if ratio := float64(w[1]) / float64(w[0]); ratio < 0.65 || ratio > 0.75 {
				t.Errorf("the window went from %d to %d at a loss (%.2f), want about 0.7 of it", w[0], w[1], ratio)
			}
		}
		if ce <= re {
			t.Errorf("%v after the loss CUBIC's window is %d packets, NewReno's %d: NewCubic is not CUBIC", regrow, ce/1200, re/1200)
		}
	}
}

func TestTheConnectionCountsTheLossesOfItsController(t *testing.T) {
	var conn utils.ConnectionStats
	s := congestion.WithStats(NewCubic(utils.NewRTTStats(), 1200), &conn)
	s.OnPacketSent(monotime.Now(), 0, 1, 1200, true)
	s.OnPacketSent(monotime.Now(), 1200, 2, 1200, true)
	s.OnCongestionEvent(1, 1200, 2400)
	s.OnCongestionEvent(2, 0, 1200) // an ECN mark, not a loss
	if got := conn.PacketsLost.Load(); got != 1 {
		t.Errorf("PacketsLost = %d, want 1", got)
	}
	if got := conn.BytesLost.Load(); got != 1200 {
		t.Errorf("BytesLost = %d, want 1200", got)
	}
	if got := conn.CongestionWindow.Load(); got != uint64(s.GetCongestionWindow()) {
		t.Errorf("CongestionWindow = %d, want the controller's %d", got, s.GetCongestionWindow())
	}
}
