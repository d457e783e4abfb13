// Package bbr is a BBR congestion controller (version 1, as Cardwell et al.
// describe it in "BBR: Congestion-Based Congestion Control", ACM Queue
// 2016, and draft-cardwell-iccrg-bbr-congestion-control) for quicport's
// QUIC connections, plugged into quic-go through Config.Congestion.
//
// BBR does not read a lost packet as congestion. It measures the path
// instead: the bottleneck bandwidth (the highest delivery rate of the last
// ten round trips) and the round-trip propagation time (the lowest RTT of
// the last ten seconds), and sends at that bandwidth with no more than two
// bandwidth-delay products in flight. Across a path that drops packets at
// random — Wi-Fi, mobile, a long lossy route — it keeps the rate NewReno
// would cut at every loss.
//
// The price: BBRv1 does not back off on loss (beyond a round trip of packet
// conservation), so beside loss-based flows on a bottleneck with a shallow
// buffer it takes more than its share. That is why it is an option
// (--congestion bbr) and quic-go's NewReno the default. Where nothing is
// lost at random the two move about the same (docs/BENCHMARKS.md, "BBR").
package bbr

import (
	"math"
	"time"

	"github.com/quic-go/quic-go/congestion"
)

// The constants of BBRv1 (the paper and the draft give the reasons).
const (
	startupGain      = 2.885 // 2/ln(2): doubles the delivery rate each round
	drainGain        = 1 / startupGain
	cwndGain         = 2.0 // two BDPs in flight absorb delayed and stretched acks
	bwWindowRounds   = 10  // the bandwidth estimate is the max of this many rounds
	minRTTWindow     = 10 * time.Second
	probeRTTDuration = 200 * time.Millisecond
	minCwndPackets   = 4
	fullBwGrowth     = 1.25 // startup ends when a round grows the estimate less than this…
	fullBwRounds     = 3    // …for this many rounds in a row
	initialCwndPkts  = 32
	maxCwndPackets   = 10000 // quic-go's limit for its own sender

	// burstPeriod is how long quic-go's pacing timer may leave the
	// sender waiting: it is armed for no less than MinPacingDelay and
	// fires up to a millisecond late. Packets leave in bursts of this
	// much time at the pacing rate.
	burstPeriod = congestion.MinPacingDelay + time.Millisecond
)

// probeBWGains is the pacing gain of each phase of a ProbeBW cycle: one
// round trip probing for more bandwidth, one draining what that queued, six
// cruising.
var probeBWGains = [...]float64{1.25, 0.75, 1, 1, 1, 1, 1, 1}

type mode uint8

const (
	startup mode = iota
	drain
	probeBW
	probeRTT
)

func (m mode) String() string {
	return [...]string{"startup", "drain", "probe_bw", "probe_rtt"}[m]
}

// A Sender is one connection's BBR controller. quic-go calls it from the
// connection's run loop only, so it takes no locks.
type Sender struct {
	mss congestion.ByteCount
	rtt *congestion.RTTStats // quic-go's; nil in simulations

	sent sentPackets // ack-eliciting packets in flight, for delivery rates

	// Delivery-rate estimation (draft-cheng-iccrg-delivery-rate-estimation).
	delivered      congestion.ByteCount // bytes acked so far
	deliveredTime  congestion.Time      // when delivered last grew
	firstSentTime  congestion.Time      // send time of the packet most recently acked
	appLimitedTill congestion.ByteCount // samples of packets sent before delivered reaches this are app-limited
	cwndBlocked    bool                 // the window stopped a send since the last packet

	// Round trips, counted by delivered bytes.
	rounds             uint64
	nextRoundDelivered congestion.ByteCount

	bw          maxFilter     // bottleneck bandwidth, bytes per second
	minRTT      time.Duration // round-trip propagation time; 0: no sample yet
	minRTTStamp congestion.Time

	mode       mode
	pacingGain float64
	cwndGain   float64
	cwnd       congestion.ByteCount

	cycleIndex int
	cycleStamp congestion.Time

	fullBw      float64
	fullBwCount int
	filledPipe  bool

	probeRTTDone      congestion.Time // zero: not yet timed
	probeRTTRoundDone bool
	priorCwnd         congestion.ByteCount // restored after ProbeRTT and loss recovery

	// Loss recovery: BBR keeps its rate through a loss, but for the round
	// trip after one it sends no more than is acked (packet conservation),
	// so a queue that overflowed gets a round to drain.
	largestSent          congestion.PacketNumber
	inRecovery           bool
	recoveryEnd          congestion.PacketNumber // recovery ends once a later packet is acked
	conservation         bool
	conservationEndRound uint64

	pacer pacer
}

