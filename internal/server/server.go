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
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/audit"
	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/permit"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
	"github.com/quicport/quicport/internal/workers"
)

// Config configures a Server. The zero value of every optional field
// selects the documented default.
type Config struct {
	// Listen is the UDP address to serve QUIC on (default 0.0.0.0:39000).
	Listen string
	// Certificate is the server's TLS identity (required).
	Certificate tls.Certificate
	// Auth is the authentication policy (required unless ClientCAs is set).
	Auth auth.ServerConfig
	// ClientCAs, if set, makes TLS require client certificates that chain
	// to them (mTLS); alone it is the authentication method, with a PSK or
	// keys both apply. AllowedNames, if not empty, lists the certificate
	// names (CN, DNS, email or URI SAN) that may connect.
	ClientCAs    *x509.CertPool
	AllowedNames []string
	// AuthTimeout bounds the time from connection to authenticated
	// session, including the forward request (default 10 s).
	AuthTimeout time.Duration
	// DialTimeout bounds connecting to a local-forward destination
	// (default 10 s).
	DialTimeout time.Duration
	// KeepAlive and IdleTimeout tune QUIC liveness (defaults 5 s, 10 s).
	KeepAlive, IdleTimeout time.Duration
	// Congestion is the congestion controller for what the server sends
	// (default NewReno).
	Congestion tunnel.Congestion
	// StreamWindow is the most each tunneled connection may have in
	// flight towards this side before it reads (default
	// tunnel.StreamWindow, 6 MiB); a session may hold eight of them.
	StreamWindow int64
	// UDPIdleTimeout ends a UDP flow after silence both ways (default
	// 60 s); UDPMaxFlows caps a session's UDP flows (default 1024).
	UDPIdleTimeout time.Duration
	UDPMaxFlows    int
	// PermitListen and PermitOpen limit the ports remote forwards may open
	// and the destinations local forwards may reach (unset: any port from
	// 1024 up, any destination). Authorized keys' own options narrow them.
	PermitListen permit.Ports
	PermitOpen   permit.Dests
	// MaxUnauthenticated caps connections that have not authenticated yet
	// (default 256); more are closed at once.
	MaxUnauthenticated int
	// AuthFailureBurst failed authentications from one source address
	// (default 10), refilled one per AuthFailureRefill (default 10 s), and
	// then that address is refused before its TLS handshake.
	AuthFailureBurst  int
	AuthFailureRefill time.Duration
	// MaxConnsPerSession caps a session's concurrent tunneled connections
	// (default 10,000); ConnRate caps new ones per second (default 1000,
	// burst of twice that). Excess connections are refused and logged.
	MaxConnsPerSession int
	ConnRate           float64
	// BandwidthLimit caps a session's tunneled bytes per second in each
	// direction (0 = none).
	BandwidthLimit int64
	// MaxSessionsPerKey caps concurrent sessions of one X25519 key or
	// certificate subject (default 16; negative = unlimited).
	MaxSessionsPerKey int
	// ObserveHandshake, if set, is called with the time from a connection's
	// acceptance to its successful authentication (for a histogram).
	ObserveHandshake func(time.Duration)
	// Audit, if set, receives security events.
	Audit *audit.Log
	// Logger receives the server's logs (nil discards them).
	Logger *slog.Logger

	// PacketConn, if set, is the UDP socket to serve on instead of binding
	// Listen: a data plane's socket, opened by the control plane.
	PacketConn *net.UDPConn
	// ConnectionIDs, if set, issues the server's QUIC connection IDs (a
	// data plane's steer.CIDGenerator).
	ConnectionIDs quic.ConnectionIDGenerator
	// NoStatelessResets turns off the stateless resets the server sends for
	// packets of connections it does not know (see statelessResetKey): for
	// a data plane that shares its port without steering, where such a
	// packet may belong to another data plane's live connection.
	NoStatelessResets bool
	// TakeOver, if set, is asked for the listening socket of a remote
	// forward whose port is in use: a draining data plane hands its socket
	// over when a session of the same client identity sets the forward up
	// again, so the port never stops accepting.
	TakeOver func(port uint16, protocol proto.Protocol, identity string) (*os.File, error)
}

