package bbr_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/bbr"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tlsid"
)

// A real quic-go connection on loopback with BBR on both ends moves 64 MiB
// intact: BBR's pacing and window let quic-go send, and its acks keep it
// going (a controller that stalled would time the test out). The
// connection's statistics show BBR's window.
func TestMovesDataOverQUIC(t *testing.T) {
	const size = 64 << 20
	qc := &quic.Config{Congestion: bbr.New, MaxIdleTimeout: 10 * time.Second}
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsid.ServerTLSConfig(testutil.Identity(t), false), qc)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got := make(chan [32]byte, 1)
	go func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		st, err := conn.AcceptStream(ctx)
		if err != nil {
			t.Error(err)
			close(got)
			return
		}
		h := sha256.New()
		io.Copy(h, st)
		got <- [32]byte(h.Sum(nil))
		st.Close()
	}()
	conn, err := quic.DialAddr(ctx, ln.Addr().String(), tlsid.ClientTLSConfig("localhost", nil, nil), qc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	rand.Read(data)
	start := time.Now()
	if _, err := st.Write(data); err != nil {
		t.Fatal(err)
	}
	st.Close()
	sum := <-got
	d := time.Since(start)
	if sum != sha256.Sum256(data) {
		t.Fatal("the 64 MiB arrived changed")
	}
	stats := conn.ConnectionStats()
	t.Logf("64 MiB in %v (%.2f Gbit/s); min rtt %v, window %d", d, size*8/d.Seconds()/1e9, stats.MinRTT, stats.CongestionWindow)
	if stats.CongestionWindow < 4*1200 {
		t.Errorf("ConnectionStats reports a window of %d bytes: the statistics do not follow BBR's", stats.CongestionWindow)
	}
}