// New makes the controller of one connection; its signature is quic-go's
// congestion.Factory.
func New(rtt *congestion.RTTStats, initialMaxDatagramSize congestion.ByteCount) congestion.SendAlgorithm {
	s := newSender(initialMaxDatagramSize)
	s.rtt = rtt
	return s
}

func newSender(mss congestion.ByteCount) *Sender {
	s := &Sender{
		mss:        mss,
		mode:       startup,
		pacingGain: startupGain,
		cwndGain:   startupGain,
		cwnd:       initialCwndPkts * mss,
	}
	s.pacer.mss = mss
	return s
}

// sample is one delivery-rate measurement, taken when a packet is acked.
type sample struct {
	rate       float64 // bytes per second; 0: no valid rate
	rtt        time.Duration
	appLimited bool
	roundStart bool
}

// OnPacketSent records an ack-eliciting packet for the delivery rate its
// ack will measure.
func (s *Sender) OnPacketSent(now congestion.Time, bytesInFlight congestion.ByteCount, pn congestion.PacketNumber, size congestion.ByteCount, ackEliciting bool) {
	rate := s.pacingRate()
	idle := s.pacer.idle(now, rate)
	s.pacer.sent(now, size, rate)
	s.largestSent = max(s.largestSent, pn)
	if !ackEliciting {
		return
	}
	if bytesInFlight <= size {
		// Nothing was in flight (quic-go counts this packet already): the
		// delivery clock restarts here, so the idle time before this
		// packet is not read as a slow path.
		s.firstSentTime = now
		s.deliveredTime = now
	}
	// The sender was app-limited if it sent nothing for a while without
	// the window having stopped it: the application had nothing to send.
	// Samples of packets sent until all that is in flight now is acked
	// would measure the application, not the path. (quic-go does not say
	// when the application has nothing to send; this is how it shows. A
	// sender that cannot keep up with its pacing rate, short of CPU, sends
	// without pauses, and is not app-limited: its rate is what the path
	// gets.)
	if idle && !s.cwndBlocked {
		s.appLimitedTill = max(s.delivered+bytesInFlight, 1)
	}
	s.cwndBlocked = false
	s.sent.push(sentPacket{
		pn:            pn,
		size:          size,
		sentTime:      now,
		delivered:     s.delivered,
		deliveredTime: s.deliveredTime,
		firstSentTime: s.firstSentTime,
		appLimited:    s.appLimitedTill != 0,
	})
}

// OnPacketAcked takes the delivery-rate sample of an acked packet and
// updates the model, the pacing rate and the window.
func (s *Sender) OnPacketAcked(pn congestion.PacketNumber, acked congestion.ByteCount, priorInFlight congestion.ByteCount, now congestion.Time) {
	p, ok := s.sent.remove(pn)
	if !ok {
		return
	}
	s.sent.prune(p.sentTime, s.minRTT)
	smp := s.measure(p, acked, now)
	inflight := priorInFlight - min(acked, priorInFlight)
	s.updateModel(smp, inflight, now)
	s.updateMode(inflight, now)
	if s.inRecovery && pn > s.recoveryEnd {
		s.inRecovery, s.conservation = false, false
		s.cwnd = max(s.cwnd, s.priorCwnd)
	}
	if s.conservation && s.rounds >= s.conservationEndRound {
		s.conservation = false
	}
	s.setCwnd(acked, inflight)
}

