package quic

// quicport's tests of its patch to quic-go (third_party/quic-go.patch).
// .ci/run runs them: go test -race . ./internal/ackhandler in third_party/quic-go.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go/internal/ackhandler"
	"github.com/quic-go/quic-go/internal/monotime"
	"github.com/quic-go/quic-go/internal/protocol"
	"github.com/quic-go/quic-go/internal/utils"
	"github.com/quic-go/quic-go/internal/wire"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// fill pushes packets received at start, start+step, … until one is
// refused (or twice the cap is taken), and returns how many were taken.
func fill(q *receivedPacketQueue, r *pathReceiver, start monotime.Time, step time.Duration) int {
	for i := 0; ; i++ {
		if i > 2*protocol.MaxConnQueuedPackets || !q.Push(receivedPacket{rcvTime: start.Add(time.Duration(i) * step)}, r) {
			return i
		}
	}
}

func TestQueueWithoutAnRTTIsUpstreams(t *testing.T) {
	var q receivedPacketQueue
	r := &pathReceiver{}
	q.Init(r)
	if n := fill(&q, r, monotime.Now(), time.Microsecond); n != protocol.MaxConnUnprocessedPackets {
		t.Fatalf("with no RTT yet the queue took %d packets, want upstream's %d", n, protocol.MaxConnUnprocessedPackets)
	}
}

func TestQueueHoldsOneRoundTrip(t *testing.T) {
	var q receivedPacketQueue
	r := &pathReceiver{}
	q.Init(r)
	q.SetMaxWait(20 * time.Millisecond)
	// 1,000 packets arriving 10 µs apart span 10 ms: all are taken.
	start := monotime.Now()
	for i := range 1000 {
		if !q.Push(receivedPacket{rcvTime: start.Add(time.Duration(i) * 10 * time.Microsecond)}, r) {
			t.Fatalf("packet %d of 1000, 10 µs apart, was refused with a 20 ms round trip", i)
		}
	}
	// One that comes when the oldest has waited 20 ms is refused…
	if q.Push(receivedPacket{rcvTime: start.Add(20 * time.Millisecond)}, r) {
		t.Fatal("a packet was taken when the oldest had waited a whole round trip")
	}
	// …and taken again once the run loop has caught up on the oldest.
	for range 500 {
		q.Pop()
	}
	if !q.Push(receivedPacket{rcvTime: start.Add(20 * time.Millisecond)}, r) {
		t.Fatal("a packet was refused when the oldest had waited 15 ms of a 20 ms round trip")
	}
}

func TestQueueIsCapped(t *testing.T) {
	var q receivedPacketQueue
	r := &pathReceiver{}
	q.Init(r)
	q.SetMaxWait(time.Hour) // a peer that makes its round trip look long
	if n := fill(&q, r, monotime.Now(), time.Nanosecond); n != protocol.MaxConnQueuedPackets {
		t.Fatalf("the queue took %d packets, want at most %d", n, protocol.MaxConnQueuedPackets)
	}
}

func TestQueueLetsGoOfItsStorage(t *testing.T) {
	var q receivedPacketQueue
	r := &pathReceiver{}
	q.Init(r)
	q.SetMaxWait(time.Second)
	start := monotime.Now()
	fill(&q, r, start, time.Microsecond)
	for !q.Empty() {
		q.Pop()
	}
	if q.grown {
		t.Fatal("the queue emptied and kept the storage of 4,096 packets")
	}
	// Back to upstream's queue until it has to grow again.
	if !q.Push(receivedPacket{rcvTime: start.Add(time.Second)}, r) {
		t.Fatal("an emptied queue refused a packet")
	}
}

