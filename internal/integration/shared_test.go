//go:build linux

package integration

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
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

// silentConn is a client's UDP socket that can go silent: from then on it
// sends nothing and drops what arrives, as a client that lost its network
// (or its process) would.
type silentConn struct {
	net.PacketConn
	silent atomic.Bool
}

func (c *silentConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, a, err := c.PacketConn.ReadFrom(b)
		if err != nil || !c.silent.Load() {
			return n, a, err
		}
	}
}

// SetReadBuffer and SetWriteBuffer let quic-go size the socket's buffers.
func (c *silentConn) SetReadBuffer(n int) error { return c.PacketConn.(*net.UDPConn).SetReadBuffer(n) }
func (c *silentConn) SetWriteBuffer(n int) error {
	return c.PacketConn.(*net.UDPConn).SetWriteBuffer(n)
}

func (c *silentConn) WriteTo(b []byte, a net.Addr) (int, error) {
	if c.silent.Load() {
		return len(b), nil
	}
	return c.PacketConn.WriteTo(b, a)
}

// The rules of a shared remote forward, on the wire (docs/PROTOCOL.md §4):
// a session of the same client process (token) joins the port and gets
// its connections once the member that went silent is closed; a session
// with another token meets the port in use; a shared UDP forward is a
// protocol error.
func TestSharedRemoteForwardOnTheWire(t *testing.T) {
	psk := auth.PSK("shared-port-test-psk")
	// An idle timeout far longer than the test: only the probe can close
	// the silent member in time.
	srv := testutil.StartServer(t, server.Config{Auth: auth.ServerConfig{PSK: psk}, IdleTimeout: 2 * time.Minute})
	port := uint16(testutil.FreePort(t))
	const token = 0x5eed
	request := func(ctrl interface{ Write([]byte) (int, error) }, r *proto.Reader, tok uint64) proto.ForwardResponse {
		t.Helper()
		if err := proto.Write(ctrl, proto.RemoteForwardRequest{Port: port, Protocol: proto.TCP, Shared: true, Token: tok, LocalDestination: "test"}); err != nil {
			t.Fatal(err)
		}
		m, err := r.Read()
		if err != nil {
			t.Fatalf("forward response: %v", err)
		}
		return m.(proto.ForwardResponse)
	}

	// A opens the port, then goes silent.
	pcA, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	silentA := &silentConn{PacketConn: pcA}
	_, ctrlA, rA := rawSessionOver(t, srv, psk, silentA)
	if resp := request(ctrlA, rA, token); resp.Status != proto.StatusSuccess {
		t.Fatalf("first shared request: %+v", resp)
	}
	silentA.silent.Store(true)

	// B, of the same client process, joins; the server probes A and
	// closes it.
	connB, ctrlB, rB := rawSession(t, srv, psk)
	if resp := request(ctrlB, rB, token); resp.Status != proto.StatusSuccess {
		t.Fatalf("joining shared request: %+v", resp)
	}
	waitFor(t, func() bool { return len(srv.Sessions()) == 1 }, "the silent member to be closed")

	// Every connection to the port now goes to B.
	for i := range 3 {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", testutil.Itoa(int(port))))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		st, err := connB.AcceptStream(ctx)
		cancel()
		if err != nil {
			t.Fatalf("connection %d did not reach the joined session: %v", i, err)
		}
		if _, err := proto.ReadStreamHeader(st); err != nil {
			t.Fatalf("connection %d: stream header: %v", i, err)
		}
	}

	// C has the same credentials but another token: the port is in use
	// while B answers.
	_, ctrlC, rC := rawSession(t, srv, psk)
	if resp := request(ctrlC, rC, token+1); resp.Status != proto.StatusPortInUse {
		t.Errorf("a session with another token: %+v, want port in use", resp)
	}

	// A shared UDP forward is refused as a protocol error.
	connD, ctrlD, _ := rawSession(t, srv, psk)
	if err := proto.Write(ctrlD, proto.RemoteForwardRequest{Port: port, Protocol: proto.UDP, Shared: true, Token: token}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connD.Context().Done():
		var ae *quic.ApplicationError
		if err := context.Cause(connD.Context()); !errors.As(err, &ae) || ae.ErrorCode != proto.ConnProtocolError {
			t.Errorf("shared UDP request closed the session with %v, want the protocol error %#x", err, proto.ConnProtocolError)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a shared UDP request did not close the session")
	}
}

// A server older than shared remote forwards takes the shared request for a
// malformed one and closes the session with a protocol error. The client
// stops at once with a message that says what to do, instead of
// reconnecting forever. The old server is played here by a listener that
// authenticates and then answers a shared request as quicport before
// 2026-11-24 did.
func TestSharedRemoteForwardToAnOlderServer(t *testing.T) {
	psk := auth.PSK("older-server-test-psk")
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsid.ServerTLSConfig(testutil.Identity(t), false), tunnel.QUICConfig(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var sharedSeen atomic.Bool
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				st, err := conn.AcceptStream(context.Background())
				if err != nil {
					return
				}
				binding, _ := auth.Binding(conn.ConnectionState().TLS)
				if _, err := auth.Server(st, binding, auth.ServerConfig{PSK: psk}); err != nil {
					return
				}
				// The client has two sessions; once one is refused it
				// closes the other, maybe before its request is read.
				m, err := proto.NewReader(st).Read()
				if err != nil {
					return
				}
				if req, ok := m.(proto.RemoteForwardRequest); !ok || !req.Shared {
					t.Errorf("the client's request: %#v; want a shared RemoteForwardRequest", m)
				}
				sharedSeen.Store(true)
				conn.CloseWithError(proto.ConnProtocolError, "read forward request: malformed control message: RemoteForwardRequest with unknown protocol 0x81")
			}()
		}
	}()
	start := time.Now()
	_, err = testutil.TryClient(t, client.Config{
		Server: ln.Addr().String(), Auth: auth.ClientConfig{PSK: psk}, TOFU: testutil.KnownHosts(t),
		Forward:   client.Forward{Remote: true, Source: mustAddr(t, testutil.Itoa(testutil.FreePort(t))), Dest: mustAddr(t, "22")},
		Reconnect: true, Sessions: 2,
	})
	if err == nil || !strings.Contains(err.Error(), "it runs a quicport older than this client; upgrade the server, or leave --quic-connections at 1") {
		t.Fatalf("client of an older server: %v", err)
	}
	if !client.IsPermanent(err) {
		t.Errorf("the error is not permanent: %v", err)
	}
	if !sharedSeen.Load() {
		t.Error("the stand-in server never read a shared RemoteForwardRequest")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the client gave up after %v; it should on the first refusal", d)
	}
}
