package ackhandler

// quicport's tests of its patch to this package (third_party/quic-go.patch).

import (
	"runtime"
	"testing"
	"time"

	"github.com/quic-go/quic-go/internal/monotime"
	"github.com/quic-go/quic-go/internal/protocol"
	"github.com/quic-go/quic-go/internal/utils"
	"github.com/quic-go/quic-go/internal/wire"
)

// A transfer's history slides: packets are sent at the end and acknowledged
// at the front, with a few hundred in flight and now and then a skipped
// packet number. The history keeps every packet in flight, in order, and
// once its array is big enough it makes no allocation for them, however
// far the window slides.
func TestHistoryReusesItsArray(t *testing.T) {
	const inFlight = 300
	h := newSentPacketHistory()
	var next, oldest protocol.PacketNumber
	pkts := make([]packet, 2*inFlight) // reused by packet number, like the pool
	frame := &wire.StreamFrame{}
	send := func() {
		if next%97 == 96 { // a skipped packet number, as the packet number generator makes
			h.SkippedPacket(next)
			next++
		}
		p := &pkts[next%protocol.PacketNumber(len(pkts))]
		*p = packet{EncryptionLevel: protocol.Encryption1RTT, StreamFrames: p.StreamFrames[:0]}
		p.StreamFrames = append(p.StreamFrames, StreamFrame{Frame: frame})
		h.SentPacket(next, p)
		next++
	}
	ack := func() {
		for h.FirstPacketNumber() != protocol.InvalidPacketNumber && next-h.FirstPacketNumber() > inFlight {
			pn, _ := h.FirstOutstanding(protocol.Encryption1RTT.PacketNumberSpace())
			if pn < oldest {
				t.Fatalf("packet %d came back after %d was acknowledged", pn, oldest)
			}
			if err := h.Remove(pn); err != nil {
				t.Fatal(err)
			}
			oldest = pn
		}
	}
	step := func() { send(); ack() }
	for range 10 * inFlight {
		step()
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const steps = 100_000
	for range steps {
		step()
	}
	runtime.ReadMemStats(&after)
	if n := after.Mallocs - before.Mallocs; n != 0 {
		t.Errorf("%d allocations for %d packets sent and acknowledged, want 0", n, steps)
	}
	// What is in flight is every packet sent after the oldest one kept, but
	// the skipped numbers.
	want := h.FirstPacketNumber()
	for pn, p := range h.Packets() {
		for want%97 == 96 {
			want++
		}
		if pn != want || p != &pkts[pn%protocol.PacketNumber(len(pkts))] {
			t.Fatalf("history holds packet %d (%p) where packet %d was sent", pn, p, want)
		}
		want++
	}
	if want != next {
		t.Fatalf("history ends at packet %d, %d were sent", want, next)
	}
	if n := len(h.array); n > 4*inFlight {
		t.Errorf("history's array holds %d packets for %d in flight", n, inFlight)
	}
}

// The sent packet handler keeps a copy of a packet's STREAM frames, not the
// slice it was given: the packer gathers the next packet's frames in that
// slice's array, which SentPacket leaves cleared. Each frame is
// acknowledged once, with the packet that carried it.
func TestSentPacketKeepsACopyOfItsStreamFrames(t *testing.T) {
	h := NewSentPacketHandler(0, 1200, utils.NewRTTStats(), &utils.ConnectionStats{}, true, false, nil, protocol.PerspectiveClient, nil, utils.DefaultLogger, nil)
	rec := &ackRecorder{}
	scratch := make([]StreamFrame, 0, 2)
	now := monotime.Now()
	var pns []protocol.PacketNumber
	var sent [][]*wire.StreamFrame
	for i := range 3 {
		pn := h.PopPacketNumber(protocol.PacketNumberSpaceAppData)
		fs := scratch[:0]
		var want []*wire.StreamFrame
		for j := range 2 {
			f := &wire.StreamFrame{StreamID: protocol.StreamID(4 * (2*i + j))}
			fs = append(fs, StreamFrame{Frame: f, Handler: rec})
			want = append(want, f)
		}
		h.SentPacket(now, pn, protocol.InvalidPacketNumber, fs, nil, protocol.Encryption1RTT, protocol.ECNNon, 1200, false, false)
		for _, f := range fs {
			if f.Frame != nil || f.Handler != nil {
				t.Fatalf("packet %d: the packer's array still holds a frame after SentPacket, which keeps its stream alive", pn)
			}
		}
		pns, sent = append(pns, pn), append(sent, want)
	}
	for i, pn := range pns {
		rec.acked = rec.acked[:0]
		ack := &wire.AckFrame{AckRanges: []wire.AckRange{{Smallest: pn, Largest: pn}}}
		if _, err := h.ReceivedAck(ack, protocol.Encryption1RTT, now.Add(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		if len(rec.acked) != 2 || rec.acked[0] != sent[i][0] || rec.acked[1] != sent[i][1] {
			t.Fatalf("acknowledging packet %d acknowledged frames %v, want %v", pn, rec.acked, sent[i])
		}
	}
}

type ackRecorder struct{ acked []wire.Frame }

func (r *ackRecorder) OnAcked(f wire.Frame) { r.acked = append(r.acked, f) }
func (r *ackRecorder) OnLost(wire.Frame)    {}
