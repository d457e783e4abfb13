//go:build linux

package integration

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

// goodClientWorks checks that the server still serves a good client.
func goodClientWorks(t *testing.T, srv *testutil.Server, creds auth.ClientConfig) {
	t.Helper()
	echo := testutil.EchoServer(t)
	c := testutil.StartClient(t, client.Config{
		Server: srv.AddrString(), Auth: creds, TOFU: testutil.KnownHosts(t),
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
	})
	if err := testutil.EchoCheck(c.Ready.LocalListen.String(), 1<<20, 9); err != nil {
		t.Fatalf("good client after a refused one: %v", err)
	}
	c.Stop()
}

func TestAuthRefused(t *testing.T) {
	serverKey, clientKey, stranger := testutil.Key(t), testutil.Key(t), testutil.Key(t)
	psk := auth.PSK("the-right-pre-shared-key")
	pskPolicy := auth.ServerConfig{PSK: psk}
	keyPolicy := auth.ServerConfig{PrivateKey: serverKey, AuthorizedKeys: []auth.AuthorizedKey{{Key: clientKey.Public()}}}
	tests := []struct {
		name     string
		policy   auth.ServerConfig
		creds    auth.ClientConfig
		good     auth.ClientConfig
		byServer bool
		want     string
	}{
		{"wrong psk", pskPolicy, auth.ClientConfig{PSK: auth.PSK("wrong")}, auth.ClientConfig{PSK: psk},
			true, "PSK does not match"},
		{"expired timestamp", pskPolicy, auth.ClientConfig{PSK: psk, Now: func() time.Time { return time.Now().Add(-2 * time.Minute) }},
			auth.ClientConfig{PSK: psk}, true, "synchronise both clocks"},
		{"unauthorized key", keyPolicy, auth.ClientConfig{PrivateKey: stranger, ServerKey: serverKey.Public()},
			auth.ClientConfig{PrivateKey: clientKey, ServerKey: serverKey.Public()}, true, "is not authorized"},
		{"wrong server key", keyPolicy, auth.ClientConfig{PrivateKey: clientKey, ServerKey: stranger.Public()},
			auth.ClientConfig{PrivateKey: clientKey, ServerKey: serverKey.Public()}, false, "--server-pubkey is " + stranger.Public().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testutil.StartServer(t, server.Config{Auth: tt.policy})
			_, err := testutil.TryClient(t, client.Config{
				Server: srv.AddrString(), Auth: tt.creds, TOFU: testutil.KnownHosts(t),
				Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, "22")},
			})
			var re *auth.RejectedError
			if !errors.As(err, &re) || re.ByServer != tt.byServer || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("client error = %v, want a rejection (by server: %v) containing %q", err, tt.byServer, tt.want)
			}
			if !client.IsPermanent(err) {
				t.Error("authentication failure is not permanent")
			}
			waitFor(t, func() bool { return srv.Stats().AuthFailed == 1 }, "server to count the failure")
			goodClientWorks(t, srv, tt.good)
			if got := srv.Stats(); got.AuthFailed != 1 || got.AuthSuccess != 1 {
				t.Errorf("server stats %+v, want 1 failure and 1 success", got)
			}
		})
	}
}

