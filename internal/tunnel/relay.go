// Package tunnel relays bytes between a TCP connection and a QUIC stream.
// It is shared by both ends of the tunnel and owns the rules that keep a
// session healthy: half-close is forwarded in both directions, and a relay
// that ends always finishes both directions of its stream, so unread data
// never pins the connection's flow-control window.
package tunnel

import (
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/workers"
)

// Stream is the part of *quic.Stream a relay uses. Close ends the send
// direction with a FIN; CancelRead and CancelWrite abort a direction.
// Context ends when the send direction ends, for whatever reason (its cause
// is quic.ErrStreamClosed after our own Close).
type Stream interface {
	io.ReadWriteCloser
	CancelRead(quic.StreamErrorCode)
	CancelWrite(quic.StreamErrorCode)
	// SetReliableBoundary makes a later CancelWrite deliver what was
	// written so far before the reset takes effect (RESET_STREAM_AT,
	// when both ends enable it; see QUICConfig).
	SetReliableBoundary()
	// WriteWithLimit is Write with a limiter on what each frame may
	// carry, and TryWriteAll queues p only if the flow-control window
	// has room for all of it; see streamWriter for why a relay writes
	// with these.
	WriteWithLimit(p []byte, limiter func(maxBytes int) int) (int, error)
	TryWriteAll(p []byte) error
	Context() context.Context
}

// Conn is the byte-stream side of a relay: a TCP connection, or stdin and
// stdout for ssh-proxy. CloseWrite half-closes it.
type Conn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// bufSize is the copy buffer per direction while data flows: 64 KiB moves
// bulk data in few system calls. Buffers are pooled, and a direction holds
// one only while it is busy, so an idle connection holds none, even after
// a bulk transfer (but for one rare case, see idleReader).
const bufSize = 64 << 10

// smallSize is the buffer a direction reading something it cannot poll (a
// QUIC stream, stdin) keeps for its next read while idle. Every idle
// tunneled connection holds one on each tunnel end, so it is small (4 KiB
// cost 3 KiB more per connection and side): a keystroke or a short request
// fits, and a read that fills it switches to the 64 KiB buffer. It is one
// byte short of 1 KiB because every run of full reads starts with a read
// into it: such a run ends exactly where a read filled up — which would
// hold the large buffer across the wait that follows — only if it carried
// 1,023 bytes plus a multiple of 64 KiB, never a round size like 1 KiB or
// 1 MiB that was ready at once.
const smallSize = 1<<10 - 1

var (
	bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}
	// bufsHeld counts the large buffers relays hold right now (tests check
	// that idle connections hold none).
	bufsHeld atomic.Int64
)

func getBuf() *[]byte {
	bufsHeld.Add(1)
	return bufPool.Get().(*[]byte)
}

func putBuf(b *[]byte) {
	bufsHeld.Add(-1)
	bufPool.Put(b)
}

// Counters receive a relay's bytes as they move, for live metrics: each
// chunk is added to every counter in the list. Nil lists count nothing.
type Counters struct {
	ToStream, FromStream []*atomic.Uint64
}

// Stats counts the bytes a relay moved.
type Stats struct {
	// ToStream is the number of bytes read from the TCP side and written to
	// the stream; FromStream the reverse.
	ToStream, FromStream int64
}

