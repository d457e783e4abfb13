//go:build linux

package integration

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

// mitm terminates QUIC/TLS towards the client with its own certificate,
// opens its own QUIC/TLS connection to the server, and copies the bytes of
// every stream both ways: a perfect relay of the authentication messages.
// It returns its address.
func mitm(t *testing.T, serverAddr string) string {
	t.Helper()
	ln, err := quic.ListenAddr("127.0.0.1:0", tlsid.ServerTLSConfig(testutil.Identity(t), false), tunnel.QUICConfig(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			down, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			up, err := quic.DialAddr(ctx, serverAddr, tlsid.ClientTLSConfig("localhost", nil, nil), tunnel.QUICConfig(0, 0))
			if err != nil {
				down.CloseWithError(1, "")
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer down.CloseWithError(0, "")
				defer up.CloseWithError(0, "")
				ds, err := down.AcceptStream(ctx)
				if err != nil {
					return
				}
				us, err := up.OpenStreamSync(ctx)
				if err != nil {
					return
				}
				done := make(chan struct{}, 2)
				go func() { io.Copy(us, ds); done <- struct{}{} }()
				go func() { io.Copy(ds, us); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

// A relay that terminates TLS on both sides and copies the authentication
// bytes must not get an authenticated session, even though the client skips
// the certificate check: only channel binding stops it.
func TestManInTheMiddle(t *testing.T) {
	for _, cr := range credentials(t) {
		t.Run(cr.name, func(t *testing.T) {
			srv := testutil.StartServer(t, server.Config{Auth: cr.server})
			relay := mitm(t, srv.AddrString())
			_, err := testutil.TryClient(t, client.Config{
				Server: relay, Auth: cr.client, Insecure: true,
				Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, "22")},
			})
			if err == nil {
				t.Fatal("client got a session through the relay")
			}
			t.Logf("client said: %v", err)
			time.Sleep(100 * time.Millisecond) // let the server finish its side
			if st := srv.Stats(); st.AuthSuccess != 0 {
				t.Fatalf("server authenticated %d session(s) through the relay", st.AuthSuccess)
			}
			// Without the relay the same credentials work.
			goodClientWorks(t, srv, cr.client)
		})
	}
}

func TestTOFU(t *testing.T) {
	cr := credentials(t)[0]
	identityDir := t.TempDir()
	cert, err := tlsid.LoadOrCreate(identityDir)
	if err != nil {
		t.Fatal(err)
	}
	srv := testutil.StartServer(t, server.Config{Auth: cr.server, Certificate: cert})
	addr := srv.AddrString()
	kh := tlsid.KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	connect := func(tofu tlsid.TOFU, creds auth.ClientConfig) error {
		tofu.KnownHosts = kh
		c, err := testutil.TryClient(t, client.Config{
			Server: addr, Auth: creds, TOFU: tofu,
			Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, "22")},
		})
		if err == nil {
			c.Stop()
		}
		return err
	}

	// Unknown, no terminal: refused, permanently, nothing recorded.
	err = connect(tlsid.TOFU{}, cr.client)
	if !errors.Is(err, tlsid.ErrUnknownHost) || !client.IsPermanent(err) || !strings.Contains(err.Error(), "--accept-new-host") {
		t.Fatalf("unknown host: %v", err)
	}
	// --accept-new-host records it; afterwards it is known.
	if err := connect(tlsid.TOFU{AcceptNew: true}, cr.client); err != nil {
		t.Fatal(err)
	}
	fp, _, found, _ := kh.Lookup(addr)
	if !found || fp != tlsid.Fingerprint(cert.Certificate[0]) {
		t.Fatalf("known_hosts has %q (found %v), want the server's fingerprint", fp, found)
	}
	if err := connect(tlsid.TOFU{}, cr.client); err != nil {
		t.Fatalf("known host: %v", err)
	}

	// A restarted server with the persisted identity still matches.
	srv.Stop(t)
	cert2, err := tlsid.LoadOrCreate(identityDir)
	if err != nil {
		t.Fatal(err)
	}
	testutil.StartServer(t, server.Config{Auth: cr.server, Certificate: cert2, Listen: addr}).Stop(t)
	srv = testutil.StartServer(t, server.Config{Auth: cr.server, Certificate: cert2, Listen: addr})
	if err := connect(tlsid.TOFU{}, cr.client); err != nil {
		t.Fatalf("after restart with the persisted identity: %v", err)
	}

	// A server with another identity on the same address is refused, even
	// with --accept-new-host.
	srv.Stop(t)
	testutil.StartServer(t, server.Config{Auth: cr.server, Listen: addr})
	err = connect(tlsid.TOFU{AcceptNew: true}, cr.client)
	if !errors.Is(err, tlsid.ErrHostChanged) || !client.IsPermanent(err) {
		t.Fatalf("changed certificate: %v", err)
	}
}

// With a pinned server key, an unknown certificate is recorded once the
// server has proved the key.
func TestTOFUPinnedKeyRecords(t *testing.T) {
	cr := credentials(t)[1]
	srv := testutil.StartServer(t, server.Config{Auth: cr.server})
	kh := tlsid.KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	c := testutil.StartClient(t, client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: tlsid.TOFU{KnownHosts: kh, Out: io.Discard},
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, "22")},
	})
	c.Stop()
	if _, _, found, _ := kh.Lookup(srv.AddrString()); !found {
		t.Fatal("certificate of a key-authenticated server was not recorded")
	}
	// A wrong pinned key records nothing.
	kh2 := tlsid.KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}
	bad := cr.client
	bad.ServerKey = testutil.Key(t).Public()
	_, err := testutil.TryClient(t, client.Config{
		Server: srv.AddrString(), Auth: bad, TOFU: tlsid.TOFU{KnownHosts: kh2, Out: io.Discard},
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, "22")},
	})
	if err == nil {
		t.Fatal("wrong pinned key accepted")
	}
	if _, _, found, _ := kh2.Lookup(srv.AddrString()); found {
		t.Fatal("certificate recorded although the server did not prove the pinned key")
	}
}
