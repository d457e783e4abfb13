package auth

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func mustKey(t testing.TB) PrivateKey {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// run runs both sides of the handshake over an in-memory pipe and returns
// their errors.
func run(t *testing.T, serverBinding, clientBinding []byte, sc ServerConfig, cc ClientConfig) (Peer, error, error) {
	t.Helper()
	s, c := net.Pipe()
	deadline := time.Now().Add(5 * time.Second)
	s.SetDeadline(deadline)
	c.SetDeadline(deadline)
	type result struct {
		p   Peer
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := Server(s, serverBinding, sc)
		s.Close() // like the server closing the QUIC connection after a failure
		done <- result{p, err}
	}()
	cerr := Client(c, clientBinding, cc)
	c.Close()
	r := <-done
	return r.p, r.err, cerr
}

func TestHandshake(t *testing.T) {
	binding := bytes.Repeat([]byte{7}, BindingSize)
	other := bytes.Repeat([]byte{8}, BindingSize)
	serverKey, clientKey, strangerKey := mustKey(t), mustKey(t), mustKey(t)
	psk := PSK("correct horse battery staple")
	x25519Server := ServerConfig{PrivateKey: serverKey, AuthorizedKeys: []AuthorizedKey{{Key: clientKey.Public(), Comment: "laptop"}}}
	past := func() time.Time { return time.Now().Add(-31 * time.Second) }

	tests := []struct {
		name          string
		sc            ServerConfig
		cc            ClientConfig
		clientBinding []byte
		wantServerErr string // substring of the server's rejection; "" = success
		wantClientErr string
	}{
		{name: "psk ok", sc: ServerConfig{PSK: psk}, cc: ClientConfig{PSK: psk}},
		{name: "x25519 ok", sc: x25519Server, cc: ClientConfig{PrivateKey: clientKey, ServerKey: serverKey.Public()}},
		{name: "wrong psk", sc: ServerConfig{PSK: psk}, cc: ClientConfig{PSK: PSK("wrong")},
			wantServerErr: "PSK does not match", wantClientErr: "server rejected authentication: the client's PSK does not match"},
		{name: "expired timestamp", sc: ServerConfig{PSK: psk}, cc: ClientConfig{PSK: psk, Now: past},
			wantServerErr: "clock is", wantClientErr: "more than the 30s allowed"},
		{name: "unauthorized key", sc: x25519Server, cc: ClientConfig{PrivateKey: strangerKey, ServerKey: serverKey.Public()},
			wantServerErr: "not authorized", wantClientErr: strangerKey.Public().String() + " is not authorized"},
		{name: "wrong server key", sc: x25519Server, cc: ClientConfig{PrivateKey: clientKey, ServerKey: strangerKey.Public()},
			wantServerErr: "read X25519 finish", wantClientErr: "server presented public key"},
		{name: "mode mismatch psk to x25519", sc: x25519Server, cc: ClientConfig{PSK: psk},
			wantServerErr: "requires x25519", wantClientErr: "requires x25519"},
		{name: "mode mismatch x25519 to psk", sc: ServerConfig{PSK: psk}, cc: ClientConfig{PrivateKey: clientKey, ServerKey: serverKey.Public()},
			wantServerErr: "requires psk", wantClientErr: "requires psk"},
		{name: "mtls ok", sc: ServerConfig{MTLS: true}, cc: ClientConfig{MTLS: true}},
		{name: "mtls hello to a psk server", sc: ServerConfig{PSK: psk, MTLS: true}, cc: ClientConfig{MTLS: true},
			wantServerErr: "on top of the certificate", wantClientErr: "add --psk-file"},
		// Different exporter values model a relay that terminates TLS on both sides.
		{name: "psk relayed", sc: ServerConfig{PSK: psk}, cc: ClientConfig{PSK: psk}, clientBinding: other,
			wantServerErr: "PSK does not match", wantClientErr: "rejected"},
		{name: "x25519 relayed", sc: x25519Server, cc: ClientConfig{PrivateKey: clientKey, ServerKey: serverKey.Public()}, clientBinding: other,
			wantServerErr: "read X25519 finish", wantClientErr: "man in the middle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb := binding
			if tt.clientBinding != nil {
				cb = tt.clientBinding
			}
			peer, serr, cerr := run(t, binding, cb, tt.sc, tt.cc)
			if tt.wantServerErr == "" {
				if serr != nil || cerr != nil {
					t.Fatalf("server error %v, client error %v; want success", serr, cerr)
				}
				if peer.Method != tt.sc.Method() {
					t.Errorf("peer method = %v, want %v", peer.Method, tt.sc.Method())
				}
				if peer.Method == MethodX25519 && (peer.Key != clientKey.Public() || peer.Comment != "laptop") {
					t.Errorf("peer = %+v, want the laptop key", peer)
				}
				return
			}
			if serr == nil || !strings.Contains(serr.Error(), tt.wantServerErr) {
				t.Errorf("server error = %v, want one containing %q", serr, tt.wantServerErr)
			}
			if cerr == nil || !strings.Contains(cerr.Error(), tt.wantClientErr) {
				t.Errorf("client error = %v, want one containing %q", cerr, tt.wantClientErr)
			}
			var re *RejectedError
			if !errors.As(cerr, &re) {
				t.Errorf("client error %T is not a *RejectedError", cerr)
			}
		})
	}
}

