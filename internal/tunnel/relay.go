// Package tunnel relays bytes between a TCP connection and a QUIC stream.
// It is shared by both ends of the tunnel and owns the rules that keep a
// session healthy: half-close is forwarded in both directions, and a relay
// that ends always finishes both directions of its stream, so unread data
// never pins the connection's flow-control window.
package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/proto"
)

// Stream is the part of *quic.Stream a relay uses. Close ends the send
// direction with a FIN; CancelRead and CancelWrite abort a direction.
// Context ends when the send direction ends, for whatever reason (its cause
// is quic.ErrStreamClosed after our own Close).
type Stream interface {
	io.ReadWriteCloser
	CancelRead(quic.StreamErrorCode)
	CancelWrite(quic.StreamErrorCode)
	Context() context.Context
}

// Conn is the byte-stream side of a relay: a TCP connection, or stdin and
// stdout for ssh-proxy. CloseWrite half-closes it.
type Conn interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// bufSize is the copy buffer per direction. 64 KiB moves bulk data in few
// system calls; buffers are pooled, so idle connections hold none.
const bufSize = 64 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

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
// and the TCP connection closed. Relay returns the first such error (nil
// after a clean close in both directions).
func Relay(c Conn, s Stream, count Counters) (Stats, error) {
	var (
		st      Stats
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	abort := func(err error) {
		errOnce.Do(func() {
			first = err
			s.CancelWrite(proto.StreamAborted)
			s.CancelRead(proto.StreamAborted)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // reset, so the TCP peer knows it was not a clean end
			}
			_ = c.Close()
		})
	}
	// A direction blocked reading the TCP side notices nothing when the
	// stream's connection dies (or the peer stops reading): it would wait
	// for its TCP peer forever. The send side's context ends in both
	// cases; only our own clean Close is not a reason to abort.
	fired := make(chan struct{})
	stop := context.AfterFunc(s.Context(), func() {
		defer close(fired)
		if cause := context.Cause(s.Context()); !errors.Is(cause, quic.ErrStreamClosed) {
			abort(cause)
		}
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		n, err := copyBuf(s, c, count.ToStream)
		st.ToStream = n
		if err != nil {
			abort(err)
			return
		}
		if err := s.Close(); err != nil {
			abort(err)
		}
	}()
	n, err := copyBuf(c, s, count.FromStream)
	st.FromStream = n
	if err != nil {
		abort(err)
	} else if err := c.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
		abort(err)
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

// copyBuf copies src to dst with a pooled buffer (its size is ours, and
// nothing is allocated per chunk) and adds each chunk to counters. Like
// io.Copy it returns nil at EOF.
func copyBuf(dst io.Writer, src io.Reader, counters []*atomic.Uint64) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			for _, c := range counters {
				c.Add(uint64(w))
			}
			if werr != nil {
				return total, werr
			}
			if w != n {
				return total, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}