// A real connection gives its queue its min RTT once it has one.
func TestConnectionGivesItsQueueTheMinRTT(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, server := connPair(ctx, t, nil)
	// A round trip of data each way, so both ends have RTT samples.
	go func() {
		s, err := server.AcceptStream(ctx)
		if err == nil {
			io.Copy(s, s)
			s.Close()
		}
	}()
	s, err := client.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write(make([]byte, 100_000))
	s.Close()
	if _, err := io.Copy(io.Discard, s); err != nil {
		t.Fatal(err)
	}
	client.CloseWithError(0, "")
	server.CloseWithError(0, "")
	for _, c := range []*Conn{client, server} {
		<-c.Context().Done()
		c.receivedPackets.mx.Lock()
		got := c.receivedPackets.maxWait
		c.receivedPackets.mx.Unlock()
		// The queue hears of a new minimum when the run loop next turns,
		// so the last ack before the close may have lowered it since.
		if minRTT := c.rttStats.MinRTT(); minRTT == 0 || got < minRTT || got > time.Second {
			t.Errorf("the queue's wait is %v, the connection's min RTT %v", got, minRTT)
		}
	}
}

// connPair connects a client to a server listening on loopback with
// serverConf; both connections and the listener close when the test ends.
func connPair(ctx context.Context, t *testing.T, serverConf *Config) (client, server *Conn) {
	t.Helper()
	ln, err := ListenAddr("127.0.0.1:0", serverTLS(t), serverConf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	client, err = DialAddr(ctx, ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"test"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.CloseWithError(0, "") })
	server, err = ln.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.CloseWithError(0, "") })
	return client, server
}

func serverTLS(t *testing.T) *tls.Config {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}},
		NextProtos:   []string{"test"},
	}
}

// A connection whose stalled streams hold seven eighths of its window
// unread still raises the window as its other streams read: upstream's
// rule waits for a quarter of the window to be read since the last
// raise, which the last eighth can never make, and the whole connection
// would wait for the stalled readers.
func TestConnectionWindowRisesPastStalledStreams(t *testing.T) {
	const window = 8 << 20
	now := monotime.Now()
	fc := newConnectionFlowController(window, window, func(protocol.ByteCount) bool { return true }, &utils.RTTStats{}, utils.DefaultLogger)
	stalled, other := protocol.ByteCount(7<<20), protocol.ByteCount(1<<20)
	if err := fc.IncrementHighestReceived(stalled+other, now); err != nil {
		t.Fatal(err)
	}
	// The other streams read all they got; the window is used up.
	if !fc.AddBytesRead(other) {
		t.Fatal("no window update due after the unpinned eighth was read, with the peer out of credit")
	}
	if got, want := fc.GetWindowUpdate(now), other+window; got != want {
		t.Fatalf("window raised to %d, want %d (what was read plus the window, never more)", got, want)
	}
	if fc.GetWindowUpdate(now) != 0 {
		t.Error("a second update with nothing read since")
	}
	// With plenty of credit left, upstream's rule alone decides: reading
	// less than a quarter since the last raise raises nothing.
	fresh := newConnectionFlowController(window, window, func(protocol.ByteCount) bool { return true }, &utils.RTTStats{}, utils.DefaultLogger)
	if err := fresh.IncrementHighestReceived(1<<20, now); err != nil {
		t.Fatal(err)
	}
	if fresh.AddBytesRead(1<<20) || fresh.GetWindowUpdate(now) != 0 {
		t.Error("an update with three quarters of the credit left and an eighth read")
	}
}

