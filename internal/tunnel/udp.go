package tunnel

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quicport/quicport/internal/proto"
)

// UDP defaults.
const (
	DefaultUDPIdleTimeout = 60 * time.Second
	DefaultUDPMaxFlows    = 1024
	// flowQueue and flowQueueBytes bound the datagrams waiting for one
	// flow's stream (in batches, as they were read, and framed bytes);
	// beyond them datagrams are dropped, as a congested UDP path would.
	flowQueue      = 256
	flowQueueBytes = 512 << 10
	// batchBytes is how much queued datagram data one stream write carries.
	batchBytes = 64 << 10
	// udpReceiveBuffer is the receive buffer of the sockets a UDP forward
	// listens and dials on: at the default (about 208 KB, some 90
	// datagrams) a few milliseconds without the CPU drop a fast flow's
	// datagrams before quicport reads them.
	udpReceiveBuffer = 4 << 20
)

// UDPListener turns datagrams arriving on a socket into virtual
// connections: one stream per source address, datagrams framed on it, and
// replies sent back to that source. It serves the side of a UDP forward
// that listens (the server for remote forwards, the client for local ones).
type UDPListener struct {
	// Conn is the listening socket. Run does not close it.
	Conn *net.UDPConn
	// Open opens the stream of a new flow (with its header written).
	Open func(ctx context.Context) (Stream, uint32, error)
	// Closed, if set, is called when a flow ends.
	Closed func(id uint32, reason proto.CloseReason)
	// IdleTimeout ends a flow after silence in both directions
	// (default 60 s). MaxFlows caps concurrent flows (default 1024).
	IdleTimeout time.Duration
	MaxFlows    int
	Log         *slog.Logger
	// Count receives the datagram payload bytes as they move.
	Count Counters
	// Dropped, if set, counts the datagrams dropped on their way into the
	// tunnel: their flow's stream was backed up, or there was no room for
	// a new flow.
	Dropped *atomic.Uint64

	mu    sync.Mutex
	flows map[netip.AddrPort]*flow
	wg    sync.WaitGroup
}

// flow is one virtual connection.
type flow struct {
	src    netip.AddrPort
	out    chan chunk
	queued atomic.Int64 // framed bytes in out
	last   atomic.Int64 // unix nanoseconds of the last datagram either way
	stop   context.CancelFunc
	// Only Run touches these: the batch it is filling, and whether the
	// flow is on its list of flows the current read added to.
	next    chunk
	inBatch bool
}

// chunk is datagrams framed for a flow's stream, handed from the
// listener's read loop to the flow's goroutine at once: those of one read,
// or as many as one stream write should carry.
type chunk struct {
	b       []byte // the frames
	payload int    // their datagrams' bytes
	n       int    // how many datagrams
}

// add frames p into the batch being filled, queueing that batch first if
// it is already as large as one stream write should be. room is how many
// datagrams the read has left, p included, to size a new batch's buffer.
// It returns how many datagrams it dropped: p when the flow's queue has no
// room for it, and a batch the queue could not take.
func (f *flow) add(p []byte, room int) (dropped int) {
	size := proto.DatagramHeaderLen + len(p)
	if len(f.next.b) > 0 && len(f.next.b)+size > batchBytes {
		dropped = f.send()
	}
	if f.queued.Load()+int64(len(f.next.b)+size) > flowQueueBytes {
		return dropped + 1
	}
	if f.next.b == nil {
		f.next.b = make([]byte, 0, min(room*size, batchBytes))
	}
	f.next.b, _ = proto.AppendDatagram(f.next.b, p)
	f.next.payload += len(p)
	f.next.n++
	return dropped
}

// send queues the batch being filled for the flow's goroutine. It returns
// how many datagrams it dropped because the queue was full.
func (f *flow) send() int {
	c := f.next
	f.next = chunk{}
	if c.n == 0 {
		return 0
	}
	f.queued.Add(int64(len(c.b)))
	select {
	case f.out <- c:
		return 0
	default:
		f.queued.Add(-int64(len(c.b)))
		return c.n
	}
}

