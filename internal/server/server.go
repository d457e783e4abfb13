// Package server is the quicport server in one process: it terminates QUIC,
// authenticates each client on its first stream, and serves that client's
// remote or local forward.
//
// One misbehaving client must never affect another: every per-session error
// closes that session only, and nothing but authentication is read from a
// client before it has authenticated.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

// Config configures a Server. The zero value of every optional field
// selects the documented default.
type Config struct {
	// Listen is the UDP address to serve QUIC on (default 0.0.0.0:39000).
	Listen string
	// Certificate is the server's TLS identity (required).
	Certificate tls.Certificate
	// Auth is the authentication policy (required).
	Auth auth.ServerConfig
	// AuthTimeout bounds the time from connection to authenticated
	// session, including the forward request (default 10 s).
	AuthTimeout time.Duration
	// DialTimeout bounds connecting to a local-forward destination
	// (default 10 s).
	DialTimeout time.Duration
	// KeepAlive and IdleTimeout tune QUIC liveness (defaults 5 s, 10 s).
	KeepAlive, IdleTimeout time.Duration
	// UDPIdleTimeout ends a UDP flow after silence both ways (default
	// 60 s); UDPMaxFlows caps a session's UDP flows (default 1024).
	UDPIdleTimeout time.Duration
	UDPMaxFlows    int
	// Logger receives the server's logs (nil discards them).
	Logger *slog.Logger
}

// DefaultListen is the default QUIC listen address.
const DefaultListen = "0.0.0.0:39000"

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.AuthTimeout == 0 {
		c.AuthTimeout = 10 * time.Second
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Stats are the server's counters since start.
type Stats struct {
	AuthSuccess, AuthFailed uint64
	SessionsActive          int64
	ConnectionsTotal        uint64
	ConnectionsActive       int64
	UDPFlowsActive          int64
	BytesSent, BytesRecv    uint64 // to clients, from clients (tunneled payload)
}

// Server serves quicport clients. Create it with Listen, run it with Serve.
type Server struct {
	cfg Config
	log *slog.Logger
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener

	wg sync.WaitGroup // sessions

	authOK, authFailed  atomic.Uint64
	sessions            atomic.Int64
	connsTotal          atomic.Uint64
	connsActive         atomic.Int64
	udpFlows            atomic.Int64
	bytesSent, bytesRcv atomic.Uint64
}

// Listen validates cfg and binds the server's UDP socket.
func Listen(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.Certificate.Certificate == nil {
		return nil, errors.New("server: no TLS certificate")
	}
	if cfg.Auth.PSK == nil && cfg.Auth.PrivateKey.IsZero() {
		return nil, errors.New("server: no authentication configured")
	}
	if cfg.Auth.PSK == nil && len(cfg.Auth.AuthorizedKeys) == 0 {
		return nil, errors.New("server: X25519 authentication needs at least one authorized client key")
	}
	addr, err := net.ResolveUDPAddr("udp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
	}
	udp, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s/udp: %w", cfg.Listen, err)
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(tlsid.ServerTLSConfig(cfg.Certificate), tunnel.QUICConfig(cfg.KeepAlive, cfg.IdleTimeout))
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("listen on %s/udp: %w", cfg.Listen, err)
	}
	return &Server{cfg: cfg, log: cfg.Logger, udp: udp, tr: tr, ln: ln}, nil
}

// Addr returns the UDP address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		AuthSuccess:       s.authOK.Load(),
		AuthFailed:        s.authFailed.Load(),
		SessionsActive:    s.sessions.Load(),
		ConnectionsTotal:  s.connsTotal.Load(),
		ConnectionsActive: s.connsActive.Load(),
		UDPFlowsActive:    s.udpFlows.Load(),
		BytesSent:         s.bytesSent.Load(),
		BytesRecv:         s.bytesRcv.Load(),
	}
}

// Serve accepts clients until ctx ends. Then it stops accepting, tells every
// client the session is closing, waits for the sessions to end, and closes
// the socket. It returns nil after a shutdown requested through ctx.
func (s *Server) Serve(ctx context.Context) error {
	defer s.closeTransport()
	var acceptErr error
	for {
		conn, err := s.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("accept: %w", err)
			}
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, conn)
		}()
	}
	s.ln.Close()
	s.wg.Wait()
	return acceptErr
}

func (s *Server) closeTransport() {
	s.ln.Close()
	s.tr.Close()
	s.udp.Close()
}

// handle authenticates one QUIC connection and serves its session.
func (s *Server) handle(ctx context.Context, conn *quic.Conn) {
	log := s.log.With("peer", conn.RemoteAddr().String())
	deadline := time.Now().Add(s.cfg.AuthTimeout)
	authCtx, cancel := context.WithDeadline(ctx, deadline)
	ctrl, err := conn.AcceptStream(authCtx)
	cancel()
	if err != nil {
		s.authFailed.Add(1)
		reason := "no authentication stream within the deadline"
		var ae *quic.ApplicationError
		if errors.As(err, &ae) && ae.Remote {
			reason = "client closed the connection before authenticating: " + ae.ErrorMessage
		}
		log.Warn("authentication failed", "reason", reason, "err", err)
		conn.CloseWithError(proto.ConnAuthFailed, "authentication timed out")
		return
	}
	ctrl.SetDeadline(deadline)
	binding, err := auth.Binding(conn.ConnectionState().TLS)
	if err != nil {
		log.Error("channel binding", "err", err)
		conn.CloseWithError(proto.ConnAuthFailed, "internal error")
		return
	}
	peer, err := auth.Server(ctrl, binding, s.cfg.Auth)
	if err != nil {
		s.authFailed.Add(1)
		reason := "authentication failed"
		var re *auth.RejectedError
		if errors.As(err, &re) {
			reason = re.Reason
			// The client has been told why; let it read that and hang up
			// first, so the reason reaches it intact.
			_ = ctrl.Close()
			select {
			case <-conn.Context().Done():
			case <-time.After(time.Second):
			}
		} else if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			reason = fmt.Sprintf("authentication did not complete within %v", s.cfg.AuthTimeout)
		}
		log.Warn("authentication failed", "method", s.cfg.Auth.Method(), "reason", reason, "err", err)
		conn.CloseWithError(proto.ConnAuthFailed, reason)
		return
	}
	s.authOK.Add(1)
	log = log.With("method", peer.Method.String())
	if peer.Method == auth.MethodX25519 {
		log = log.With("key", peer.Key.String(), "comment", peer.Comment)
	}
	log.Info("client authenticated")

	s.sessions.Add(1)
	defer s.sessions.Add(-1)
	sess := &session{srv: s, conn: conn, ctrl: ctrl, log: log, deadline: deadline}
	sess.serve(ctx)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