// Relay copies c to s and s to c until both directions end, then closes c
// and finishes s. An EOF on one side is forwarded as a half-close (FIN on
// the stream, shutdown(SHUT_WR) on TCP) and the other direction keeps
// flowing. An error in either direction aborts both: the stream is reset
// and the TCP connection reset (RST). An abort loses no byte that TCP
// would have delivered: what the TCP peer sent before it failed still
// reaches the far end before the stream's reset does (RESET_STREAM_AT),
// and what the stream delivered before its reset is sent to the TCP peer
// before the RST. Relay returns the first such error (nil after a clean
// close in both directions). It copies from c to s on one of pool's
// workers (a goroutine of its own when pool is nil) and the other way on
// the caller's goroutine.
func Relay(c Conn, s Stream, count Counters, pool *workers.Pool) (Stats, error) {
	var (
		st      Stats
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	// tcpFailed says which side failed: the TCP one (its peer reset, say)
	// or the stream (reset by the far end, or its connection lost).
	abort := func(err error, tcpFailed bool) {
		errOnce.Do(func() {
			first = err
			if tcpFailed {
				// Everything read from TCP so far was sent before the
				// failure, as part of the byte stream: deliver it.
				s.SetReliableBoundary()
			}
			s.CancelWrite(proto.StreamAborted)
			s.CancelRead(proto.StreamAborted)
			if tc, ok := c.(tcpConn); ok {
				if !tcpFailed {
					// The RST would discard what the kernel has not
					// sent yet: let it go first.
					waitSent(tc)
				}
				_ = tc.SetLinger(0) // reset, so the TCP peer knows it was not a clean end
			}
			_ = c.Close()
		})
	}
	// A direction blocked reading the TCP side notices nothing when the
	// stream's connection dies (or the peer stops reading): it would wait
	// for its TCP peer forever. The send side's context ends in both
	// cases; only our own clean Close is not a reason to abort. When the
	// far end stopped reading (STOP_SENDING), the bytes it still owes us
	// come first: it resets its own direction after them (see abort), and
	// the receiving direction aborts when it reaches that reset. Only a
	// receiving direction that has already ended is aborted here.
	var received atomic.Bool // the receiving direction has ended
	out := newOwedWriter(c)
	stopped := func() bool {
		cause := context.Cause(s.Context())
		if cause == nil || errors.Is(cause, quic.ErrStreamClosed) {
			return false
		}
		if !sendStopped(cause) || received.Load() {
			abort(cause, false)
		} else {
			// A TCP peer that does not read must not hold the relay
			// for ever with bytes that are owed to it.
			out.owe()
		}
		return true
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(s.Context(), func() {
		defer close(fired)
		stopped()
	})
	wg.Add(1)
	pool.Go(func() {
		defer wg.Done()
		n, rerr, werr := copyBuf(streamWriter{s}, c, count.ToStream)
		st.ToStream = n
		if rerr != nil || werr != nil {
			if !sendStopped(werr) { // a STOP_SENDING is the context's to handle
				abort(cmp.Or(rerr, werr), rerr != nil)
				return
			}
			// The far end stopped reading. What the TCP peer sends from
			// now on is lost, but the peer may be blocked sending it,
			// and so not read what the far end still owes it: an echo
			// server, or any peer that writes before it reads. Read and
			// discard until the relay ends (the receiving direction
			// closes c when it is done, see stopped), so that the owed
			// bytes can be delivered, and their share of the QUIC
			// connection's receive window freed, at once.
			_, _, _ = copyBuf(io.Discard, c, nil)
			return
		}
		if err := s.Close(); err != nil && !sendStopped(err) {
			abort(err, false)
		}
	})
	n, rerr, werr := copyBuf(out, s, count.FromStream)
	st.FromStream = n
	received.Store(true)
	switch {
	case rerr != nil || werr != nil:
		abort(cmp.Or(rerr, werr), werr != nil)
	case stopped():
		// The far end stopped reading what our TCP peer sends, so that
		// is lost: reset it rather than end cleanly.
	default:
		if err := c.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
			abort(err, true)
		}
	}
	wg.Wait()
	if !stop() {
		<-fired // it may still be setting first
	}
	// Both directions are done. Release whatever the stream still holds:
	// STOP_SENDING is a no-op on a stream already read to its FIN.
	s.CancelRead(proto.StreamDone)
	_ = c.Close()
	return st, first
}

// owedTimeout bounds how long, after the far end aborted, a relay waits
// for a TCP peer to take any of the bytes the far end sent before it
// aborted. A peer that takes them, however slowly, gets them all; one that
// takes none for this long gets the reset at once. Until then those bytes
// hold their share of the QUIC connection's receive window.
const owedTimeout = 10 * time.Second

// owedWriter is the TCP side as the receiving direction writes to it.
// Once the far end has aborted (owe), a write fails when it made no
// progress for owedTimeout; until then writes wait as long as they must.
// A Conn without write deadlines (stdout) is written without a bound.
type owedWriter struct {
	Conn
	dl   interface{ SetWriteDeadline(time.Time) error } // nil without deadlines
	owed atomic.Bool
}

func newOwedWriter(c Conn) *owedWriter {
	w := &owedWriter{Conn: c}
	w.dl, _ = c.(interface{ SetWriteDeadline(time.Time) error })
	return w
}

// owe starts the bound. It may be called while a Write waits.
func (w *owedWriter) owe() {
	if w.dl != nil {
		w.owed.Store(true)
		_ = w.dl.SetWriteDeadline(time.Now().Add(owedTimeout))
	}
}

func (w *owedWriter) Write(p []byte) (int, error) {
	total := 0
	for {
		if w.owed.Load() {
			// Each attempt gets the whole bound, also one that starts
			// after earlier writes used up the last.
			_ = w.dl.SetWriteDeadline(time.Now().Add(owedTimeout))
		}
		n, err := w.Conn.Write(p[total:])
		total += n
		// A timed-out attempt that moved some bytes is a slow peer, not
		// a stuck one: try again.
		if err == nil || n == 0 || !w.owed.Load() || !errors.Is(err, os.ErrDeadlineExceeded) {
			return total, err
		}
	}
}

// streamWriter writes to a stream so that nothing a Write took lies
// outside the peer's flow-control window. A plain Write of quic-go
// (v0.65.0) returns with up to a packet's worth of its tail buffered
// outside flow control, and SetReliableBoundary counts that tail: when the
// window is exhausted just there, a reset (after the TCP peer failed)
// claims a final size past the peer's window, and the peer closes the
// whole QUIC connection with FLOW_CONTROL_ERROR, every tunneled connection
// of the session with it. So a small write is queued whole within the
// window (TryWriteAll) and returns at once, as a plain Write would; a
// larger one, or one the window has no room for, goes through a limiter
// that allows everything, which turns that buffering off: it returns once
// its last byte is sent. Only small writes are queued, because quic-go
// copies a queued write larger than a packet into a new buffer.
type streamWriter struct{ s Stream }

// queueMax is the largest write streamWriter queues: what fits the packet
// buffer of a pooled STREAM frame (1,452 bytes) with room to spare.
const queueMax = 1 << 10

func (w streamWriter) Write(p []byte) (int, error) {
	if len(p) <= queueMax {
		err := w.s.TryWriteAll(p)
		if err == nil {
			return len(p), nil
		}
		if !errors.Is(err, quic.ErrWouldBlock) {
			return 0, err
		}
	}
	return w.s.WriteWithLimit(p, allowAll)
}

func allowAll(maxBytes int) int { return maxBytes }

// tcpConn is what an abort needs of a TCP connection (*net.TCPConn): its
// send queue, and a reset instead of a clean close.
type tcpConn interface {
	syscall.Conn
	SetLinger(sec int) error
}

// sendStopped reports whether err says that the far end stopped reading
// the stream (STOP_SENDING). That ends the sending direction only: the
// far end resets its own sending direction too, after what it still owes
// (see abort), and the receiving direction aborts the relay when it gets
// there. Aborting at once would throw away the bytes still owed.
func sendStopped(err error) bool {
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote
}

// copyBuf copies src to dst and adds each chunk to counters; nothing is
// allocated per chunk. Like io.Copy it ends without an error at EOF; else
// it returns the error of src's read or of dst's write.
func copyBuf(dst io.Writer, src io.Reader, counters []*atomic.Uint64) (total int64, rerr, werr error) {
	r := newIdleReader(src)
	defer r.release()
	for {
		buf, rerr := r.read()
		if n := len(buf); n > 0 {
			w, werr := dst.Write(buf)
			total += int64(w)
			for _, c := range counters {
				c.Add(uint64(w))
			}
			if werr != nil {
				return total, nil, werr
			}
			if w != n {
				return total, nil, io.ErrShortWrite
			}
		}
		r.done(len(buf))
		if rerr == io.EOF {
			return total, nil, nil
		}
		if rerr != nil {
			return total, rerr, nil
		}
	}
}

// idleReader reads a relay's source with a pooled 64 KiB buffer while data
// flows and gives the buffer back before a read that would wait, so that
// an idle direction holds no large buffer. A TCP source is read with
// non-blocking reads of its socket: one that finds nothing gives the
// buffer back before the wait, and the read after the wait takes it
// again. Any other source (a QUIC stream, stdin) cannot be asked, so the
// last read decides: one that filled its buffer, small or large, means
// more is very likely waiting, and the next read goes into the large
// buffer; one that did not fill it means the source has run dry for now,
// and the next read goes into the small one. A direction that moves data
// faster than it arrives alternates between the two; one whose writer is
// slower than its source reads full 64 KiB chunks. The large buffer is
// held across a wait only when a burst ends exactly where a read filled
// up (see smallSize).
type idleReader struct {
	src     io.Reader
	rc      syscall.RawConn       // src's socket, if src is TCP
	tryRead func(fd uintptr) bool // for rc.Read: one non-blocking read
	n       int                   // what tryRead read
	err     error                 // and the error it got
	small   []byte                // allocated on first use, when src cannot be polled
	big     *[]byte               // from bufPool while data flows
	size    int                   // size of the buffer of the last read
}

func newIdleReader(src io.Reader) *idleReader {
	r := &idleReader{src: src}
	if tc, ok := src.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			r.rc = rc
			// One read(2) into the large buffer without waiting. Nothing
			// there (EAGAIN) gives the buffer back and tells rc.Read to
			// wait for the socket to become readable, then call again.
			// This is the system call a plain Read makes, so an idle
			// direction costs none more than it. Made once, so it
			// allocates nothing.
			r.tryRead = func(fd uintptr) bool {
				if r.big == nil {
					r.big = getBuf()
				}
				for {
					n, err := unix.Read(int(fd), *r.big)
					switch err {
					case unix.EINTR:
						continue
					case unix.EAGAIN:
						r.release()
						return false
					case nil:
						r.n, r.err = n, nil
					default:
						r.n, r.err = 0, os.NewSyscallError("read", err)
					}
					return true
				}
			}
		}
	}
	return r
}

// read returns the next chunk, valid until done is called.
func (r *idleReader) read() ([]byte, error) {
	if r.rc != nil {
		if err := r.rc.Read(r.tryRead); err != nil {
			return nil, err
		}
		switch {
		case r.err != nil:
			return nil, r.err
		case r.n == 0:
			return nil, io.EOF
		}
		return (*r.big)[:r.n], nil
	}
	buf := r.small
	switch {
	case r.big != nil:
		buf = *r.big
	case buf == nil:
		r.small = make([]byte, smallSize)
		buf = r.small
	}
	n, err := r.src.Read(buf)
	r.size = len(buf)
	return buf[:n], err
}

// done is called once the last chunk (n bytes) has been written. For a
// TCP source the next read decides. For any other, a read
// that filled its buffer means more is coming: read into the large one
// next; a read that did not means the source ran dry: give it back (see
// idleReader).
func (r *idleReader) done(n int) {
	switch {
	case r.rc != nil:
	case n == r.size:
		if r.big == nil {
			r.big = getBuf()
		}
	default:
		r.release()
	}
}

func (r *idleReader) release() {
	if r.big != nil {
		putBuf(r.big)
		r.big = nil
	}
}
