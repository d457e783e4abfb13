package tunnel

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/tlsid"
)

// quicPair returns the two ends of one stream of a real QUIC connection on
// loopback, whose sockets are read and written as quicport's ends do
// (receive offload where there is some, sends through LossyConn).
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
	ln, err := loopbackTransport(tb).Listen(tlsid.ServerTLSConfig(cert, false), QUICConfig(0, 0))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	ctx := context.Background()
	cconn, err := loopbackTransport(tb).Dial(ctx, ln.Addr(), tlsid.ClientTLSConfig("localhost", nil, nil), QUICConfig(0, 0))
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
		st, err := Relay(relayEnd, ss, Counters{}, nil)
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
	go func() { _, err := Relay(relayEnd, ss, Counters{}, nil); done <- err }()
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
	go func() { _, err := Relay(relayEnd, ss, Counters{}, nil); done <- err }()
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

// loopbackTransport is a QUIC transport on a loopback socket of its own,
// made as the client and server make theirs (client.dialAddr,
// server.Listen).
func loopbackTransport(tb testing.TB) *quic.Transport {
	tb.Helper()
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	tr := &quic.Transport{Conn: WithGRO(LossyConn{UDPConn: udp})}
	tb.Cleanup(func() { tr.Close(); udp.Close() })
	return tr
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
						Relay(relayEnd, ss, Counters{}, nil)
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
		go Relay(relayEnd, ss, Counters{}, nil)
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
	go func() { _, err := Relay(hastyConn{relayEnd}, ss, Counters{}, nil); done <- err }()
	// More than the TCP buffers and the stream's window hold: the relay
	// ends up blocked writing to app, which never reads.
	go streamWriter{cs}.Write(make([]byte, 64<<20)) // as a relay writes
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

// An echo server writes back before it reads on. When the far end aborts
// while such a peer is blocked writing to the relay, the relay still
// delivers every byte the far end sent before the abort: it reads and
// discards what the peer writes, so the peer reads on. Else those bytes
// would be lost and, until owedTimeout, hold the QUIC connection's
// receive window, which the session's other streams share.
func TestRelayDeliversOwedBytesToAPeerThatWritesFirst(t *testing.T) {
	cs, ss := quicPair(t)
	app, relayEnd := tcpPair(t)
	done := make(chan error, 1)
	go func() { _, err := Relay(relayEnd, ss, Counters{}, nil); done <- err }()

	// app echoes, hashing what it reads, until its connection ends. Once
	// the reset makes its writes fail it still reads what had arrived
	// before the reset, which the kernel keeps for it.
	type result struct {
		n   int64
		sum []byte
	}
	echoed := make(chan result, 1)
	go func() {
		h := sha256.New()
		buf := make([]byte, 32<<10)
		var n int64
		var werr error
		for {
			m, err := app.Read(buf)
			h.Write(buf[:m])
			n += int64(m)
			if err != nil {
				break
			}
			if werr == nil {
				_, werr = app.Write(buf[:m])
			}
		}
		echoed <- result{n, h.Sum(nil)}
	}()

	// The far end sends and never reads the echo: the echo's way back
	// fills, app blocks writing, stops reading, and the relay ends up
	// blocked writing to it, with the stream holding what it could not
	// write yet.
	data := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{7}).Read(data)
	var accepted atomic.Int64 // bytes of whole chunks the stream took
	wrote := make(chan int64, 1)
	go func() {
		const chunk = 64 << 10
		for off := 0; off < len(data); off += chunk {
			n, err := streamWriter{cs}.Write(data[off : off+chunk]) // as a relay writes
			if err != nil {
				wrote <- int64(off + n)
				return
			}
			accepted.Add(chunk)
		}
		wrote <- int64(len(data))
	}()
	for last := int64(-1); ; {
		time.Sleep(300 * time.Millisecond)
		if now := accepted.Load(); now == last {
			break
		} else {
			last = now
		}
	}
	if accepted.Load() == int64(len(data)) {
		t.Fatal("the stream took all the data: nothing is owed, so the test shows nothing")
	}
	// The far end aborts the way a relay whose TCP peer failed does: what
	// it sent so far is still delivered (RESET_STREAM_AT).
	atBoundary := accepted.Load()
	cs.SetReliableBoundary()
	cs.CancelWrite(42)
	cs.CancelRead(42)
	sent := <-wrote

	select {
	case err := <-done:
		if err == nil {
			t.Error("Relay reported a clean end after the far end aborted")
		}
	case <-time.After(time.Minute):
		t.Fatal("Relay still runs a minute after the far end aborted")
	}
	got := <-echoed
	if got.n < atBoundary || got.n > sent {
		t.Fatalf("app received %d bytes; the far end sent %d before its abort, at least %d of them reliably", got.n, sent, atBoundary)
	}
	if want := sha256.Sum256(data[:got.n]); string(got.sum) != string(want[:]) {
		t.Fatalf("the %d bytes app received are not what the far end sent (sha256 differs)", got.n)
	}
	t.Logf("owed and delivered: %d bytes (%d accepted in whole chunks before the abort)", got.n, atBoundary)
}

