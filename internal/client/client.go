// Package client is the quicport client: it connects to a server, checks the
// server's certificate (TOFU) and key, authenticates, and runs one remote or
// local port forward until the context ends or the session dies.
//
// Run makes one session. It reports permanent failures (bad credentials, a
// refused forward, an untrusted server) as errors for which IsPermanent is
// true, so a caller that reconnects knows never to retry those.
package client

import (
	"context"
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

// Forward is the one forward a session carries.
type Forward struct {
	// Remote selects remote port forwarding: the server listens on
	// Source.Port and connections reach Dest on the client's side.
	// Otherwise the client listens on Source and connections reach Dest
	// on the server's side.
	Remote bool
	Source proto.Addr
	Dest   proto.Addr
}

func (f Forward) String() string {
	if f.Remote {
		return fmt.Sprintf("server:%v -> %v", f.Source, f.Dest)
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

// Config configures a client session.
type Config struct {
	// Server is the server's host:port.
	Server  string
	Forward Forward
	Auth    auth.ClientConfig
	// Insecure skips the certificate check (TOFU) entirely. Authentication
	// still binds to the TLS session, so a relaying man in the middle fails.
	Insecure bool
	TOFU     tlsid.TOFU
	// Timeout bounds reaching the server, authenticating and dialing
	// destinations (default 10 s).
	Timeout time.Duration
	// KeepAlive and IdleTimeout tune QUIC liveness (defaults 5 s, 10 s).
	KeepAlive, IdleTimeout time.Duration
	// OnReady is called once the forward is established (may be nil).
	OnReady func(Ready)
	Logger  *slog.Logger
}

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
// shutdown); a caller may reconnect.
var ErrServerClosed = errors.New("server closed the session")

// Run connects, authenticates and serves the forward until ctx ends (then it
// closes the session cleanly and returns nil) or the session fails.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &session{cfg: cfg, log: cfg.Logger.With("server", cfg.Server, "forward", cfg.Forward.String())}
	return c.run(ctx)
}

type session struct {
	cfg     Config
	log     *slog.Logger
	conn    *quic.Conn
	control *tunnel.Control
	nextID  atomic.Uint32
	wg      sync.WaitGroup
}

func (c *session) run(ctx context.Context) error {
	// A local forward binds its port before anything else, so a port that
	// is taken fails at once, before a session exists.
	var ln net.Listener
	if !c.cfg.Forward.Remote {
		var err error
		ln, err = net.Listen("tcp", c.cfg.Forward.Source.HostPort(DefaultLocalHost))
		if err != nil {
			return &permanentError{fmt.Errorf("listen on %s: %w", c.cfg.Forward.Source.HostPort(DefaultLocalHost), err)}
		}
		defer ln.Close()
	}

	udp, tr, conn, err := c.dial(ctx)
	if err != nil {
		return err
	}
	defer udp.Close()
	defer tr.Close()
	c.conn = conn
	defer conn.CloseWithError(proto.ConnClosed, "")

	ctrl, err := c.authenticate(ctx, conn)
	if err != nil {
		// Tell the server why, without detail that helps an impostor.
		why := "client gave up authenticating"
		var re *auth.RejectedError
		if errors.As(err, &re) && !re.ByServer {
			why = "client rejected the server's authentication"
		} else if errors.Is(err, tlsid.ErrUnknownHost) || errors.Is(err, tlsid.ErrHostChanged) {
			why = "client does not trust the server certificate"
		}
		conn.CloseWithError(proto.ConnAuthFailed, why)
		return err
	}
	connCtx := conn.Context()
	c.control = tunnel.NewControl(connCtx, ctrl)
	defer func() {
		conn.CloseWithError(proto.ConnClosed, "")
		c.wg.Wait()
		c.control.Wait()
	}()

	ready, err := c.requestForward(ctx, ctrl, ln)
	if err != nil {
		return err
	}
	if ready.LocalListen != nil {
		c.log.Info("forward established", "local_listen", ready.LocalListen.String())
	} else {
		c.log.Info("forward established", "remote_listen", ready.RemoteListen)
	}
	if c.cfg.OnReady != nil {
		c.cfg.OnReady(ready)
	}

	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if c.cfg.Forward.Remote {
			c.acceptStreams(connCtx)
		} else {
			c.acceptLocal(connCtx, ln)
		}
	}()

	readErr := make(chan error, 1)
	go func() { readErr <- c.readControl() }()
	select {
	case <-ctx.Done():
		c.closeSession(ctx)
		<-readErr
		return nil
	case err := <-readErr:
		return err
	}
}

// closeSession tells the server the session ends and waits briefly for it to
// close the connection, so the server releases the forward at once.
func (c *session) closeSession(context.Context) {
	c.log.Info("closing session")
	sendCtx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.control.Send(sendCtx, proto.SessionClose{}); err == nil {
		select {
		case <-c.conn.Context().Done():
		case <-sendCtx.Done():
		}
	}
	c.conn.CloseWithError(proto.ConnClosed, "client closed the session")
}

// readControl reads server messages until the session ends and returns why.
func (c *session) readControl() error {
	for {
		msg, err := c.control.Read()
		if err != nil {
			return c.sessionError(err)
		}
		switch m := msg.(type) {
		case proto.SessionClose:
			c.log.Info("server closed the session")
			c.conn.CloseWithError(proto.ConnClosed, "")
			return ErrServerClosed
		case proto.ConnectionClose:
			c.log.Debug("server closed connection", "conn_id", m.ConnID, "reason", m.Reason)
		case proto.NewConnection:
			c.log.Debug("server announced connection", "conn_id", m.ConnID, "protocol", m.Protocol)
		default:
			err := fmt.Errorf("%w: unexpected %v from the server", proto.ErrMalformed, msg.Type())
			c.conn.CloseWithError(proto.ConnProtocolError, err.Error())
			return err
		}
	}
}

// sessionError explains why a session's connection ended.
func (c *session) sessionError(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		switch ae.ErrorCode {
		case proto.ConnShutdown:
			return fmt.Errorf("%w: the server is shutting down", ErrServerClosed)
		case proto.ConnClosed:
			return ErrServerClosed
		case proto.ConnAuthFailed:
			return &auth.RejectedError{ByServer: true, Reason: ae.ErrorMessage}
		case proto.ConnProtocolError:
			return fmt.Errorf("server closed the session for a protocol error: %s", ae.ErrorMessage)
		}
	}
	var ie *quic.IdleTimeoutError
	if errors.As(err, &ie) {
		return fmt.Errorf("lost the server %s: no response within the idle timeout", c.cfg.Server)
	}
	return fmt.Errorf("session with %s ended: %w", c.cfg.Server, err)
}