// DefaultListen is the default QUIC listen address.
const DefaultListen = "0.0.0.0:39000"

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = tunnel.StreamWindow
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
	if c.MaxUnauthenticated == 0 {
		c.MaxUnauthenticated = DefaultMaxUnauthenticated
	}
	if c.AuthFailureBurst == 0 {
		c.AuthFailureBurst = DefaultAuthFailureBurst
	}
	if c.AuthFailureRefill == 0 {
		c.AuthFailureRefill = DefaultAuthFailureRefill
	}
	if c.MaxConnsPerSession == 0 {
		c.MaxConnsPerSession = DefaultMaxConnsPerSession
	}
	if c.ConnRate == 0 {
		c.ConnRate = DefaultConnRate
	}
	if c.MaxSessionsPerKey == 0 {
		c.MaxSessionsPerKey = DefaultMaxSessionsPerKey
	}
}

// Stats are the server's counters since start.
type Stats struct {
	AuthSuccess, AuthFailed uint64
	// AuthSuccessBy and AuthFailedBy split the above by method (a failure
	// counts under the server's method).
	AuthSuccessBy, AuthFailedBy map[auth.Method]uint64
	SessionsActive              int64
	ConnectionsTotal            uint64
	ConnectionsActive           int64
	UDPFlowsActive              int64
	ForwardsDenied              uint64
	SourcesRefused              uint64 // connections refused for failed-auth budget or busy
	ConnectionsRefused          uint64 // tunneled connections over a session's limits
	UDPSendRefused              uint64 // datagrams the kernel refused to send, treated as lost (tunnel.LossyConn)
	UDPDatagramsDropped         uint64 // remote UDP forwards' datagrams dropped on the way in (flow backed up or flow limit)
	Authenticating              int64  // connections not yet authenticated
	BytesSent, BytesRecv        uint64 // to clients, from clients (tunneled payload)
	// ForwardsActive counts established forwards by kind and protocol:
	// "local/tcp", "local/udp", "remote/tcp", "remote/udp".
	ForwardsActive map[string]int64
}

// Server serves quicport clients. Create it with Listen, run it with Serve.
type Server struct {
	cfg Config
	log *slog.Logger
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener

	keyRules map[auth.PublicKey]keyRules
	failures *failureBudget
	perKey   keySessions
	unauth   atomic.Int64 // connections not yet authenticated

	wg      sync.WaitGroup // sessions
	workers *workers.Pool  // tunneled connections' goroutines

	authOK, authFailed atomic.Uint64
	okBy, failBy       [4]atomic.Uint64 // by auth.Method
	serving            atomic.Bool
	draining           atomic.Bool
	stopped            chan struct{} // closed when Serve stops accepting
	started            time.Time

	sessMu              sync.Mutex
	sessList            map[*session]struct{}
	shared              map[shareKey]*sharedPort // shared remote forwards (shared.go)
	sessions            atomic.Int64
	connsTotal          atomic.Uint64
	connsActive         atomic.Int64
	udpFlows            atomic.Int64
	udpDropped          atomic.Uint64
	deniedForwards      atomic.Uint64
	refusedSources      atomic.Uint64
	sendRefused         atomic.Uint64
	refusedConns        atomic.Uint64
	bytesSent, bytesRcv atomic.Uint64
	forwards            [2][3]atomic.Int64 // [remote][proto.Protocol]
}