func (s *Sender) measure(p sentPacket, acked congestion.ByteCount, now congestion.Time) sample {
	s.delivered += acked
	s.deliveredTime = now
	if s.appLimitedTill != 0 && s.delivered > s.appLimitedTill {
		s.appLimitedTill = 0
	}
	smp := sample{rtt: now.Sub(p.sentTime), appLimited: p.appLimited}
	if s.rtt != nil && s.rtt.HasMeasurement() {
		// quic-go's own sample of this ack: it knows the packet number
		// spaces, which during the handshake reuse the numbers this
		// Sender keys its packets by.
		smp.rtt = s.rtt.LatestRTT()
	}
	if p.delivered >= s.nextRoundDelivered {
		s.nextRoundDelivered = s.delivered
		s.rounds++
		smp.roundStart = true
	}
	s.firstSentTime = p.sentTime
	// The rate over the longer of the send and the ack intervals: acks that
	// arrive bunched up would otherwise overstate it.
	interval := max(p.sentTime.Sub(p.firstSentTime), now.Sub(p.deliveredTime))
	if interval > 0 && (s.minRTT == 0 || interval >= s.minRTT) {
		smp.rate = float64(s.delivered-p.delivered) / interval.Seconds()
	}
	return smp
}

func (s *Sender) updateModel(smp sample, inflight congestion.ByteCount, now congestion.Time) {
	if smp.rate > 0 && (!smp.appLimited || smp.rate >= s.bw.best()) {
		s.bw.update(s.rounds, smp.rate)
	}
	if s.mode == startup && smp.roundStart && !smp.appLimited {
		s.checkFullPipe()
	}
	if s.mode == probeBW {
		s.advanceCycle(inflight, now)
	}
	expired := s.minRTT != 0 && now.Sub(s.minRTTStamp) > minRTTWindow
	if smp.rtt > 0 && (s.minRTT == 0 || smp.rtt <= s.minRTT || expired) {
		s.minRTT = smp.rtt
		s.minRTTStamp = now
	}
	if expired && s.mode == probeBW {
		s.enterProbeRTT()
	}
	if s.mode == probeRTT && smp.roundStart {
		s.probeRTTRoundDone = true
	}
}

// checkFullPipe ends startup once three rounds in a row grew the
// bandwidth estimate by less than a quarter: the pipe is full.
func (s *Sender) checkFullPipe() {
	if bw := s.bw.best(); bw >= s.fullBw*fullBwGrowth {
		s.fullBw = bw
		s.fullBwCount = 0
		return
	}
	s.fullBwCount++
	if s.fullBwCount >= fullBwRounds {
		s.filledPipe = true
		s.mode = drain
		s.pacingGain = drainGain
		s.cwndGain = startupGain
	}
}

func (s *Sender) updateMode(inflight congestion.ByteCount, now congestion.Time) {
	if s.mode == drain && inflight <= s.bdp(1) {
		s.enterProbeBW(now)
	}
	if s.mode == probeRTT {
		s.handleProbeRTT(inflight, now)
	}
}

func (s *Sender) enterProbeBW(now congestion.Time) {
	s.mode = probeBW
	s.cwndGain = cwndGain
	// Start in a random cruising phase (not the drain right after the
	// probe), so flows that enter together do not probe together.
	s.cycleIndex = 2 + int(uint64(now)%uint64(len(probeBWGains)-2))
	s.pacingGain = probeBWGains[s.cycleIndex]
	s.cycleStamp = now
}

