package tunnel

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/tlsid"
)

// quicPair returns the two ends of one stream of a real QUIC connection on
// loopback.
func quicPair(tb testing.TB) (client, server *quic.Stream) {
	tb.Helper()
	cs, ss, _ := quicConnPair(tb)
	return cs, ss
}

// quicConnPair is quicPair that also returns the client's connection.
func quicConnPair(tb testing.TB) (client, server *quic.Stream, clientConn *quic.Conn) {
	tb.Helper()
	dir := tb.TempDir()
	cert, err := tlsid.LoadOrCreate(dir)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsid.ServerTLSConfig(cert, false), QUICConfig(0, 0))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	ctx := context.Background()
	cconn, err := quic.DialAddr(ctx, ln.Addr().String(), tlsid.ClientTLSConfig("localhost", nil, nil), QUICConfig(0, 0))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cconn.CloseWithError(0, "") })
	cs, err := cconn.OpenStreamSync(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	cs.Write([]byte{0}) // the peer sees the stream once data arrives
	sconn, err := ln.Accept(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	ss, err := sconn.AcceptStream(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	io.ReadFull(ss, make([]byte, 1))
	return cs, ss, cconn
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(tb testing.TB) (*net.TCPConn, *net.TCPConn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// Relay carries both directions intact and forwards each half-close.
func TestRelayHalfCloseAndIntegrity(t *testing.T) {
	cs, ss := quicPair(t)
	app, relayEnd := tcpPair(t)
	done := make(chan Stats, 1)
	go func() {
		st, err := Relay(relayEnd, ss, Counters{})
		if err != nil {
			t.Errorf("Relay: %v", err)
		}
		done <- st
	}()
	const n = 8 << 20
	// app -> stream direction, then half-close.
	go func() {
		io.Copy(app, io.LimitReader(rand.NewChaCha8([32]byte{1}), n))
		app.CloseWrite()
	}()
	want := sha256.New()
	io.Copy(want, io.LimitReader(rand.NewChaCha8([32]byte{1}), n))
	got := sha256.New()
	if m, err := io.Copy(got, cs); err != nil || m != n {
		t.Fatalf("stream received %d bytes, %v", m, err)
	}
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatal("sha256 differs on the way to the stream")
	}
	// The other direction still flows after the half-close.
	go func() {
		cs.Write([]byte("reply after half-close"))
		cs.Close()
	}()
	reply, err := io.ReadAll(app)
	if err != nil || string(reply) != "reply after half-close" {
		t.Fatalf("reply = %q, %v", reply, err)
	}
	select {
	case st := <-done:
		if st.ToStream != n || st.FromStream != int64(len(reply)) {
			t.Errorf("stats = %+v", st)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Relay did not return after both directions ended")
	}
}

// When the QUIC connection dies, a relay whose stream side has already ended
// (FIN received) must not wait for its TCP peer, which may never send again:
// it closes the TCP connection and returns. Otherwise a session's shutdown
// waits forever on a silent half-closed connection.
func TestRelayEndsWhenConnectionDies(t *testing.T) {
	cs, ss, cconn := quicConnPair(t)
	app, relayEnd := tcpPair(t)
	done := make(chan error, 1)
	go func() { _, err := Relay(relayEnd, ss, Counters{}); done <- err }()
	cs.Close() // FIN: the relay half-closes the TCP side
	app.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := app.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("app read after the stream's FIN = %v, want EOF", err)
	}
	cconn.CloseWithError(0, "gone") // app stays silent, its direction open
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Relay reported a clean end although its connection died")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Relay still waits on a silent TCP peer after its QUIC connection died")
	}
	if _, err := app.Write([]byte("x")); err == nil {
		app.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := app.Read(make([]byte, 1)); err == nil {
			t.Fatal("the TCP side is still open after the relay ended")
		}
	}
}

// A reset of the TCP side aborts the stream instead of ending it cleanly.
func TestRelayAbortResetsStream(t *testing.T) {
	cs, ss := quicPair(t)
	app, relayEnd := tcpPair(t)
	done := make(chan error, 1)
	go func() { _, err := Relay(relayEnd, ss, Counters{}); done <- err }()
	app.Write([]byte("partial"))
	app.SetLinger(0)
	app.Close() // RST
	buf := make([]byte, 100)
	var err error
	for err == nil {
		_, err = cs.Read(buf)
	}
	var se *quic.StreamError
	if !errors.As(err, &se) {
		t.Fatalf("stream read error = %v, want a reset", err)
	}
	if err := <-done; err == nil {
		t.Fatal("Relay reported a clean end after a reset")
	}
}

// chunkReader yields n bytes in chunk-sized reads without allocating.
type chunkReader struct {
	chunk []byte
	left  int64
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunk)
	if int64(n) > r.left {
		n = int(r.left)
	}
	r.left -= int64(n)
	return n, nil
}

