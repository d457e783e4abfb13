// Package testutil is the harness for quicport's integration tests: an
// in-process server and client on 127.0.0.1:0, TCP peers that verify every
// byte, and fixtures. It is imported only by tests.
package testutil

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/tlsid"
)

// Logger returns a logger that writes to the test log at debug level when
// QUICPORT_TEST_LOG is set, and discards otherwise.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("QUICPORT_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// Identity returns a server certificate persisted in a fresh directory.
func Identity(t testing.TB) tls.Certificate {
	t.Helper()
	c, err := tlsid.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Key returns a fresh X25519 private key.
func Key(t testing.TB) auth.PrivateKey {
	t.Helper()
	k, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Server is a running in-process server.
type Server struct {
	*server.Server
	cancel context.CancelFunc
	done   chan error
}

// Done is closed when Serve has returned.
func (s *Server) Done() <-chan error { return s.done }

// Addr returns the server's host:port.
func (s *Server) AddrString() string { return s.Addr().String() }

// Stop shuts the server down and waits for it. It is safe to call twice.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.cancel()
	select {
	case err, ok := <-s.done:
		if ok && err != nil {
			t.Errorf("server: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Error("server did not stop within 15s")
	}
}

// StartServer starts a server on 127.0.0.1:0 unless cfg.Listen is set. It
// is stopped when the test ends.
func StartServer(t testing.TB, cfg server.Config) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Certificate.Certificate == nil {
		cfg.Certificate = Identity(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = Logger(t).With("side", "server")
	}
	srv, err := server.Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{Server: srv, cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- srv.Serve(ctx)
		close(s.done)
	}()
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// Client is a running in-process client session.
type Client struct {
	Ready  client.Ready
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, set before done is closed
}

// Done is closed when Run returns; Err then holds its result.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns Run's result once Done is closed.
func (c *Client) Err() error { return c.err }

// Stop ends the session and returns Run's result. It is safe to call twice.
func (c *Client) Stop() error {
	c.cancel()
	<-c.done
	return c.err
}

// StartClient runs a client session and waits until its forward is ready.
// It fails the test if the session ends first.
func StartClient(t testing.TB, cfg client.Config) *Client {
	t.Helper()
	c, err := TryClient(t, cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return c
}

// TryClient runs a client session and returns once its forward is ready, or
// with Run's error if the session ends first.
func TryClient(t testing.TB, cfg client.Config) (*Client, error) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = Logger(t).With("side", "client")
	}
	if cfg.TOFU.Out == nil {
		cfg.TOFU.Out = io.Discard
	}
	ready := make(chan client.Ready, 1)
	user := cfg.OnReady
	cfg.OnReady = func(r client.Ready) {
		select {
		case ready <- r: // the first time
		default:
		}
		if user != nil {
			user(r)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{cancel: cancel, done: make(chan struct{})}
	go func() {
		c.err = client.Run(ctx, cfg)
		close(c.done)
	}()
	select {
	case c.Ready = <-ready:
		t.Cleanup(func() { c.Stop() })
		return c, nil
	case <-c.done:
		cancel()
		if c.err == nil {
			return nil, errors.New("client session ended without an error before it was ready")
		}
		return nil, c.err
	case <-time.After(30 * time.Second):
		c.Stop()
		return nil, errors.New("client not ready within 30s")
	}
}

// EchoServer starts a TCP server on 127.0.0.1:0 that echoes every byte and
// forwards half-close: when its peer stops sending, it stops after echoing
// everything. It returns the server's address.
func EchoServer(t testing.TB) string {
	t.Helper()
	return echoServer(t, "tcp", "127.0.0.1:0")
}

func echoServer(t testing.TB, network, addr string) string {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// Port returns the port of a host:port address.
func Port(t testing.TB, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// EchoCheck connects to addr, sends n pseudo-random bytes while reading the
// echo concurrently, half-closes, and checks that the sha256 of what came
// back equals that of what was sent.
func EchoCheck(addr string, n int64, seed uint64) error {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	sent := sha256.New()
	errc := make(chan error, 1)
	go func() {
		src := io.LimitReader(rand.NewChaCha8(seedBytes(seed)), n)
		_, err := io.Copy(io.MultiWriter(c, sent), src)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		errc <- err
	}()
	got := sha256.New()
	m, err := io.Copy(got, c)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("send: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("receive after %d bytes: %w", m, err)
	}
	if m != n {
		return fmt.Errorf("received %d bytes, sent %d", m, n)
	}
	if string(got.Sum(nil)) != string(sent.Sum(nil)) {
		return fmt.Errorf("sha256 of %d echoed bytes differs from what was sent", n)
	}
	return nil
}

func seedBytes(seed uint64) (b [32]byte) {
	for i := range 4 {
		for j := range 8 {
			b[i*8+j] = byte(seed >> (8 * j))
		}
	}
	return b
}

// KnownHosts returns a TOFU policy on a fresh known_hosts file that accepts
// new hosts without asking.
func KnownHosts(t testing.TB) tlsid.TOFU {
	return tlsid.TOFU{KnownHosts: tlsid.KnownHosts{Path: filepath.Join(t.TempDir(), "known_hosts")}, AcceptNew: true, Out: io.Discard}
}

// EchoServer6 is EchoServer on [::1].
func EchoServer6(t testing.TB) string {
	t.Helper()
	return echoServer(t, "tcp", "[::1]:0")
}