func (f *flow) touch() { f.last.Store(time.Now().UnixNano()) }

// Run reads datagrams until ctx ends or the socket fails, then ends every
// flow and waits for them. To stop it, cancel ctx.
func (u *UDPListener) Run(ctx context.Context) error {
	if u.IdleTimeout == 0 {
		u.IdleTimeout = DefaultUDPIdleTimeout
	}
	if u.MaxFlows == 0 {
		u.MaxFlows = DefaultUDPMaxFlows
	}
	if u.Log == nil {
		u.Log = slog.New(slog.DiscardHandler)
	}
	u.flows = make(map[netip.AddrPort]*flow)
	growReceiveBuffer(u.Conn, udpReceiveBuffer)
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		u.wg.Wait()
	}()
	// Unblock the read below when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = u.Conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		u.expire(ctx)
	}()

	r := newDatagramReader(u.Conn)
	refusedLogged := time.Time{}
	var filled []*flow // the flows this batch added to
	for {
		n, err := r.read()
		if err != nil {
			if ctx.Err() != nil {
				_ = u.Conn.SetReadDeadline(time.Time{})
				return nil
			}
			return err
		}
		var f *flow // the last datagram's
		for i := range n {
			p, src := r.datagram(i)
			if f == nil || f.src != src {
				var ok bool
				if f, ok = u.flow(ctx, src); !ok {
					u.drop(1)
					if time.Since(refusedLogged) > time.Second {
						u.Log.Warn("UDP flow limit reached; dropping datagrams from new sources", "from", src.String(), "max_flows", u.MaxFlows)
						refusedLogged = time.Now()
					}
					continue
				}
			}
			if !f.inBatch {
				f.inBatch = true
				filled = append(filled, f)
			}
			// A backed-up flow's stream drops datagrams, as UDP may.
			u.drop(f.add(p, n-i))
		}
		r.release()
		for _, f := range filled {
			f.inBatch = false
			f.touch()
			u.drop(f.send())
		}
		filled = filled[:0]
	}
}

func (u *UDPListener) drop(n int) {
	if n > 0 && u.Dropped != nil {
		u.Dropped.Add(uint64(n))
	}
}

// flow returns the flow of src, starting one if there is room.
func (u *UDPListener) flow(ctx context.Context, src netip.AddrPort) (*flow, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if f, ok := u.flows[src]; ok {
		return f, true
	}
	if len(u.flows) >= u.MaxFlows {
		return nil, false
	}
	fctx, stop := context.WithCancel(ctx)
	f := &flow{src: src, out: make(chan chunk, flowQueue), stop: stop}
	f.touch()
	u.flows[src] = f
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		u.serve(fctx, f)
		stop()
		u.mu.Lock()
		delete(u.flows, src)
		u.mu.Unlock()
	}()
	return f, true
}

// serve carries one flow: datagrams from its queue into the stream, and
// frames from the stream back to the source.
func (u *UDPListener) serve(ctx context.Context, f *flow) {
	st, id, err := u.Open(ctx)
	if err != nil {
		u.Log.Debug("open UDP flow", "from", f.src.String(), "err", err)
		return
	}
	log := u.Log.With("conn_id", id, "from", f.src.String())
	log.Debug("UDP flow open")
	// A flow that ends (idle, or its listener stops: a hand-over) must not
	// wait in a write its peer is not reading.
	defer context.AfterFunc(ctx, func() { st.CancelWrite(proto.StreamDone) })()
	reason := proto.ReasonNormal
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := newDatagramWriter(st, u.Conn, f.src)
		for {
			// Counted as it arrives from the tunnel, before it is passed
			// on: a reply must never be counted before its request.
			err := w.next(func(n int) { f.touch(); add(u.Count.FromStream, n) })
			if err != nil {
				if errors.Is(err, proto.ErrMalformed) {
					log.Warn("closing UDP flow", "reason", "protocol error", "err", err)
				}
				return
			}
		}
	}()
	var frame []byte