func TestSecretsRedacted(t *testing.T) {
	k := mustKey(t)
	psk := PSK("hunter2-hunter2")
	for _, s := range []string{k.String(), psk.String(), k.LogValue().String(), psk.LogValue().String()} {
		if strings.Contains(s, k.Encode()) || strings.Contains(s, "hunter2") {
			t.Errorf("secret printed: %q", s)
		}
	}
}

// rw feeds fixed input to a handshake and discards its output.
type rw struct{ io.Reader }

func (rw) Write(p []byte) (int, error) { return len(p), nil }

// FuzzServer feeds arbitrary client bytes to the server side of the
// handshake: it must fail cleanly, never panic, and never authenticate.
func FuzzServer(f *testing.F) {
	k := mustKey(f)
	f.Add([]byte(pskMagic + strings.Repeat("\x00", 72)))
	f.Add([]byte(x25519Magic + string(k.Public().String()[:32]) + strings.Repeat("\x01", 32) + strings.Repeat("\x02", 32)))
	f.Add([]byte("QUICPORT_"))
	binding := make([]byte, BindingSize)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, cfg := range []ServerConfig{
			{PSK: PSK("fuzz")},
			{PrivateKey: k, AuthorizedKeys: []AuthorizedKey{{Key: k.Public()}}},
		} {
			if _, err := Server(rw{bytes.NewReader(in)}, binding, cfg); err == nil {
				t.Fatalf("random input authenticated: %x", in)
			}
		}
	})
}

// FuzzClient feeds arbitrary server bytes to the client side: it must fail
// cleanly and never accept a server that cannot prove the key.
func FuzzClient(f *testing.F) {
	k := mustKey(f)
	f.Add([]byte{0, 0})
	f.Add([]byte{1, 5, 'h', 'e', 'l', 'l', 'o'})
	f.Add(append([]byte{0, 0}, make([]byte, 128)...))
	f.Add([]byte{1, 255, 'x'})
	binding := make([]byte, BindingSize)
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, cfg := range []ClientConfig{
			{PSK: PSK("fuzz")},
			{PrivateKey: k, ServerKey: k.Public()},
		} {
			if err := Client(rw{bytes.NewReader(in)}, binding, cfg); err == nil {
				t.Fatalf("random server reply accepted: %x", in)
			}
		}
	})
}

func BenchmarkHandshake(b *testing.B) {
	serverKey, clientKey := mustKey(b), mustKey(b)
	psk := PSK("benchmark-psk")
	binding := make([]byte, BindingSize)
	cases := []struct {
		name string
		sc   ServerConfig
		cc   ClientConfig
	}{
		{"psk", ServerConfig{PSK: psk}, ClientConfig{PSK: psk}},
		{"x25519", ServerConfig{PrivateKey: serverKey, AuthorizedKeys: []AuthorizedKey{{Key: clientKey.Public()}}},
			ClientConfig{PrivateKey: clientKey, ServerKey: serverKey.Public()}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				s, cl := net.Pipe()
				errc := make(chan error, 1)
				go func() { _, err := Server(s, binding, c.sc); errc <- err }()
				if err := Client(cl, binding, c.cc); err != nil {
					b.Fatal(err)
				}
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
				s.Close()
				cl.Close()
			}
		})
	}
}