// A MAX_STREAMS frame waits for a packet sent anyway: it adds nothing to
// send, rides along with the next packet that carries frames, gives way
// to a frame that grants more, and goes out at once when released.
func TestHeldMaxStreamsRideAlong(t *testing.T) {
	const v = protocol.Version1
	f := newFramer(newConnectionFlowController(1<<20, 1<<20, nil, &utils.RTTStats{}, utils.DefaultLogger))
	held := &wire.MaxStreamsFrame{Type: protocol.StreamTypeBidi, MaxStreamNum: 10}
	f.HoldMaxStreams(held)
	if f.HasData() {
		t.Fatal("a held MAX_STREAMS frame makes the framer want to send")
	}
	f.QueueControlFrame(&wire.PingFrame{})
	frames, _ := f.AppendControlFrames(nil, 1000, monotime.Now(), v)
	if len(frames) != 2 || frames[1].Frame != held {
		t.Fatalf("a packet sent for a PING carries %v, want the PING and the held frame", frames)
	}
	if frames, _ := f.AppendControlFrames(nil, 1000, monotime.Now(), v); len(frames) != 0 {
		t.Fatalf("the held frame went out twice: %v", frames)
	}

	f.HoldMaxStreams(&wire.MaxStreamsFrame{Type: protocol.StreamTypeBidi, MaxStreamNum: 11})
	f.QueueControlFrame(&wire.MaxStreamsFrame{Type: protocol.StreamTypeBidi, MaxStreamNum: 12})
	frames, _ = f.AppendControlFrames(nil, 1000, monotime.Now(), v)
	if len(frames) != 1 || frames[0].Frame.(*wire.MaxStreamsFrame).MaxStreamNum != 12 {
		t.Fatalf("got %v, want only the frame sent at once (it grants more than the held one)", frames)
	}

	if f.ReleaseHeldMaxStreams() {
		t.Error("released a frame when none was held")
	}
	f.HoldMaxStreams(&wire.MaxStreamsFrame{Type: protocol.StreamTypeBidi, MaxStreamNum: 13})
	if !f.ReleaseHeldMaxStreams() || !f.HasData() {
		t.Fatal("a released frame is not queued to be sent")
	}
	frames, _ = f.AppendControlFrames(nil, 1000, monotime.Now(), v)
	if len(frames) != 1 || frames[0].Frame.(*wire.MaxStreamsFrame).MaxStreamNum != 13 {
		t.Fatalf("got %v after the release, want the held frame", frames)
	}
}

