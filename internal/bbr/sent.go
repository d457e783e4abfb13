package bbr

import (
	"sort"
	"time"

	"github.com/quic-go/quic-go/congestion"
)

// sentPacket is what BBR remembers of an ack-eliciting packet until it is
// acked or lost: the state of the delivery clock when it left.
type sentPacket struct {
	pn            congestion.PacketNumber
	size          congestion.ByteCount
	sentTime      congestion.Time
	delivered     congestion.ByteCount
	deliveredTime congestion.Time
	firstSentTime congestion.Time
	appLimited    bool
	gone          bool // acked or lost
}

// sentPackets holds packets in the order they were sent, which is the
// order of their numbers, so a lookup is a binary search. Acked and lost
// ones are marked and dropped once nothing older is left; when all are
// gone a large backing array is let go, so a connection that went quiet
// keeps no memory from its busy time.
type sentPackets struct {
	pkts []sentPacket
	head int // pkts[:head] are gone
}

// keepCap is the capacity kept when the queue empties (1,200-byte packets:
// a window of about 300 KB).
const keepCap = 256

// push records a packet. A number not above the last one's starts a new
// packet number space (quic-go numbers the handshake's Initial and
// Handshake packets from 0, then its application data from 0 again):
// what is held is dropped, so that a lookup never finds another space's
// packet of the same number. Those packets' acks then find nothing and
// make no sample, which costs nothing after the first round trip.
func (q *sentPackets) push(p sentPacket) {
	if n := len(q.pkts); n > q.head && p.pn <= q.pkts[n-1].pn {
		q.pkts, q.head = q.pkts[:0], 0
	}
	q.pkts = append(q.pkts, p)
}

func (q *sentPackets) len() int { return len(q.pkts) - q.head }

// remove finds packet pn, marks it gone and returns it.
func (q *sentPackets) remove(pn congestion.PacketNumber) (sentPacket, bool) {
	live := q.pkts[q.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].pn >= pn })
	if i == len(live) || live[i].pn != pn || live[i].gone {
		return sentPacket{}, false
	}
	live[i].gone = true
	p := live[i]
	q.compact()
	return p, true
}

// prune drops packets sent long before one that was just acked: quic-go
// has declared them lost by then, and it does not report every such loss
// (an MTU probe's, for one) to the controller.
func (q *sentPackets) prune(ackedSent congestion.Time, minRTT time.Duration) {
	horizon := max(4*minRTT, 100*time.Millisecond)
	for q.head < len(q.pkts) && ackedSent.Sub(q.pkts[q.head].sentTime) > horizon {
		q.pkts[q.head].gone = true
		q.head++
	}
	q.compact()
}

func (q *sentPackets) compact() {
	for q.head < len(q.pkts) && q.pkts[q.head].gone {
		q.head++
	}
	switch {
	case q.head == len(q.pkts):
		if cap(q.pkts) > keepCap {
			q.pkts = nil
		} else {
			q.pkts = q.pkts[:0]
		}
		q.head = 0
	case q.head > len(q.pkts)/2 && q.head >= 64:
		n := copy(q.pkts, q.pkts[q.head:])
		q.pkts = q.pkts[:n]
		q.head = 0
	}
}