// When the TCP peer resets while the stream's window is used up, the
// relay's reset still delivers everything it sent and stays within the
// window: the far end gets all of it, then the reset, and its QUIC
// connection lives on. The far end never reads, so the window stays at its
// first size, and the TCP peer's last write ends 500 bytes past it: once
// as a small write of its own (which streamWriter queues), once as the end
// of a larger one (which it sends through the limiter). A plain quic-go
// Write returns with those 500 bytes buffered outside flow control, and a
// reset counting them closes the whole connection with FLOW_CONTROL_ERROR
// (see streamWriter).
func TestRelayResetStaysWithinTheWindow(t *testing.T) {
	for _, tt := range []struct {
		name        string
		first, last int // bytes the TCP peer writes, then (once the relay has taken the first) writes after them
	}{
		{"small write past the window", FirstStreamWindow, 500},
		{"write across the window's end", FirstStreamWindow - 1000, 1500},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cs, ss, cconn := quicConnPair(t)
			app, relayEnd := tcpPair(t)
			var toStream atomic.Uint64
			done := make(chan error, 1)
			go func() {
				_, err := Relay(relayEnd, ss, Counters{ToStream: []*atomic.Uint64{&toStream}}, nil)
				done <- err
			}()
			data := make([]byte, tt.first+tt.last)
			rand.NewChaCha8([32]byte{3}).Read(data)
			if _, err := app.Write(data[:tt.first]); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(10 * time.Second); toStream.Load() < uint64(tt.first); time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the relay took %d of the first %d bytes", toStream.Load(), tt.first)
				}
			}
			if _, err := app.Write(data[tt.first:]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // the relay takes what it can of them
			app.SetLinger(0)
			app.Close()
			time.Sleep(300 * time.Millisecond) // the reset, if the relay sends one now, arrives

			cs.SetReadDeadline(time.Now().Add(30 * time.Second))
			got, err := io.ReadAll(cs)
			var se *quic.StreamError
			if !errors.As(err, &se) || se.ErrorCode != 0x01 {
				t.Fatalf("far end read %d bytes, then %v; want all %d, then the stream reset with code 0x01 (aborted)", len(got), err, len(data))
			}
			if len(got) != len(data) || sha256.Sum256(got) != sha256.Sum256(data) {
				t.Fatalf("far end read %d bytes, want the %d the TCP peer sent (or their sha256 differs)", len(got), len(data))
			}
			if err := cconn.Context().Err(); err != nil {
				t.Fatalf("the QUIC connection ended: %v", context.Cause(cconn.Context()))
			}
			select {
			case err := <-done:
				if err == nil {
					t.Error("Relay reported a clean end after its TCP peer reset")
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Relay still runs after its TCP peer reset and the far end read everything")
			}
		})
	}
}