// Over a real connection: while streams come and go one after another
// the new stream limit waits for a packet sent anyway, until the peer
// has used half of the limit it knows, when it is sent at once; and a
// peer that needs the credit held back gets it by asking
// (STREAMS_BLOCKED), even from a side that sends nothing else.
func TestStreamLimitWaitsUntilThePeerNeedsIt(t *testing.T) {
	const limit = 8
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent := &packetsSent{}
	client, server := connPair(ctx, t, &Config{
		MaxIncomingStreams: limit,
		Tracer:             func(context.Context, bool, ConnectionID) qlogwriter.Trace { return sent },
	})
	// The server reads each stream to its end and then ends its side; it
	// never sends data.
	go func() {
		for {
			s, err := server.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, s); s.Close() }()
		}
	}()
	incoming := server.streamsMap.incomingBidiStreams
	deleted := func(n int) { // waits for the server to have deleted n streams in all
		t.Helper()
		for {
			incoming.mutex.RLock()
			done := int(incoming.nextStreamToOpen.StreamNum())-1 == n && len(incoming.streams) == 0
			incoming.mutex.RUnlock()
			if done {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("the server did not delete %d streams", n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	sentLimit := func() int {
		incoming.mutex.RLock()
		defer incoming.mutex.RUnlock()
		return int(incoming.sentMaxStream.StreamNum())
	}
	oneAfterAnother := func(n int) {
		t.Helper()
		for range n {
			s, err := client.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.Write([]byte("x"))
			s.Close()
			if _, err := io.Copy(io.Discard, s); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Four streams leave the client half of the limit: no new limit is
	// sent for its own sake (it rides along with the server's FINs).
	oneAfterAnother(4)
	deleted(4)
	time.Sleep(20 * time.Millisecond)
	if n := sent.maxStreamsAlone(); n != 0 || sentLimit() != limit {
		t.Fatalf("after 4 of %d streams the server sent %d packets for MAX_STREAMS alone and a limit of %d at once, want none (the limit stays %d)", limit, n, sentLimit(), limit)
	}
	// The fifth leaves less than half: the new limit is sent at once.
	oneAfterAnother(1)
	deleted(5)
	if got := sentLimit(); got != 5+limit {
		t.Fatalf("after 5 streams the limit sent at once is %d, want %d", got, 5+limit)
	}
	// The sixth's is held back. The client then opens a full limit's
	// worth at once, one more than the limit it surely knows allows, and
	// the server sends nothing but ACKs: the client has to ask.
	oneAfterAnother(1)
	deleted(6)
	var open []*Stream
	for range limit {
		s, err := client.OpenStreamSync(ctx)
		if err != nil {
			t.Fatalf("stream %d of %d at once: %v (the held limit was never sent)", len(open)+1, limit, err)
		}
		s.Write([]byte("x"))
		open = append(open, s)
	}
	for _, s := range open {
		s.Close()
	}
}

// packetsSent is a qlog trace that counts the 1-RTT packets sent with
// nothing but MAX_STREAMS and ACK frames in them.
type packetsSent struct {
	mu    sync.Mutex
	alone int
}

func (p *packetsSent) AddProducer() qlogwriter.Recorder { return p }
func (p *packetsSent) Close() error                     { return nil }

func (p *packetsSent) RecordEvent(ev qlogwriter.Event) {
	ps, ok := ev.(qlog.PacketSent)
	if !ok || ps.Header.PacketType != qlog.PacketType1RTT {
		return
	}
	maxStreams, other := false, false
	for _, f := range ps.Frames {
		switch f.Frame.(type) {
		case *qlog.MaxStreamsFrame:
			maxStreams = true
		case *qlog.AckFrame:
		default:
			other = true
		}
	}
	if maxStreams && !other {
		p.mu.Lock()
		p.alone++
		p.mu.Unlock()
	}
}

func (p *packetsSent) maxStreamsAlone() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.alone
}

// An ACK is due at once after two ack-eliciting packets only when they
// add up to two packets of the smallest size every path carries; smaller
// ones wait for a packet sent anyway or for max_ack_delay. Missing and
// ECN-CE marked packets are acknowledged at once, as upstream.
func TestSmallPacketsWaitForTheirAck(t *testing.T) {
	now := monotime.Now()
	queued := func(h *ackhandler.ReceivedPacketHandler) bool {
		return h.GetAckFrame(protocol.Encryption1RTT, now, true) != nil
	}
	receive := func(h *ackhandler.ReceivedPacketHandler, pn protocol.PacketNumber, ecn protocol.ECN, size protocol.ByteCount) {
		t.Helper()
		if err := h.ReceivedPacket(pn, ecn, protocol.Encryption1RTT, now, true, size); err != nil {
			t.Fatal(err)
		}
	}

	h := ackhandler.NewReceivedPacketHandler(utils.DefaultLogger)
	receive(h, 0, protocol.ECT0, 40)
	receive(h, 1, protocol.ECT0, 60)
	if queued(h) {
		t.Fatal("two small packets queued an ACK at once")
	}
	if h.GetAlarmTimeout() != now.Add(ackhandler.MaxAckDelay) {
		t.Fatal("two small packets set no ACK alarm of max_ack_delay")
	}
	if h.GetAckFrame(protocol.Encryption1RTT, now, false) == nil {
		t.Fatal("no ACK to send along with a packet sent anyway")
	}
	// Small packets that add up to two full-sized ones do queue it.
	const small = 100
	n := protocol.PacketNumber(2 * protocol.MinInitialPacketSize / small)
	for i := range n - 1 {
		receive(h, 2+i, protocol.ECT0, small)
		if queued(h) {
			t.Fatalf("ACK queued after %d bytes", (i+1)*small)
		}
	}
	receive(h, 2+n-1, protocol.ECT0, small)
	if !queued(h) {
		t.Fatal("no ACK queued after two full packets' worth of small ones")
	}

	h = ackhandler.NewReceivedPacketHandler(utils.DefaultLogger)
	receive(h, 0, protocol.ECT0, protocol.MinInitialPacketSize)
	if queued(h) {
		t.Fatal("one full-sized packet queued an ACK at once")
	}
	receive(h, 1, protocol.ECT0, protocol.MinInitialPacketSize)
	if !queued(h) {
		t.Fatal("two full-sized packets queued no ACK at once")
	}

	h = ackhandler.NewReceivedPacketHandler(utils.DefaultLogger)
	receive(h, 0, protocol.ECT0, 40)
	receive(h, 1, protocol.ECNCE, 40)
	if !queued(h) {
		t.Fatal("an ECN-CE marked packet queued no ACK at once")
	}

	h = ackhandler.NewReceivedPacketHandler(utils.DefaultLogger)
	receive(h, 0, protocol.ECT0, 40)
	h.GetAckFrame(protocol.Encryption1RTT, now, false)
	receive(h, 5, protocol.ECT0, 40) // 1 to 4 missing: newly reported missing needs the reordering threshold
	receive(h, 2, protocol.ECT0, 40)
	h.GetAckFrame(protocol.Encryption1RTT, now, false) // reports 1, 3 and 4 missing
	receive(h, 3, protocol.ECT0, 40)
	if !queued(h) {
		t.Fatal("a packet reported missing before queued no ACK at once")
	}
}

// Over a real connection: an exchange of small messages costs the side
// that answers no packet just for ACKs, while a bulk transfer is still
// acknowledged as it arrives.
func TestAcksOfSmallAndFullPackets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	counts := &ackCounts{}
	client, server := connPair(ctx, t, &Config{
		Tracer: func(context.Context, bool, ConnectionID) qlogwriter.Trace { return counts },
	})
	go func() {
		for {
			s, err := server.AcceptStream(context.Background())
			if err != nil {
				return
			}
			go func() {
				n, _ := io.Copy(io.Discard, s)
				if n < 100 {
					s.Write([]byte("answer"))
				}
				s.Close()
			}()
		}
	}()

	// Each exchange: a request in one packet, its FIN in another a moment
	// later (two small ack-eliciting packets), then the answer. Upstream
	// sends an ACK of its own after the FIN, before the answer.
	const exchanges = 40
	before := counts.snapshot()
	for range exchanges {
		s, err := client.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Write([]byte("request"))
		time.Sleep(time.Millisecond)
		s.Close()
		if _, err := io.ReadAll(s); err != nil {
			t.Fatal(err)
		}
	}
	small := counts.snapshot().sub(before)
	if small.ackOnly > exchanges/4 {
		t.Errorf("the server sent %d packets with nothing but an ACK for %d exchanges of small messages, want at most %d", small.ackOnly, exchanges, exchanges/4)
	}

	// 4 MB one way: the server's ACKs keep coming.
	before = counts.snapshot()
	s, err := client.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(make([]byte, 4<<20)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	io.ReadAll(s)
	bulk := counts.snapshot().sub(before)
	// On loopback the receiver takes packets in batches and acknowledges
	// each batch at once (upstream sends one ACK for about 33 packets
	// here); acknowledging only on max_ack_delay would send a handful.
	if bulk.ackOnly < bulk.received/64 {
		t.Errorf("the server acknowledged %d packets of a bulk transfer with %d ACK packets, want at least one for every 64", bulk.received, bulk.ackOnly)
	}
	t.Logf("small exchanges: %+v; bulk: %+v", small, bulk)
}

// ackCounts is the server's qlog trace: it counts the 1-RTT packets the
// server receives and those it sends with nothing but an ACK in them.
type ackCounts struct {
	mu     sync.Mutex
	counts ackCount
}

type ackCount struct{ received, ackOnly int }

func (c ackCount) sub(o ackCount) ackCount {
	return ackCount{c.received - o.received, c.ackOnly - o.ackOnly}
}

func (a *ackCounts) AddProducer() qlogwriter.Recorder { return a }
func (a *ackCounts) Close() error                     { return nil }

func (a *ackCounts) snapshot() ackCount {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counts
}

func (a *ackCounts) RecordEvent(ev qlogwriter.Event) {
	switch ev := ev.(type) {
	case qlog.PacketReceived:
		if ev.Header.PacketType == qlog.PacketType1RTT {
			a.mu.Lock()
			a.counts.received++
			a.mu.Unlock()
		}
	case qlog.PacketSent:
		if ev.Header.PacketType != qlog.PacketType1RTT || len(ev.Frames) == 0 {
			return
		}
		for _, f := range ev.Frames {
			if _, ok := f.Frame.(*qlog.AckFrame); !ok {
				return
			}
		}
		a.mu.Lock()
		a.counts.ackOnly++
		a.mu.Unlock()
	}
}