// advanceCycle moves to the next ProbeBW phase after a round trip, with
// the draft's two refinements: the probing phase lasts until it has put
// 1.25 BDP in flight (or lost), and the draining phase ends early once
// the queue is gone.
func (s *Sender) advanceCycle(inflight congestion.ByteCount, now congestion.Time) {
	elapsed := s.minRTT == 0 || now.Sub(s.cycleStamp) > s.minRTT
	switch g := s.pacingGain; {
	case g > 1 && !(elapsed && inflight >= s.bdp(g)):
		return
	case g < 1 && !elapsed && inflight > s.bdp(1):
		return
	case g == 1 && !elapsed:
		return
	}
	s.cycleIndex = (s.cycleIndex + 1) % len(probeBWGains)
	s.pacingGain = probeBWGains[s.cycleIndex]
	s.cycleStamp = now
}

// enterProbeRTT starts draining the queue to see the path's own round
// trip, when the minimum has not been seen for ten seconds.
func (s *Sender) enterProbeRTT() {
	s.mode = probeRTT
	s.pacingGain = 1
	s.cwndGain = 1
	s.priorCwnd = s.saveCwnd()
	s.probeRTTDone = 0
	s.probeRTTRoundDone = false
}

// handleProbeRTT holds the window at four packets for 200 ms and one round
// trip, so the queue drains and the path's own round trip can be seen.
func (s *Sender) handleProbeRTT(inflight congestion.ByteCount, now congestion.Time) {
	if s.probeRTTDone == 0 {
		if inflight <= s.minCwnd() {
			s.probeRTTDone = now.Add(probeRTTDuration)
			s.probeRTTRoundDone = false
		}
		return
	}
	if s.probeRTTRoundDone && !now.Before(s.probeRTTDone) {
		s.minRTTStamp = now
		s.cwnd = max(s.cwnd, s.priorCwnd)
		if s.filledPipe {
			s.enterProbeBW(now)
		} else {
			s.mode = startup
			s.pacingGain = startupGain
			s.cwndGain = startupGain
		}
	}
}

// setCwnd grows the window toward cwndGain BDPs plus one pacing burst,
// never below four packets; in packet conservation it grows by what is
// acked only.
//
// The burst is what Linux BBR calls its quantization budget, sized for
// quic-go: its pacing timer fires no sooner than MinPacingDelay, so
// packets leave in bursts of about two milliseconds' worth, and the window
// must let one be in flight while earlier ones are still being acked.
// Without it a path whose round trip is far below a millisecond (a LAN,
// loopback, a data centre) gets a window of a few packets, while the
// receiver's CPU, processing packets in batches, acks them a millisecond
// later: the window, not the path, would set the rate (38 Mbit/s of
// 1 Gbit/s in TestFillsAFastPathWithBatchedAcks). Linux budgets three of
// its bursts, which are at most 64 KB; three of quic-go's two-millisecond
// ones would queue up to 6 ms at such a receiver and overflow quic-go's
// 256-packet receive queue.
func (s *Sender) setCwnd(acked, inflight congestion.ByteCount) {
	target := s.bdp(s.cwndGain) + s.quantum()
	switch {
	case s.conservation:
		s.cwnd = max(s.cwnd, inflight+acked)
	case s.filledPipe:
		s.cwnd = min(s.cwnd+acked, target)
	case s.cwnd < target || s.delivered < initialCwndPkts*s.mss:
		s.cwnd += acked
	}
	s.cwnd = min(max(s.cwnd, s.minCwnd()), maxCwndPackets*s.mss)
	if s.mode == probeRTT {
		s.cwnd = min(s.cwnd, s.minCwnd())
	}
}

// bdp is gain bandwidth-delay products; before the first measurement, the
// initial window.
func (s *Sender) bdp(gain float64) congestion.ByteCount {
	bw := s.bw.best()
	if bw == 0 || s.minRTT == 0 {
		return initialCwndPkts * s.mss
	}
	return congestion.ByteCount(gain * bw * s.minRTT.Seconds())
}

func (s *Sender) minCwnd() congestion.ByteCount { return minCwndPackets * s.mss }

