package steer

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

// needBPF skips where BPF cannot be loaded, except under CI (which runs as
// root), where that is a failure.
func needBPF(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if errors.Is(err, ErrUnsupported) && os.Getenv("CI") == "" {
		t.Skipf("needs BPF (run as root): %v", err)
	}
	t.Fatal(err)
}

// echoPlane is one data plane: a QUIC transport on its own socket of the
// shared port, echoing every stream and recording which plane answered.
func echoPlane(t *testing.T, s *Steering, addr string, id uint8) (*quic.Listener, string) {
	t.Helper()
	pc, err := s.Listen(addr, id)
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: pc, ConnectionIDGenerator: CIDGenerator{ID: id, Salt: s.Salt()}}
	t.Cleanup(func() { tr.Close(); pc.Close() })
	cert, err := tlsid.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tr.Listen(tlsid.ServerTLSConfig(cert, false), tunnel.QUICConfig(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					st, err := conn.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() {
						st.Write([]byte{id}) // who answers
						io.Copy(st, st)
						st.Close()
					}()
				}
			}()
		}
	}()
	return ln, pc.LocalAddr().String()
}

// dial connects a QUIC client to addr, closed when the test ends.
func dial(t *testing.T, addr string) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, tlsid.ClientTLSConfig("localhost", nil, nil), tunnel.QUICConfig(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn
}

// ask opens a stream on conn and returns the id of the plane that answered,
// after checking the echo.
func ask(t *testing.T, conn *quic.Conn) uint8 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.SetDeadline(time.Now().Add(10 * time.Second))
	msg := make([]byte, 20000) // several packets
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	st.Write(msg)
	st.Close()
	got, err := io.ReadAll(st)
	if err != nil || len(got) != len(msg)+1 || string(got[1:]) != string(msg) {
		t.Fatalf("echo: %d bytes, %v", len(got), err)
	}
	return got[0]
}

// New connections go to the current plane; established ones stay on the
// plane that issued their connection IDs, on the same UDP port.
func TestSteeringByConnectionID(t *testing.T) {
	s, err := New(NewSalt())
	needBPF(t, err)
	defer s.Close()
	_, addr := echoPlane(t, s, "127.0.0.1:0", 1)
	echoPlane(t, s, addr, 2)

	var onOne, onTwo []*quic.Conn
	if err := s.SetCurrent(1); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		onOne = append(onOne, dial(t, addr))
	}
	if err := s.SetCurrent(2); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		onTwo = append(onTwo, dial(t, addr))
	}
	for round := range 3 {
		for i, c := range onOne {
			if got := ask(t, c); got != 1 {
				t.Fatalf("round %d: connection %d made while plane 1 was current is served by plane %d", round, i, got)
			}
		}
		for i, c := range onTwo {
			if got := ask(t, c); got != 2 {
				t.Fatalf("round %d: connection %d made while plane 2 was current is served by plane %d", round, i, got)
			}
		}
	}
}

func TestCIDGenerator(t *testing.T) {
	g := CIDGenerator{ID: 7, Salt: Salt{1, 2, 3}}
	a, _ := g.GenerateConnectionID()
	b, _ := g.GenerateConnectionID()
	if a.Len() != CIDLen || g.ConnectionIDLen() != CIDLen {
		t.Fatalf("length %d", a.Len())
	}
	if ab := a.Bytes(); ab[0] != 7 || ab[1] != 1 || ab[2] != 2 || ab[3] != 3 {
		t.Fatalf("prefix %x", ab[:4])
	}
	if string(a.Bytes()[4:]) == string(b.Bytes()[4:]) {
		t.Fatal("two IDs share their random part")
	}
}

// A control plane that restarts takes the program and maps back from the
// descriptors its data planes kept (Files, then Open): the sockets stay
// mapped, and steering goes on as before.
func TestOpenTakesOverSteering(t *testing.T) {
	s, err := New(NewSalt())
	needBPF(t, err)
	_, addr := echoPlane(t, s, "127.0.0.1:0", 1)
	if err := s.SetCurrent(1); err != nil {
		t.Fatal(err)
	}
	files, err := s.Files()
	if err != nil {
		t.Fatal(err)
	}
	s.Close() // the old control plane is gone
	old := dial(t, addr)
	s2, err := Open(files, s.Salt())
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	echoPlane(t, s2, addr, 2)
	if err := s2.SetCurrent(2); err != nil {
		t.Fatal(err)
	}
	if got := ask(t, dial(t, addr)); got != 2 {
		t.Fatalf("a new connection went to plane %d, want the new current plane 2", got)
	}
	if got := ask(t, old); got != 1 {
		t.Fatalf("an established connection moved to plane %d", got)
	}
}

func TestSaltText(t *testing.T) {
	s := Salt{0xab, 0x01, 0xff}
	b, _ := s.MarshalText()
	var got Salt
	if err := got.UnmarshalText(b); err != nil || got != s || string(b) != "ab01ff" {
		t.Fatalf("%q -> %x, %v", b, got, err)
	}
	for _, bad := range []string{"", "ab01", "ab01ff00", "zz01ff"} {
		if err := got.UnmarshalText([]byte(bad)); err == nil {
			t.Errorf("salt %q accepted", bad)
		}
	}
}