// Listen validates cfg and binds the server's UDP socket.
func Listen(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if cfg.Certificate.Certificate == nil {
		return nil, errors.New("server: no TLS certificate")
	}
	cfg.Auth.MTLS = cfg.ClientCAs != nil
	if cfg.Auth.Method() == 0 {
		return nil, errors.New("server: no authentication configured")
	}
	if cfg.Auth.Method() == auth.MethodX25519 && len(cfg.Auth.AuthorizedKeys) == 0 {
		return nil, errors.New("server: X25519 authentication needs at least one authorized client key")
	}
	if err := tunnel.CheckStreamWindow(cfg.StreamWindow); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	keyRules, err := parseKeyRules(cfg.Auth.AuthorizedKeys)
	if err != nil {
		return nil, err
	}
	udp := cfg.PacketConn
	if udp == nil {
		addr, err := net.ResolveUDPAddr("udp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
		}
		if udp, err = net.ListenUDP("udp", addr); err != nil {
			return nil, fmt.Errorf("listen on %s/udp: %w", cfg.Listen, err)
		}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, udp: udp, stopped: make(chan struct{}), workers: workers.New(workers.DefaultIdle), keyRules: keyRules, started: time.Now(), sessList: map[*session]struct{}{}, shared: map[shareKey]*sharedPort{},
		failures: newFailureBudget(cfg.AuthFailureBurst, cfg.AuthFailureRefill)}
	qc := tunnel.QUICConfig(cfg.KeepAlive, cfg.IdleTimeout)
	tunnel.SetWindows(qc, cfg.StreamWindow)
	cfg.Congestion.Apply(qc)
	perConn := qc.Clone() // what every accepted connection uses
	qc.GetConfigForClient = func(info *quic.ClientInfo) (*quic.Config, error) {
		// A draining server takes no new connections: refused at the
		// first packet, the client retries (the new data plane).
		if s.draining.Load() {
			return nil, errors.New("server is draining")
		}
		// Refuse a source that keeps failing to authenticate before any
		// cryptography is spent on it.
		if s.failures.refused(info.RemoteAddr) {
			s.refusedSources.Add(1)
			return nil, errors.New("too many failed authentications from this address")
		}
		// A nil config would mean quic-go's defaults, not ours.
		return perConn, nil
	}
	s.tr = &quic.Transport{Conn: tunnel.WithGRO(tunnel.LossyConn{UDPConn: udp, Refused: tunnel.RefusedSends(&s.sendRefused, s.log)}), ConnectionIDGenerator: cfg.ConnectionIDs,
		StatelessResetKey: statelessResetKey(cfg)}
	s.ln, err = s.tr.Listen(tlsid.ServerTLSConfig(cfg.Certificate, cfg.ClientCAs != nil), qc)
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("listen on %s/udp: %w", cfg.Listen, err)
	}
	return s, nil
}

// keyRules are an authorized key's own permitlisten/permitopen options.
type keyRules struct {
	listen permit.Ports
	open   permit.Dests
}

func parseKeyRules(keys []auth.AuthorizedKey) (map[auth.PublicKey]keyRules, error) {
	m := map[auth.PublicKey]keyRules{}
	for _, k := range keys {
		var r keyRules
		var err error
		if k.PermitListen != "" {
			if r.listen, err = permit.ParsePorts(k.PermitListen); err != nil {
				return nil, fmt.Errorf("authorized key %s: permitlisten: %w", k.Key, err)
			}
		}
		if k.PermitOpen != "" {
			if r.open, err = permit.ParseDests(k.PermitOpen); err != nil {
				return nil, fmt.Errorf("authorized key %s: permitopen: %w", k.Key, err)
			}
		}
		m[k.Key] = r
	}
	return m, nil
}

// policy returns what a session of peer may do.
func (s *Server) policy(peer auth.Peer) permit.Policy {
	p := permit.Policy{Listen: s.cfg.PermitListen, Open: s.cfg.PermitOpen}
	if peer.Method == auth.MethodX25519 {
		r := s.keyRules[peer.Key]
		p.KeyListen, p.KeyOpen = r.listen, r.open
	}
	return p
}

// Addr returns the UDP address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		AuthSuccess:         s.authOK.Load(),
		AuthFailed:          s.authFailed.Load(),
		AuthSuccessBy:       byMethod(&s.okBy),
		AuthFailedBy:        byMethod(&s.failBy),
		SessionsActive:      s.sessions.Load(),
		ConnectionsTotal:    s.connsTotal.Load(),
		ConnectionsActive:   s.connsActive.Load(),
		UDPFlowsActive:      s.udpFlows.Load(),
		ForwardsDenied:      s.deniedForwards.Load(),
		SourcesRefused:      s.refusedSources.Load(),
		ConnectionsRefused:  s.refusedConns.Load(),
		UDPSendRefused:      s.sendRefused.Load(),
		UDPDatagramsDropped: s.udpDropped.Load(),
		Authenticating:      s.unauth.Load(),
		BytesSent:           s.bytesSent.Load(),
		BytesRecv:           s.bytesRcv.Load(),
		ForwardsActive: map[string]int64{
			"local/tcp": s.forwards[0][proto.TCP].Load(), "local/udp": s.forwards[0][proto.UDP].Load(),
			"remote/tcp": s.forwards[1][proto.TCP].Load(), "remote/udp": s.forwards[1][proto.UDP].Load(),
		},
	}
}

