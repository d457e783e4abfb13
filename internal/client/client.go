// Package client is the quicport client: it connects to a server, checks the
// server's certificate (TOFU) and key, authenticates, and runs one remote or
// local port forward until the context ends, reconnecting when the session
// is lost. A local TCP forward may spread its connections over several
// sessions (Config.Sessions), each reconnecting on its own.
//
// Failures that retrying cannot fix (bad credentials, a refused forward, an
// untrusted server) end Run at once; IsPermanent tells them apart.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
	"github.com/quicport/quicport/internal/workers"
)

// Forward is the one forward a session carries.
type Forward struct {
	// Remote selects remote port forwarding: the server listens on
	// Source.Port and connections reach Dest on the client's side.
	// Otherwise the client listens on Source (or uses Stdio) and
	// connections reach Dest on the server's side.
	Remote bool
	Source proto.Addr
	Dest   proto.Addr
	// Stdio, when set on a local forward, is the only connection: the
	// client relays it instead of listening (ssh-proxy). Run returns nil
	// once it has ended in both directions.
	Stdio tunnel.Conn
}

func (f Forward) String() string {
	switch {
	case f.Remote:
		return fmt.Sprintf("server:%v -> %v", f.Source, f.Dest)
	case f.Stdio != nil:
		return fmt.Sprintf("stdio -> server:%v", f.Dest)
	}
	return fmt.Sprintf("%v -> server:%v", f.Source, f.Dest)
}

// Ready describes an established forward.
type Ready struct {
	// RemoteListen is the address the server listens on (remote forwards).
	RemoteListen string
	// LocalListen is the address the client listens on (local forwards).
	LocalListen net.Addr
}