loop:
	for {
		select {
		case <-ctx.Done():
			if u.idle(f) {
				reason = proto.ReasonTimeout
			}
			break loop
		case <-done:
			break loop
		case c := <-f.out:
			// Write whatever else is already queued too, so a burst of
			// datagrams costs one stream write, not one each.
			b, payload, taken := c.b, c.payload, len(c.b)
			if len(f.out) > 0 {
				frame = append(frame[:0], c.b...)
			batch:
				for len(frame) < batchBytes {
					select {
					case c := <-f.out:
						frame = append(frame, c.b...)
						payload += c.payload
						taken += len(c.b)
					default:
						break batch
					}
				}
				b = frame
			}
			f.queued.Add(-int64(taken))
			if _, err := st.Write(b); err != nil {
				if ctx.Err() == nil {
					reason = proto.ReasonError
				} else if u.idle(f) {
					reason = proto.ReasonTimeout
				}
				break loop
			}
			add(u.Count.ToStream, payload)
		}
	}
	st.CancelRead(proto.StreamDone)
	st.CancelWrite(proto.StreamDone)
	<-done
	log.Debug("UDP flow closed", "reason", reason)
	if u.Closed != nil {
		u.Closed(id, reason)
	}
}

func (u *UDPListener) idle(f *flow) bool {
	return time.Since(time.Unix(0, f.last.Load())) >= u.IdleTimeout
}