// Serve accepts clients until ctx ends. Then it stops accepting, tells every
// client the session is closing, waits for the sessions to end, and closes
// the socket. It returns nil after a shutdown requested through ctx.
func (s *Server) Serve(ctx context.Context) error {
	defer s.closeTransport()
	pruneCtx, stopPrune := context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.failures.run(pruneCtx)
	}()
	defer stopPrune()
	var acceptErr error
	s.serving.Store(true)
	defer s.serving.Store(false)
	for {
		conn, err := s.ln.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil && !s.draining.Load() {
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
	s.serving.Store(false)
	close(s.stopped)
	s.ln.Close()
	stopPrune() // Serve waits for the pruner below
	s.audit("shutdown", "listen", s.ln.Addr().String(), "sessions", s.sessions.Load())
	s.wg.Wait()
	s.workers.Close()
	return acceptErr
}

// Drain refuses new QUIC connections and asks every client to set its
// forward up again on a fresh connection (SessionMigrate), which the
// control plane's steering sends to the new data plane. Established
// tunneled connections go on; Serve returns once every session has ended.
// Drain is idempotent.
func (s *Server) Drain() {
	if !s.draining.CompareAndSwap(false, true) {
		return
	}
	s.serving.Store(false)
	// New connections are refused from now on (GetConfigForClient); once
	// the last session has ended, Serve returns.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for s.sessions.Load() > 0 || s.unauth.Load() > 0 {
			select {
			case <-s.stopped:
				return
			case <-t.C:
			}
		}
		s.ln.Close()
	}()
	s.sessMu.Lock()
	list := make([]*session, 0, len(s.sessList))
	for ss := range s.sessList {
		list = append(list, ss)
	}
	s.sessMu.Unlock()
	s.log.Info("draining: asking clients to reconnect", "sessions", len(list))
	s.audit("drain", "listen", s.ln.Addr().String(), "sessions", len(list))
	for _, ss := range list {
		ss.migrate()
	}
}

// Draining reports whether Drain was called.
func (s *Server) Draining() bool { return s.draining.Load() }

// ErrNoSuchForward means HandOver found no draining remote forward to hand
// over.
var ErrNoSuchForward = errors.New("no draining remote forward of this client on this port")

// HandOver gives up the listening socket of a draining session's remote
// forward on port to a new session of the same client identity: it returns
// a duplicate of the socket and stops accepting on it. Connections already
// accepted stay with the old session, which ends once they have.
func (s *Server) HandOver(port uint16, protocol proto.Protocol, identity string) (*os.File, error) {
	if !s.draining.Load() {
		return nil, ErrNoSuchForward
	}
	s.sessMu.Lock()
	var found *session
	for ss := range s.sessList {
		if rl := ss.rpf.Load(); rl != nil && rl.port == port && rl.protocol == protocol && ss.identity() == identity && !rl.handedOver.Load() {
			found = ss
			break
		}
	}
	s.sessMu.Unlock()
	if found == nil {
		return nil, ErrNoSuchForward
	}
	return found.handOver()
}

// reclaim takes port's socket over from another session of asker's client
// identity whose client no longer answers — it crashed or lost its network
// and connected again before that session's idle timeout — and closes that
// session. It returns nil when no such session holds the port, or when its
// client still answers (then the port is rightly in use).
func (s *Server) reclaim(port uint16, protocol proto.Protocol, asker *session) *os.File {
	s.sessMu.Lock()
	var holder *session
	for ss := range s.sessList {
		if rl := ss.rpf.Load(); ss != asker && rl != nil && rl.port == port && rl.protocol == protocol &&
			ss.identity() == asker.identity() && !rl.handedOver.Load() {
			holder = ss
			break
		}
	}
	s.sessMu.Unlock()
	if holder == nil {
		return nil
	}
	holders := []*session{holder}
	if g := holder.rpf.Load().group; g != nil {
		// A shared port: in use while any of its members' clients answers.
		if g.answers() {
			return nil
		}
		holders = holders[:0]
		for _, m := range g.list() {
			holders = append(holders, m.ss)
		}
	} else if holder.answers(holder.probeWait()) {
		return nil
	}
	f, err := holder.handOver()
	if err != nil {
		return nil // another new session took it first
	}
	for _, h := range holders {
		h.log.Info("closing session: its client stopped answering and connected again", "port", port, "new_peer", asker.remote())
		h.conn.CloseWithError(proto.ConnClosed, "superseded by a new session of the same client")
	}
	return f
}

// Close releases the socket of a server that will not Serve.
func (s *Server) Close() { s.closeTransport() }

func (s *Server) closeTransport() {
	s.ln.Close()
	s.tr.Close()
	s.udp.Close()
}