// The copy loop of the hot path allocates nothing per chunk.
func BenchmarkCopyBuf(b *testing.B) {
	r := &chunkReader{chunk: make([]byte, bufSize)}
	b.SetBytes(bufSize)
	b.ReportAllocs()
	r.left = int64(b.N) * bufSize
	b.ResetTimer()
	_, _, _ = copyBuf(io.Discard, r, nil)
}

// Relay against the baseline of io.Copy on the same kind of stream: the
// ratio of the two is what Relay costs. In both directions: TCP to the
// stream, and (from-stream-) stream to TCP, where the relay cannot poll its
// source and the last read decides the next buffer (see idleReader).
func BenchmarkRelay(b *testing.B) {
	const chunk = 64 << 10
	for _, dir := range []struct {
		prefix   string
		toStream bool
	}{{"", true}, {"from-stream-", false}} {
		for _, mode := range []string{"baseline-io.Copy", "Relay"} {
			b.Run(dir.prefix+mode, func(b *testing.B) {
				cs, ss := quicPair(b)
				app, relayEnd := tcpPair(b)
				// The benchmark writes into one end; the other is drained.
				var in io.Writer = app
				var out io.Reader = cs
				if !dir.toStream {
					in, out = cs, app
				}
				go func() {
					switch {
					case mode == "Relay":
						Relay(relayEnd, ss, Counters{})
					case dir.toStream:
						io.Copy(ss, relayEnd)
					default:
						io.Copy(relayEnd, ss)
					}
				}()
				go io.Copy(io.Discard, out)
				buf := make([]byte, chunk)
				b.SetBytes(chunk)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := in.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// A connection that moved a bulk transfer and then went idle holds no
// 64 KiB buffer in either direction: its relay gave them back when its
// sources ran dry. Both directions stay intact and usable afterwards.
func TestIdleRelayHoldsNoLargeBuffer(t *testing.T) {
	const conns, size = 8, 1 << 20
	before := bufsHeld.Load()
	type end struct {
		app *net.TCPConn
		cs  *quic.Stream
	}
	ends := make([]end, conns)
	for i := range ends {
		cs, ss := quicPair(t)
		app, relayEnd := tcpPair(t)
		go Relay(relayEnd, ss, Counters{})
		ends[i] = end{app, cs}
	}
	// Bulk both ways through every relay, checked at the far end.
	move := func(w io.Writer, r io.Reader, seed byte) error {
		errc := make(chan error, 1)
		go func() {
			_, err := io.Copy(w, io.LimitReader(rand.NewChaCha8([32]byte{seed}), size))
			errc <- err
		}()
		want, got := sha256.New(), sha256.New()
		io.Copy(want, io.LimitReader(rand.NewChaCha8([32]byte{seed}), size))
		if _, err := io.CopyN(got, r, size); err != nil {
			return err
		}
		if err := <-errc; err != nil {
			return err
		}
		if string(got.Sum(nil)) != string(want.Sum(nil)) {
			return errors.New("sha256 differs")
		}
		return nil
	}
	for i, e := range ends {
		if err := move(e.app, e.cs, byte(i)); err != nil {
			t.Fatalf("connection %d, TCP to stream: %v", i, err)
		}
		if err := move(e.cs, e.app, byte(100+i)); err != nil {
			t.Fatalf("connection %d, stream to TCP: %v", i, err)
		}
	}
	// Idle now: every direction is waiting for its next byte.
	deadline := time.Now().Add(10 * time.Second)
	for bufsHeld.Load() != before {
		if time.Now().After(deadline) {
			t.Fatalf("%d large buffers held by %d idle connections, want 0", bufsHeld.Load()-before, conns)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// And they still carry data.
	for i, e := range ends {
		if err := move(e.app, e.cs, byte(200+i)); err != nil {
			t.Fatalf("connection %d after idling: %v", i, err)
		}
	}
}

// readyThenWait is a source that always has a full read ready — a stream
// whose writer ran far ahead of a slow TCP consumer — until its data is
// gone, and then waits for more, as an idle stream does.
type readyThenWait struct {
	data    []byte
	waiting chan struct{} // closed once a read waits past the data
	more    chan struct{} // closed to end the wait (with EOF)
}

func (r *readyThenWait) Read(p []byte) (int, error) {
	if len(r.data) > 0 {
		n := copy(p, r.data)
		r.data = r.data[n:]
		return n, nil
	}
	close(r.waiting)
	<-r.more
	return 0, io.EOF
}

// Whatever a transfer's size, the wait after it holds no 64 KiB buffer —
// also when every read found a full buffer's worth ready and the size is
// a multiple of 64 KiB, so the last read could end exactly where the
// buffer does.
func TestWaitAfterFullReadsHoldsNoLargeBuffer(t *testing.T) {
	for _, size := range []int{1 << 20, 64 << 10, 1<<20 + 1, 3 << 16, 4 << 10, 1 << 10, 512, 1} {
		before := bufsHeld.Load()
		src := &readyThenWait{data: make([]byte, size), waiting: make(chan struct{}), more: make(chan struct{})}
		done := make(chan int64)
		go func() {
			n, _, _ := copyBuf(io.Discard, src, nil)
			done <- n
		}()
		<-src.waiting
		if held := bufsHeld.Load() - before; held != 0 {
			t.Errorf("%d bytes, then a wait: %d large buffers held", size, held)
		}
		close(src.more)
		if n := <-done; n != int64(size) {
			t.Errorf("copied %d bytes of %d", n, size)
		}
	}
}

// hastyConn is a TCP connection whose write deadlines all come 300 ms
// from now, so a test need not wait out owedTimeout.
type hastyConn struct{ *net.TCPConn }

func (c hastyConn) SetWriteDeadline(time.Time) error {
	return c.TCPConn.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
}

// After the far end aborts, the relay still writes what the far end sent
// before that to its TCP peer, but a peer that never reads does not hold
// the relay past owedTimeout: it gets a reset instead.
func TestRelayBoundsBytesOwedToAStalledPeer(t *testing.T) {
	cs, ss := quicPair(t)
	app, relayEnd := tcpPair(t)
	done := make(chan error, 1)
	go func() { _, err := Relay(hastyConn{relayEnd}, ss, Counters{}); done <- err }()
	// More than the TCP buffers and the stream's window hold: the relay
	// ends up blocked writing to app, which never reads.
	go cs.Write(make([]byte, 64<<20))
	time.Sleep(300 * time.Millisecond)
	// The far end aborts the way a relay whose TCP peer failed does.
	cs.SetReliableBoundary()
	cs.CancelWrite(42)
	cs.CancelRead(42)
	select {
	case err := <-done:
		if err == nil {
			t.Error("Relay reported a clean end after the far end aborted")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Relay still waits on a TCP peer that does not read, long after the far end aborted")
	}
	app.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, app)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("app's connection ended with %v, want a reset", err)
	}
}