// Config configures a client. The zero value of every optional field selects
// the documented default.
type Config struct {
	// Server is the server's host:port.
	Server  string
	Forward Forward
	Auth    auth.ClientConfig
	// ClientCert, if set, is presented to the server (mTLS).
	ClientCert *tls.Certificate
	// ServerCA, if set, verifies the server's certificate chain and name
	// against these CAs instead of TOFU.
	ServerCA *x509.CertPool
	// Insecure skips the certificate check (TOFU) entirely. Authentication
	// still binds to the TLS session, so a relaying man in the middle fails.
	Insecure bool
	TOFU     tlsid.TOFU
	// Timeout bounds reaching the server, authenticating and dialing
	// destinations (default 10 s).
	Timeout time.Duration
	// KeepAlive and IdleTimeout tune QUIC liveness (defaults 5 s, 10 s).
	KeepAlive, IdleTimeout time.Duration
	// Congestion is the congestion controller for what the client sends
	// (default NewReno).
	Congestion tunnel.Congestion
	// StreamWindow is the most each tunneled connection may have in
	// flight towards this side before it reads (default
	// tunnel.StreamWindow, 6 MiB); a session may hold eight of them.
	StreamWindow int64
	// Reconnect makes the client reconnect after a lost session or a
	// failed attempt, with exponential backoff from ReconnectDelay
	// (default 1 s) to 60 s. MaxAttempts bounds consecutive failed
	// attempts (0 = unlimited).
	Reconnect      bool
	ReconnectDelay time.Duration
	MaxAttempts    int
	// UDPIdleTimeout ends a UDP flow after silence both ways (default
	// 60 s); UDPMaxFlows caps the flows of a local UDP forward (default
	// 1024).
	UDPIdleTimeout time.Duration
	UDPMaxFlows    int
	// ConnectWait bounds how long a local connection that arrives while
	// the client is reconnecting waits for the tunnel (default 30 s).
	ConnectWait time.Duration
	// Sessions is how many sessions (QUIC connections) a TCP forward
	// spreads its connections over, each new one going to the session
	// that carries the fewest (default 1, at most MaxSessions). A local
	// forward places its connections itself; a remote forward's sessions
	// share the server's port (a shared RemoteForwardRequest), and the
	// server places them. A QUIC connection processes its packets in
	// order on one goroutine, so a bulk transfer delays every other
	// connection on its session; on a session of their own they do not
	// wait behind it. Each session counts against the server's per-key
	// session limit; UDP forwards and stdio must use 1, and a remote
	// forward needs a fixed port.
	Sessions int
	// OnReady is called each time the forward is established, once for
	// each of its sessions (may be nil).
	OnReady func(Ready)
	Logger  *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = tunnel.StreamWindow
	}
	if c.ReconnectDelay == 0 {
		c.ReconnectDelay = time.Second
	}
	if c.ConnectWait == 0 {
		c.ConnectWait = 30 * time.Second
	}
	if c.Sessions == 0 {
		c.Sessions = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// MaxSessions bounds Config.Sessions: more sessions than this add
// handshakes and keep-alives without keeping more transfers apart on a
// client's few cores.
const MaxSessions = 8

// DefaultLocalHost is where a local forward listens when its source names
// only a port: loopback, so nothing is exposed by accident.
const DefaultLocalHost = "127.0.0.1"

// DefaultDestHost is the host of a destination that names only a port.
const DefaultDestHost = "127.0.0.1"

// ForwardError is the server's refusal of a forward. It is permanent.
type ForwardError struct {
	Status  proto.Status
	Message string
}

func (e *ForwardError) Error() string {
	if e.Message != "" {
		return "server refused the forward: " + e.Message
	}
	return "server refused the forward: " + e.Status.String()
}

// permanentError marks other failures that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err is a failure that reconnecting cannot fix:
// an authentication rejection, a refused forward, an untrusted server
// certificate, or a local listener that cannot be opened.
func IsPermanent(err error) bool {
	var re *auth.RejectedError
	var fe *ForwardError
	var pe *permanentError
	return errors.As(err, &re) || errors.As(err, &fe) || errors.As(err, &pe)
}

// ErrServerClosed means the server ended the session (for example on
// shutdown); the client reconnects when it may.
var ErrServerClosed = errors.New("server closed the session")

// client is one Run: the long-lived parts that survive reconnects.
type client struct {
	cfg Config
	log *slog.Logger
	ln  net.Listener // local TCP forwards: open for the whole Run
	pc  *net.UDPConn // local UDP forwards: open for the whole Run

	mu    sync.Mutex
	cur   []*session    // each session's established connection, nil while it connects
	ready chan struct{} // closed while any of cur is non-nil

	// token names this Run to the server when a remote forward's sessions
	// share its port: a restarted client, or another with the same
	// credentials, has another and does not join them.
	token uint64

	wg      sync.WaitGroup // local-forward relays
	workers *workers.Pool  // tunneled connections' goroutines
	bg      sync.WaitGroup // sessions the server moved elsewhere, until they end
}

// Run connects, authenticates and serves the forward until ctx ends (then it
// closes the session cleanly and returns nil), the failure is permanent, or
// reconnecting is off or exhausted.
func Run(ctx context.Context, cfg Config) error {
	cfg.setDefaults()
	if err := tunnel.CheckStreamWindow(cfg.StreamWindow); err != nil {
		return &permanentError{fmt.Errorf("client: %w", err)}
	}
	f := cfg.Forward
	if err := CheckSessions(cfg.Sessions, f); err != nil {
		return &permanentError{fmt.Errorf("client: %d QUIC connections: %w", cfg.Sessions, err)}
	}
	c := &client{cfg: cfg, log: cfg.Logger.With("server", cfg.Server, "forward", cfg.Forward.String()),
		cur: make([]*session, cfg.Sessions), ready: make(chan struct{}), token: rand.Uint64(),
		workers: workers.New(workers.DefaultIdle)}
	defer c.workers.Close() // last: after the relays' wait groups below
	if !f.Remote && f.Source.Protocol == proto.UDP {
		addr := f.Source.HostPort(DefaultLocalHost)
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return &permanentError{fmt.Errorf("listen on %s/udp: %w", addr, err)}
		}
		pc, err := net.ListenUDP("udp", ua)
		if err != nil {
			return &permanentError{fmt.Errorf("listen on %s/udp: %w", addr, err)}
		}
		c.pc = pc
		defer pc.Close()
	} else if !f.Remote && f.Stdio == nil {
		// Bind before connecting: a taken port fails at once, and the
		// listener stays open across reconnects.
		addr := f.Source.HostPort(DefaultLocalHost)
		ln, err := tunnel.ListenTCP(addr)
		if err != nil {
			return &permanentError{fmt.Errorf("listen on %s: %w", addr, err)}
		}
		c.ln = ln
		defer c.wg.Wait()
		defer ln.Close()
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.acceptLocal(ctx)
		}()
	}
	defer c.bg.Wait()
	// The first handshake can take up to --timeout when the server does
	// not answer; say what is happening meanwhile.
	c.log.Info("connecting to the server", "timeout", cfg.Timeout.String())
	var changed <-chan struct{} // only a client that reconnects waits for the network
	if cfg.Reconnect {
		changed = watchNetwork(ctx, c.log)
	}
	if cfg.Sessions == 1 {
		return c.loop(ctx, c.log, c.once(0, c.log), changed)
	}
	// Each session connects and reconnects on its own; the first to give
	// up (a permanent failure, or out of attempts) ends them all.
	c.log.Info("spreading connections over QUIC connections", "sessions", cfg.Sessions)
	g, gctx := errgroup.WithContext(ctx)
	for i, changed := range fanOut(gctx, changed, cfg.Sessions) {
		log := c.log.With("session", i+1)
		g.Go(func() error { return c.loop(gctx, log, c.once(i, log), changed) })
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// CheckSessions refuses a number of sessions (Config.Sessions, where Run
// takes 0 for 1) that the forward cannot use, saying what it can.
func CheckSessions(n int, f Forward) error {
	switch {
	case n < 1 || n > MaxSessions:
		return fmt.Errorf("give 1 to %d", MaxSessions)
	case n > 1 && (f.Stdio != nil || f.Source.Protocol == proto.UDP):
		return errors.New("only a TCP forward (-L/-R or -r/-l) spreads its connections over several QUIC connections; leave it at 1 for UDP forwards and ssh-proxy")
	case n > 1 && f.Remote && f.Source.Port == 0:
		return errors.New("a remote forward shared by several QUIC connections needs a fixed server port; give -r a port other than 0")
	}
	return nil
}

// fanOut copies each report on changed to n channels, one per session, so
// that every session's reconnect loop hears of a network change. A nil
// changed gives n nil channels.
func fanOut(ctx context.Context, changed <-chan struct{}, n int) []<-chan struct{} {
	outs := make([]chan struct{}, n)
	views := make([]<-chan struct{}, n)
	if changed == nil {
		return views
	}
	for i := range outs {
		outs[i] = make(chan struct{}, 1)
		views[i] = outs[i]
	}
	go func() {
		for {
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
			for _, o := range outs {
				signal(o)
			}
		}
	}()
	return views
}

// once returns what runs one round of session i, logging to log:
// connect, then serve until it ends. established says whether the forward
// was set up.
func (c *client) once(i int, log *slog.Logger) func(ctx context.Context) (established bool, err error) {
	return func(ctx context.Context) (bool, error) {
		s, err := c.connect(ctx, i, log)
		if err != nil {
			return false, err
		}
		c.publish(i, s)
		err = s.serve(ctx)
		if !errors.Is(err, errMigrate) {
			// A migrated session stays in use until the next one replaces it.
			c.unpublish(s)
		}
		return true, err
	}
}

// publish makes s session i's connection, which new local connections may
// use.
func (c *client) publish(i int, s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.anyPublished() {
		close(c.ready)
	}
	c.cur[i] = s
}

// anyPublished reports whether some session is published; c.mu is held.
func (c *client) anyPublished() bool {
	return slices.ContainsFunc(c.cur, func(s *session) bool { return s != nil })
}

// unpublish withdraws s if it is still its session's connection: new
// local connections go to the other sessions or wait for the next one.
func (c *client) unpublish(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur[s.index] != s {
		return
	}
	c.cur[s.index] = nil
	if !c.anyPublished() {
		c.ready = make(chan struct{})
	}
}

// isCurrent reports whether s is a session new local connections use.
func (c *client) isCurrent(s *session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur[s.index] == s
}

// leastBusy returns the live session carrying the fewest tunneled
// connections (the first of equals), counting one more on it, or nil;
// dead says whether a session whose connection has died is still
// published. Counting here, not once the stream is open, spreads a burst
// of connections too.
func (c *client) leastBusy() (best *session, ready chan struct{}, dead bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.cur {
		switch {
		case s == nil:
		case s.conn.Context().Err() != nil:
			dead = true
		case best == nil || s.active.Load() < best.active.Load():
			best = s
		}
	}
	if best != nil {
		best.active.Add(1)
	}
	return best, c.ready, dead
}

// waitSession returns the established session carrying the fewest
// tunneled connections, counting one more on it (the caller subtracts it
// when its connection is done), waiting until deadline for one. A session
// whose connection has died is skipped.
func (c *client) waitSession(ctx context.Context, deadline time.Time) *session {
	var timer *time.Timer // made only when there is a wait
	for {
		s, ready, dead := c.leastBusy()
		if s != nil {
			return s
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
		}
		if dead {
			// Dead but not yet unpublished: check again shortly.
			ready = nil
		}
		select {
		case <-ready:
		case <-time.After(20 * time.Millisecond):
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// acceptLocal accepts local connections for the whole Run and hands each to
// the current session, waiting for one while the client reconnects.
func (c *client) acceptLocal(ctx context.Context) {
	stop := context.AfterFunc(ctx, func() { c.ln.Close() })
	defer stop()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		c.wg.Add(1)
		c.workers.Go(func() {
			defer c.wg.Done()
			deadline := time.Now().Add(c.cfg.ConnectWait)
			for {
				s := c.waitSession(ctx, deadline)
				if s == nil {
					c.log.Warn("no tunnel for a local connection; closing it", "from", conn.RemoteAddr().String(), "waited", c.cfg.ConnectWait.String())
					conn.Close()
					return
				}
				ok := s.relayLocal(ctx, conn.(*net.TCPConn))
				s.active.Add(-1)
				if ok {
					return
				}
				// The session died before the stream opened: try the next.
			}
		})
	}
}