// quantum is what the pacer sends in one timer period at the current
// rate, at least two packets.
func (s *Sender) quantum() congestion.ByteCount {
	return max(congestion.ByteCount(s.pacingRate()*burstPeriod.Seconds()), 2*s.mss)
}

// pacingRate is the rate packets leave at, bytes per second: the gain
// times the bandwidth estimate; before one exists, the startup gain times
// the initial window per millisecond (the QUIC handshake's own round trip
// is no guide on a path it has not measured yet).
//
// It is never below the initial window per round trip (per millisecond at
// least), what a new connection may send. The end of a tunnel that mostly
// receives sends little of its own: acknowledgements, which no controller
// holds back, and flow-control updates (MAX_DATA, MAX_STREAM_DATA), which
// are congestion-controlled. Its estimate is the rate of those — about a
// packet per round trip — and nothing marks them app-limited, since they
// come without long pauses. Paced at that rate, the updates fell behind,
// and the other end, out of flow-control credit, stalled: BBR on both ends
// moved 0.2 Gbit/s across the bench's 20 ms link and 0.95 with this floor
// (docs/BENCHMARKS.md, "BBR").
func (s *Sender) pacingRate() float64 {
	bw := s.bw.best()
	if bw == 0 {
		return startupGain * float64(initialCwndPkts*s.mss) / 0.001
	}
	return max(s.pacingGain*bw, s.floorRate())
}

// floorRate is the initial window per minimum round trip, or per
// millisecond on a faster path.
func (s *Sender) floorRate() float64 {
	return float64(initialCwndPkts*s.mss) / max(s.minRTT, time.Millisecond).Seconds()
}

// OnCongestionEvent handles a lost packet (lostBytes > 0; 0 is an ECN
// mark, which BBRv1 ignores). The rate stays what the model says; the
// window does not. On the first loss of a flight the window drops to what
// is still in flight and, for one round trip, grows only by what is acked
// (packet conservation); further losses in the flight take their bytes
// off it; when a packet sent after the first loss is acked, the window
// from before comes back. This is BBRv1's loss recovery as the draft and
// Linux have it; without it, a sender whose estimate is a little above
// what the receiver can take would keep its queue overflowing.
func (s *Sender) OnCongestionEvent(pn congestion.PacketNumber, lostBytes, priorInFlight congestion.ByteCount) {
	s.sent.remove(pn)
	if lostBytes == 0 {
		return
	}
	if !s.inRecovery {
		s.inRecovery = true
		s.recoveryEnd = s.largestSent
		s.priorCwnd = s.saveCwnd()
		s.cwnd = max(priorInFlight-min(lostBytes, priorInFlight), s.minCwnd())
		s.conservation = true
		s.conservationEndRound = s.rounds + 1
		return
	}
	s.cwnd = max(s.cwnd-min(lostBytes, s.cwnd), s.minCwnd())
}

// saveCwnd is the window to come back to after recovery or ProbeRTT:
// what it was, unless it is already cut for one of them.
func (s *Sender) saveCwnd() congestion.ByteCount {
	if !s.inRecovery && s.mode != probeRTT {
		return s.cwnd
	}
	return max(s.priorCwnd, s.cwnd)
}

// OnRetransmissionTimeout: a probe timeout with retransmissions means the
// path stopped delivering; restart from the minimum window.
func (s *Sender) OnRetransmissionTimeout(packetsRetransmitted bool) {
	if packetsRetransmitted {
		s.cwnd = s.minCwnd()
	}
}

// CanSend reports whether the window has room.
func (s *Sender) CanSend(bytesInFlight congestion.ByteCount) bool {
	ok := bytesInFlight < s.cwnd
	if !ok {
		s.cwndBlocked = true
	}
	return ok
}

// HasPacingBudget reports whether the pacer lets a full packet go now.
func (s *Sender) HasPacingBudget(now congestion.Time) bool {
	return s.pacer.budget(now, s.pacingRate()) >= s.mss
}