// handle authenticates one QUIC connection and serves its session.
func (s *Server) handle(ctx context.Context, conn *quic.Conn) {
	accepted := time.Now()
	log := s.log.With("peer", conn.RemoteAddr().String())
	if s.unauth.Add(1) > int64(s.cfg.MaxUnauthenticated) {
		s.unauth.Add(-1)
		s.refusedSources.Add(1)
		log.Warn("refusing connection", "reason", "too many unauthenticated connections", "max", s.cfg.MaxUnauthenticated)
		conn.CloseWithError(proto.ConnLimit, "server busy: too many connections authenticating")
		return
	}
	authDone := sync.OnceFunc(func() { s.unauth.Add(-1) })
	defer authDone()
	deadline := time.Now().Add(s.cfg.AuthTimeout)
	authCtx, cancel := context.WithDeadline(ctx, deadline)
	ctrl, err := conn.AcceptStream(authCtx)
	cancel()
	if err != nil {
		s.authFailed.Add(1)
		s.failBy[s.cfg.Auth.Method()].Add(1)
		reason := "no authentication stream within the deadline"
		var ae *quic.ApplicationError
		if errors.As(err, &ae) && ae.Remote {
			reason = "client closed the connection before authenticating: " + ae.ErrorMessage
		}
		log.Warn("authentication failed", "reason", reason, "err", err)
		s.failures.failed(conn.RemoteAddr())
		s.audit("auth_failure", "remote", conn.RemoteAddr().String(), "reason", reason)
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
	stopWatch := refuseEarlyStreams(conn)
	peer, err := s.authenticate(ctrl, conn.ConnectionState().TLS, binding)
	if stopWatch() {
		err = errEarlyStream
	}
	if err != nil {
		s.authFailed.Add(1)
		s.failBy[s.cfg.Auth.Method()].Add(1)
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
		} else if errors.Is(err, errEarlyStream) {
			reason = err.Error()
		} else if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			reason = fmt.Sprintf("authentication did not complete within %v", s.cfg.AuthTimeout)
		}
		log.Warn("authentication failed", "method", s.cfg.Auth.Method(), "reason", reason, "err", err)
		s.failures.failed(conn.RemoteAddr())
		s.audit("auth_failure", "remote", conn.RemoteAddr().String(), "method", s.cfg.Auth.Method().String(), "reason", reason)
		conn.CloseWithError(proto.ConnAuthFailed, reason)
		return
	}
	s.authOK.Add(1)
	s.okBy[peer.Method].Add(1)
	if s.cfg.ObserveHandshake != nil {
		s.cfg.ObserveHandshake(time.Since(accepted))
	}
	authDone()
	if id := peer.Identity(); id != "" {
		if !s.perKey.acquire(id, s.cfg.MaxSessionsPerKey) {
			log.Warn("refusing session", "reason", "too many sessions for this client identity", "identity", id, "max", s.cfg.MaxSessionsPerKey)
			s.audit("rate_limited", "remote", conn.RemoteAddr().String(), "identity", id, "reason", "max sessions per key")
			conn.CloseWithError(proto.ConnLimit, fmt.Sprintf("this client key already has %d sessions, the server's limit", s.cfg.MaxSessionsPerKey))
			return
		}
		defer s.perKey.release(id)
	}
	switch {
	case peer.Method == auth.MethodX25519:
		s.audit("auth_success", "remote", conn.RemoteAddr().String(), "method", "x25519", "key", peer.Key.String(), "key_fingerprint", peer.Key.Fingerprint(), "comment", peer.Comment, "subject", peer.Subject)
	default:
		s.audit("auth_success", "remote", conn.RemoteAddr().String(), "method", peer.Method.String(), "subject", peer.Subject)
	}
	log = log.With("method", peer.Method.String())
	if peer.Method == auth.MethodX25519 {
		log = log.With("key", peer.Key.String(), "comment", peer.Comment)
	}
	if peer.Subject != "" {
		log = log.With("subject", peer.Subject)
	}
	log.Info("client authenticated")

	s.sessions.Add(1)
	defer s.sessions.Add(-1)
	sess := &session{srv: s, conn: conn, ctrl: ctrl, log: log, policy: s.policy(peer), peer: peer, since: time.Now(),
		control: tunnel.NewControl(conn.Context(), ctrl)}
	s.sessMu.Lock()
	s.sessList[sess] = struct{}{}
	s.sessMu.Unlock()
	if s.draining.Load() {
		// Authenticated after the drain began: move it along too.
		sess.migrate()
	}
	defer func() {
		s.sessMu.Lock()
		delete(s.sessList, sess)
		s.sessMu.Unlock()
	}()
	sess.serve(ctx)
}