// A client that connects but never authenticates is cut off at the
// deadline, and the server keeps serving others meanwhile.
func TestAuthDeadline(t *testing.T) {
	psk := auth.PSK("deadline-test-psk")
	srv := testutil.StartServer(t, server.Config{Auth: auth.ServerConfig{PSK: psk}, AuthTimeout: 500 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, sendPartial := range []bool{false, true} {
		conn, err := quic.DialAddr(ctx, srv.AddrString(), tlsid.ClientTLSConfig("localhost", nil, nil), tunnel.QUICConfig(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		if sendPartial {
			st, _ := conn.OpenStream()
			st.Write([]byte("QUICPORT_PSK")) // and then nothing
		}
		select {
		case <-conn.Context().Done():
		case <-ctx.Done():
			t.Fatal("server did not close an unauthenticated connection")
		}
		var ae *quic.ApplicationError
		if err := context.Cause(conn.Context()); !errors.As(err, &ae) || ae.ErrorCode != proto.ConnAuthFailed {
			t.Errorf("close reason = %v, want application error 0x%x", err, proto.ConnAuthFailed)
		}
	}
	goodClientWorks(t, srv, auth.ClientConfig{PSK: psk})
	if st := srv.Stats(); st.AuthFailed != 2 {
		t.Errorf("AuthFailed = %d, want 2", st.AuthFailed)
	}
}

// A client that opens a second stream before it has authenticated loses
// its connection at once, rather than at the deadline: the server does not
// hold that stream's data for a stranger (tunnel.ConnWindow).
func TestStreamBeforeAuthentication(t *testing.T) {
	psk := auth.PSK("early-stream-test-psk")
	srv := testutil.StartServer(t, server.Config{Auth: auth.ServerConfig{PSK: psk}, AuthTimeout: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, srv.AddrString(), tlsid.ClientTLSConfig("localhost", nil, nil), tunnel.QUICConfig(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	ctrl, _ := conn.OpenStream()
	ctrl.Write([]byte("QUICPORT_PSK")) // and then nothing
	early, _ := conn.OpenStream()
	go early.Write(make([]byte, 4<<20))
	select {
	case <-conn.Context().Done():
	case <-ctx.Done():
		t.Fatal("server kept a connection that opened a stream before authenticating")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(conn.Context()); !errors.As(err, &ae) || ae.ErrorCode != proto.ConnProtocolError ||
		ae.ErrorMessage != "client opened a stream before authenticating" {
		t.Errorf("close reason = %v, want application error 0x%x saying a stream came before authentication", err, proto.ConnProtocolError)
	}
	waitFor(t, func() bool { return srv.Stats().AuthFailed == 1 }, "server to count the failure")
	goodClientWorks(t, srv, auth.ClientConfig{PSK: psk})
}

// An authenticated client that sends garbage loses its own session only.
func TestMalformedControlMessages(t *testing.T) {
	psk := auth.PSK("malformed-test-psk")
	srv := testutil.StartServer(t, server.Config{Auth: auth.ServerConfig{PSK: psk}})
	cases := map[string][]byte{
		"unknown type":         {0x7f, 0x00, 0x00},
		"truncated header":     {0x21},
		"truncated payload":    {0x21, 0x00, 0x10, 0x00},
		"bad protocol":         {0x21, 0x00, 0x03, 0x23, 0x28, 0x09},
		"length past end":      {0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 'x'},
		"response from client": {0x22, 0x00, 0x01, 0x00},
		"oversized claim":      {0x21, 0xff, 0xff, 0x00, 0x00},
	}
	for name, garbage := range cases {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, st, _ := rawSession(t, srv, psk)
			st.Write(garbage)
			st.Close() // so a truncated message ends in EOF rather than a wait
			select {
			case <-conn.Context().Done():
			case <-ctx.Done():
				t.Fatal("server kept a session that sent a malformed message")
			}
			var ae *quic.ApplicationError
			if err := context.Cause(conn.Context()); !errors.As(err, &ae) || ae.ErrorCode != proto.ConnProtocolError {
				t.Errorf("close reason = %v, want protocol error", err)
			}
		})
	}
	goodClientWorks(t, srv, auth.ClientConfig{PSK: psk})
}

func TestRemotePortInUse(t *testing.T) {
	cr := credentials(t)[0]
	srv := testutil.StartServer(t, server.Config{Auth: cr.server})
	taken, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := testutil.Port(t, taken.Addr().String())
	_, err = testutil.TryClient(t, client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
		Forward: client.Forward{Remote: true, Source: mustAddr(t, port), Dest: mustAddr(t, "22")},
	})
	var fe *client.ForwardError
	if !errors.As(err, &fe) || fe.Status != proto.StatusPortInUse || !strings.Contains(err.Error(), "port "+port+" is already in use on the server") {
		t.Fatalf("error = %v, want port in use", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawSession is an authenticated session driven by hand, to watch the
// control stream.
func rawSession(t *testing.T, srv *testutil.Server, psk auth.PSK) (*quic.Conn, *quic.Stream, *proto.Reader) {
	t.Helper()
	return rawSessionOver(t, srv, psk, nil)
}

// rawSessionOver is rawSession on the socket pc (nil: a new one), whose
// QUIC idle timeout is then longer than any test.
func rawSessionOver(t *testing.T, srv *testutil.Server, psk auth.PSK, pc net.PacketConn) (*quic.Conn, *quic.Stream, *proto.Reader) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var conn *quic.Conn
	var err error
	if pc == nil {
		conn, err = quic.DialAddr(ctx, srv.AddrString(), tlsid.ClientTLSConfig("localhost", nil, nil), tunnel.QUICConfig(0, 0))
	} else {
		tr := &quic.Transport{Conn: pc}
		t.Cleanup(func() { tr.Close() })
		conn, err = tr.Dial(ctx, srv.Addr(), tlsid.ClientTLSConfig("localhost", nil, nil), tunnel.QUICConfig(0, 2*time.Minute))
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	st, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	binding, _ := auth.Binding(conn.ConnectionState().TLS)
	if err := auth.Client(st, binding, auth.ClientConfig{PSK: psk}); err != nil {
		t.Fatal(err)
	}
	return conn, st, proto.NewReader(st)
}

// The server reports the end of each tunneled connection with
// ConnectionClose: normal after a clean end, refused when the destination
// could not be reached.
func TestConnectionCloseMessages(t *testing.T) {
	psk := auth.PSK("connection-close-test-psk")
	srv := testutil.StartServer(t, server.Config{Auth: auth.ServerConfig{PSK: psk}})
	echo := testutil.EchoServer(t)
	closed := testutil.FreePort(t) // nothing listens there
	for _, tt := range []struct {
		dest string
		want proto.CloseReason
	}{{echo, proto.ReasonNormal}, {"127.0.0.1:" + testutil.Itoa(closed), proto.ReasonRefused}} {
		conn, ctrl, r := rawSession(t, srv, psk)
		if err := proto.Write(ctrl, proto.LocalForwardRequest{Protocol: proto.TCP, Destination: tt.dest, LocalSource: "test"}); err != nil {
			t.Fatal(err)
		}
		ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
		if m, err := r.Read(); err != nil || m.(proto.ForwardResponse).Status != proto.StatusSuccess {
			t.Fatalf("forward response: %v, %v", m, err)
		}
		proto.Write(ctrl, proto.NewConnection{ConnID: 42, Protocol: proto.TCP})
		st, err := conn.OpenStreamSync(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		proto.WriteStreamHeader(st, 42)
		st.Write([]byte("hello"))
		st.Close()
		io.ReadAll(st) // the echo, or the reset
		m, err := r.Read()
		if err != nil {
			t.Fatal(err)
		}
		if cc, ok := m.(proto.ConnectionClose); !ok || cc.ConnID != 42 || cc.Reason != tt.want {
			t.Errorf("destination %s: got %#v, want ConnectionClose{42, %v}", tt.dest, m, tt.want)
		}
	}
}