// Bulk data through Relay, each way, over a QUIC connection on the sockets
// quicport's ends use, allocates nothing per packet along the whole path:
// the relay's copy loop, quic-go's packets, STREAM frames and sent-packet
// history (patch change 6 in third_party/quic-go/QUICPORT.md), the
// sockets. Upstream quic-go made about 100 allocations per 64 KiB here, two
// per packet. What is left is per flow-control update (a MAX_STREAM_DATA
// frame made, sent and parsed: about 0.4 per 64 KiB) and, now and then,
// pools growing for a new high of data in flight. Every byte is checked at
// the far end.
func TestRelayWithoutAllocating(t *testing.T) {
	const chunk = 64 << 10
	const stretches, runs = 5, 64
	warm := 1024 // 64 MiB: windows opened, pools filled
	if raceEnabled {
		warm = 16 // nothing to count; the bytes are still checked
	}
	for _, dir := range []struct {
		name     string
		toStream bool
	}{{"TCP-to-stream", true}, {"stream-to-TCP", false}} {
		t.Run(dir.name, func(t *testing.T) {
			// A collection empties sync.Pools, and refilling them is not
			// the hot path's doing.
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			cs, ss := quicPair(t)
			app, relayEnd := tcpPair(t)
			go Relay(relayEnd, ss, Counters{}, nil)
			var in io.Writer = app
			var out io.Reader = cs
			if !dir.toStream {
				in, out = cs, app
			}
			total := int64(warm+stretches*runs) * chunk
			got := sha256.New()
			read := make(chan error, 1)
			go func() {
				_, err := io.CopyBuffer(got, io.LimitReader(out, total), make([]byte, chunk))
				read <- err
			}()
			want := sha256.New()
			src := rand.NewChaCha8([32]byte{7})
			buf := make([]byte, chunk)
			send := func() {
				src.Read(buf)
				want.Write(buf)
				if _, err := in.Write(buf); err != nil {
					t.Fatal(err)
				}
			}
			for range warm {
				send()
			}
			// The median of five stretches: an allocation per packet shows
			// in every one, a pool growing for a new high of data in
			// flight in one now and then.
			var per []float64
			for range stretches {
				per = append(per, allocsPerRun(runs, send))
			}
			slices.Sort(per)
			allocs := per[stretches/2]
			if err := <-read; err != nil {
				t.Fatalf("reading at the far end: %v", err)
			}
			if string(got.Sum(nil)) != string(want.Sum(nil)) {
				t.Fatal("the far end's sha256 differs from what was sent")
			}
			switch {
			case raceEnabled:
				t.Logf("%.2f allocations per %d KiB relayed, not checked under the race detector (.ci/run checks them without it)", allocs, chunk>>10)
			case allocs >= 8:
				t.Errorf("%.2f allocations per %d KiB relayed (about %d packets each way; the median of %.2f), want fewer than 8: none per packet", allocs, chunk>>10, chunk/1400, per)
			default:
				t.Logf("%.2f allocations per %d KiB relayed (the median of %.2f)", allocs, chunk>>10, per)
			}
		})
	}
}

// allocsPerRun is testing.AllocsPerRun without its rounding down to a whole
// number and its switch to one thread, which would change how much a
// transfer holds in flight from what the warm-up filled the pools for: the
// mean count of heap allocations the whole process made per call of f.
func allocsPerRun(runs int, f func()) float64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(runs)
}

// Small messages one at a time, as a request and its reply: 64 bytes into
// the TCP side, read from the stream's far end, written back on the stream
// and read from the TCP side, each echo compared whole with what was sent.
// Against the baseline of io.Copy both ways on the same kind of stream.
func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, mode := range []string{"baseline-io.Copy", "Relay"} {
		b.Run(mode, func(b *testing.B) {
			cs, ss := quicPair(b)
			app, relayEnd := tcpPair(b)
			if mode == "Relay" {
				go Relay(relayEnd, ss, Counters{}, nil)
			} else {
				go io.Copy(ss, relayEnd)
				go io.Copy(relayEnd, ss)
			}
			go io.Copy(cs, cs) // the far end echoes
			src := rand.NewChaCha8([32]byte{9})
			msg, got := make([]byte, 64), make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				src.Read(msg)
				if _, err := app.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(app, got); err != nil {
					b.Fatal(err)
				}
				if string(got) != string(msg) {
					b.Fatalf("message %d came back changed", i)
				}
			}
		})
	}
}