// TimeUntilSend is when the pacer lets the next packet go.
func (s *Sender) TimeUntilSend(congestion.ByteCount) congestion.Time {
	return s.pacer.next(s.pacingRate())
}

// SetMaxDatagramSize follows path MTU discovery.
func (s *Sender) SetMaxDatagramSize(size congestion.ByteCount) {
	if s.cwnd == initialCwndPkts*s.mss {
		s.cwnd = initialCwndPkts * size
	}
	s.mss = size
	s.pacer.mss = size
}

// MaybeExitSlowStart is NewReno's; BBR leaves startup by its own test.
func (s *Sender) MaybeExitSlowStart() {}

// OnSpuriousLoss: a packet thought lost was acked late. BBR did not slow
// down for the loss, so there is nothing to undo.
func (s *Sender) OnSpuriousLoss(congestion.PacketNumber) {}

// InSlowStart reports whether the sender is in BBR's startup.
func (s *Sender) InSlowStart() bool { return s.mode == startup }

// InRecovery reports whether the sender is in loss recovery.
func (s *Sender) InRecovery() bool { return s.inRecovery }

// GetCongestionWindow returns the window, in bytes.
func (s *Sender) GetCongestionWindow() congestion.ByteCount { return s.cwnd }

// maxFilter is the highest value of the last bwWindowRounds round trips:
// one slot per round, so it forgets a round's maximum exactly that many
// rounds later.
type maxFilter struct {
	slots [bwWindowRounds]struct {
		round uint64
		value float64
	}
	last uint64 // the newest round that has a value
}

func (f *maxFilter) update(round uint64, v float64) {
	slot := &f.slots[round%uint64(len(f.slots))]
	if slot.round != round {
		slot.round, slot.value = round, 0
	}
	slot.value = max(slot.value, v)
	f.last = max(f.last, round)
}

func (f *maxFilter) best() float64 {
	var best float64
	for _, slot := range f.slots {
		if slot.round+uint64(len(f.slots)) > f.last && slot.value > best {
			best = slot.value
		}
	}
	return best
}

// pacer spreads packets at the pacing rate, allowing a burst of one timer
// period (quic-go arms its pacing timer no sooner than MinPacingDelay) or
// ten packets, whichever is more.
type pacer struct {
	mss        congestion.ByteCount
	lastSent   congestion.Time
	budgetLeft congestion.ByteCount // at lastSent, after that packet
}

func (p *pacer) maxBurst(rate float64) congestion.ByteCount {
	return max(congestion.ByteCount(rate*burstPeriod.Seconds()), 10*p.mss)
}

func (p *pacer) budget(now congestion.Time, rate float64) congestion.ByteCount {
	burst := p.maxBurst(rate)
	if p.lastSent == 0 {
		return burst
	}
	added := rate * now.Sub(p.lastSent).Seconds()
	if added >= float64(burst) {
		return burst
	}
	return min(burst, p.budgetLeft+congestion.ByteCount(added))
}

// idle reports whether nothing was sent for longer than two timer periods
// (the pacing timer can fire that late) and two packets' time at rate:
// longer than pacing ever holds a packet back.
func (p *pacer) idle(now congestion.Time, rate float64) bool {
	if p.lastSent == 0 {
		return true
	}
	pause := max(2*burstPeriod, time.Duration(2*float64(p.mss)/rate*1e9))
	return now.Sub(p.lastSent) > pause
}

func (p *pacer) sent(now congestion.Time, size congestion.ByteCount, rate float64) {
	budget := p.budget(now, rate)
	p.budgetLeft = budget - min(size, budget)
	p.lastSent = now
}

func (p *pacer) next(rate float64) congestion.Time {
	if p.lastSent == 0 || p.budgetLeft >= p.mss {
		return 0
	}
	wait := time.Duration(math.Ceil(float64(p.mss-p.budgetLeft) / rate * 1e9))
	return p.lastSent.Add(max(congestion.MinPacingDelay, wait))
}