// expire ends flows that have been silent for IdleTimeout.
func (u *UDPListener) expire(ctx context.Context) {
	t := time.NewTicker(max(u.IdleTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		u.mu.Lock()
		for _, f := range u.flows {
			if u.idle(f) {
				f.stop()
			}
		}
		u.mu.Unlock()
	}
}

// A run of equal-sized datagrams sent in one system call (segmenter) is at
// most maxSegments datagrams (the kernel's UDP_MAX_SEGMENTS) and maxRun
// bytes (within an IP packet's 64 KiB). Runs form from what one stream read
// brought in: up to frameReadAhead bytes.
const (
	maxSegments    = 64
	maxRun         = 60000
	frameReadAhead = 16 << 10
)

// datagramWriter passes the datagrams framed on a flow's stream on to a UDP
// socket. Datagrams of the same size that have already arrived together go
// out in one system call (segmenter); the rest one each.
type datagramWriter struct {
	frames *bufio.Reader
	run    []byte // the datagrams to send; room for the largest one
	gso    *segmenter
	conn   *net.UDPConn
	to     netip.AddrPort // the destination; zero when conn is connected
}

func newDatagramWriter(s io.Reader, conn *net.UDPConn, to netip.AddrPort) *datagramWriter {
	return &datagramWriter{frames: bufio.NewReaderSize(s, frameReadAhead), run: make([]byte, 0, proto.MaxDatagram),
		gso: newSegmenter(), conn: conn, to: to}
}

// next reads the next datagram, and those of its size already read after
// it, calls got with each one's size, and sends them. It fails only when
// the stream does (proto.ErrMalformed for a bad frame).
func (w *datagramWriter) next(got func(n int)) error {
	n, err := proto.ReadDatagram(w.frames, w.run[:cap(w.run)])
	if err != nil {
		return err
	}
	got(n)
	if n == 0 {
		w.send(nil) // an empty datagram is one too
		return nil
	}
	w.run = w.run[:n]
	for len(w.run)+n <= maxRun && len(w.run)/n < maxSegments && w.nextIs(n) {
		m, _ := proto.ReadDatagram(w.frames, w.run[len(w.run):cap(w.run)]) // buffered whole: cannot fail
		w.run = w.run[:len(w.run)+m]
		got(m)
	}
	if len(w.run) > n && w.gso.write(w.conn, w.run, n, w.to) {
		return nil
	}
	// A failed write (ECONNREFUSED from an earlier datagram and the like)
	// loses that datagram only: UDP has no connection to lose, so go on.
	for run := w.run; len(run) > 0; run = run[n:] {
		w.send(run[:n])
	}
	return nil
}

// nextIs reports whether a whole frame of an n-byte datagram has been read
// from the stream and is next.
func (w *datagramWriter) nextIs(n int) bool {
	if w.frames.Buffered() < proto.DatagramHeaderLen+n {
		return false
	}
	hdr, err := w.frames.Peek(proto.DatagramHeaderLen)
	return err == nil && proto.DatagramLen(hdr) == uint32(n)
}

func (w *datagramWriter) send(p []byte) {
	if w.to.IsValid() {
		_, _ = w.conn.WriteToUDPAddrPort(p, w.to)
	} else {
		_, _ = w.conn.Write(p)
	}
}

// RelayUDP carries one flow on the dialing side: frames from s are sent on
// conn (connected to the destination) and datagrams from conn come back as
// frames. It ends when s ends, conn fails, or both have been silent for
// idle; then it closes conn and finishes s.
func RelayUDP(conn *net.UDPConn, s Stream, idle time.Duration, count Counters) error {
	if idle == 0 {
		idle = DefaultUDPIdleTimeout
	}
	growReceiveBuffer(conn, udpReceiveBuffer)
	var last atomic.Int64
	touch := func() { last.Store(time.Now().UnixNano()) }
	touch()
	var firstErr error
	var once sync.Once
	finish := func(err error) {
		once.Do(func() {
			firstErr = err
			s.CancelRead(proto.StreamDone)
			s.CancelWrite(proto.StreamDone)
			conn.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w := newDatagramWriter(s, conn, netip.AddrPort{})
		for {
			// Counted as it arrives from the tunnel, before it is passed
			// on: the reply to it may come back and be counted as sent
			// before the write even returns.
			err := w.next(func(n int) { touch(); add(count.FromStream, n) })
			if err != nil {
				if errors.Is(err, proto.ErrMalformed) {
					finish(err)
				} else {
					finish(nil) // the listening side ended the flow
				}
				return
			}
		}
	}()
	r := newDatagramReader(conn)
	var frame []byte
	for {
		_ = conn.SetReadDeadline(time.Unix(0, last.Load()).Add(idle))
		n, err := r.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if time.Since(time.Unix(0, last.Load())) >= idle {
					finish(nil)
					break
				}
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				break
			}
			continue // ICMP errors surface as read errors on a connected socket
		}
		touch()
		// The datagrams of one read go in one stream write.
		if err := writeDatagrams(s, r, n, &frame, count.ToStream); err != nil {
			finish(nil)
			break
		}
	}
	<-done
	return firstErr
}

// writeDatagrams frames the n datagrams of r's last read into frame, gives
// r's batch back, and writes them to s in one write: a stream that cannot
// take them holds a copy of what one read brought, not a whole batch of
// buffers. It counts their bytes once written.
func writeDatagrams(s io.Writer, r *datagramReader, n int, frame *[]byte, count []*atomic.Uint64) error {
	*frame = (*frame)[:0]
	payload := 0
	for i := range n {
		p, _ := r.datagram(i)
		*frame, _ = proto.AppendDatagram(*frame, p)
		payload += len(p)
	}
	r.release()
	_, err := s.Write(*frame)
	if cap(*frame) > batchBytes {
		*frame = nil // large datagrams came in a burst: keep no megabyte per flow
	}
	if err != nil {
		return err
	}
	add(count, payload)
	return nil
}

func add(counters []*atomic.Uint64, n int) {
	for _, c := range counters {
		c.Add(uint64(n))
	}
}