// errEarlyStream is why a connection that opened a stream before it
// authenticated was closed.
var errEarlyStream = errors.New("client opened a stream before authenticating")

// refuseEarlyStreams watches conn while its client authenticates: a second
// stream closes it. A client opens no other stream until its forward is
// granted (docs/PROTOCOL.md §1), so only one that does not follow the
// protocol does. The server gives the connection its whole receive window
// from the start (tunnel.ConnWindow), and a stream nobody reads would hold
// its share of that memory for a stranger until the authentication
// deadline; closing the connection frees it at once. stop, called once
// authentication has ended, ends the watch and reports whether conn was
// closed for this.
func refuseEarlyStreams(conn *quic.Conn) (stop func() bool) {
	ctx, cancel := context.WithCancel(conn.Context())
	var early atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		if st, err := conn.AcceptStream(ctx); err == nil {
			early.Store(true)
			st.CancelRead(proto.StreamAborted)
			st.CancelWrite(proto.StreamAborted)
			conn.CloseWithError(proto.ConnProtocolError, errEarlyStream.Error())
		}
	}()
	return func() bool {
		cancel()
		<-done
		return early.Load()
	}
}

// authenticate checks the client certificate (with --client-ca) and then
// runs the application handshake on the first stream.
func (s *Server) authenticate(ctrl *quic.Stream, cs tls.ConnectionState, binding []byte) (auth.Peer, error) {
	var subject string
	if s.cfg.ClientCAs != nil {
		var err error
		if subject, err = tlsid.VerifyClient(cs, s.cfg.ClientCAs, s.cfg.AllowedNames); err != nil {
			return auth.Peer{}, auth.Reject(ctrl, err.Error())
		}
	}
	peer, err := auth.Server(ctrl, binding, s.cfg.Auth)
	peer.Subject = subject
	return peer, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// audit records a security event; kv are alternating keys and values.
func (s *Server) audit(event string, kv ...any) {
	if s.cfg.Audit == nil {
		return
	}
	fields := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		fields[fmt.Sprint(kv[i])] = kv[i+1]
	}
	if err := s.cfg.Audit.Record(audit.Event{Type: event, Fields: fields}); err != nil {
		s.log.Error("audit log", "err", err)
	}
}

func byMethod(a *[4]atomic.Uint64) map[auth.Method]uint64 {
	m := map[auth.Method]uint64{}
	for i := range a {
		m[auth.Method(i)] = a[i].Load()
	}
	return m
}

// Serving reports whether the server is accepting clients.
func (s *Server) Serving() bool { return s.serving.Load() }

// Started returns when the server was created.
func (s *Server) Started() time.Time { return s.started }

// SessionInfo describes one authenticated session, for the status API.
type SessionInfo struct {
	Peer     string `json:"peer"`
	Method   string `json:"method"`
	Identity string `json:"identity,omitempty"`
	// KeyFingerprint is the X25519 client key's fingerprint, as the audit
	// log and `quicport pubkey` users compare it.
	KeyFingerprint string    `json:"key_fingerprint,omitempty"`
	Forward        string    `json:"forward"`
	Since          time.Time `json:"since"`
	Connections    int64     `json:"active_connections"`
	BytesSent      uint64    `json:"bytes_sent"`
	BytesReceived  uint64    `json:"bytes_received"`
}

// Sessions returns the authenticated sessions.
func (s *Server) Sessions() []SessionInfo {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	out := make([]SessionInfo, 0, len(s.sessList))
	for ss := range s.sessList {
		fwd, _ := ss.forward.Load().(string)
		info := SessionInfo{
			// Where the client is now: QUIC follows it across a NAT
			// rebinding, so this may differ from where it started.
			Peer:   ss.conn.RemoteAddr().String(),
			Method: ss.peer.Method.String(), Identity: ss.peer.Identity(), Forward: fwd,
			Since: ss.since, Connections: ss.active.Load(), BytesSent: ss.bytesSent.Load(), BytesReceived: ss.bytesRcv.Load(),
		}
		if ss.peer.Method == auth.MethodX25519 {
			info.KeyFingerprint = ss.peer.Key.Fingerprint()
		}
		out = append(out, info)
	}
	return out
}
