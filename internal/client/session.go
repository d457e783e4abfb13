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

// session is one authenticated QUIC connection carrying the forward.
type session struct {
	c       *client
	index   int // which of the client's Config.Sessions this is
	log     *slog.Logger
	udp     *net.UDPConn
	tr      *quic.Transport
	conn    *quic.Conn
	control *tunnel.Control
	nextID  atomic.Uint32
	wg      sync.WaitGroup // remote-forward relays

	stdioFailed atomic.Bool  // the stdio relay ended with an error
	active      atomic.Int64 // tunneled connections this session carries or was given
}

// errMigrate means the server asked for the forward on a fresh connection
// (SessionMigrate: it is draining for a graceful restart). The old session
// goes on in the background until its connections have ended.
var errMigrate = errors.New("server asked to move the forward to a new connection")

// connect dials the server, authenticates and sets up the forward as
// session i, logging to log. On error everything it opened is closed
// again.
func (c *client) connect(ctx context.Context, i int, log *slog.Logger) (_ *session, err error) {
	s := &session{c: c, index: i, log: log}
	if err := s.dial(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	ctrl, err := s.authenticate(ctx)
	if err != nil {
		// Tell the server why, without detail that helps an impostor.
		why := "client gave up authenticating"
		var re *auth.RejectedError
		if errors.As(err, &re) && !re.ByServer {
			why = "client rejected the server's authentication"
		} else if errors.Is(err, tlsid.ErrUnknownHost) || errors.Is(err, tlsid.ErrHostChanged) {
			why = "client does not trust the server certificate"
		}
		s.conn.CloseWithError(proto.ConnAuthFailed, why)
		return nil, err
	}
	s.control = tunnel.NewControl(s.conn.Context(), ctrl)
	ready, err := s.requestForward(ctx, ctrl)
	if err != nil {
		return nil, err
	}
	switch {
	case ready.LocalListen != nil:
		s.log.Info("forward established", "local_listen", ready.LocalListen.String())
	case c.cfg.Forward.Remote:
		s.log.Info("forward established", "remote_listen", ready.RemoteListen)
	default:
		s.log.Info("forward established")
	}
	if c.cfg.OnReady != nil {
		c.cfg.OnReady(ready)
	}
	return s, nil
}

// close tears the session down and waits for everything it started.
func (s *session) close() {
	s.conn.CloseWithError(proto.ConnClosed, "") // no-op when already closed
	s.wg.Wait()
	if s.control != nil {
		s.control.Wait()
	}
	s.tr.Close()
	s.udp.Close()
}

// serve runs the established session until it ends. It returns nil when ctx
// ended (after telling the server) or the stdio connection finished.
func (s *session) serve(ctx context.Context) (err error) {
	defer func() {
		if !errors.Is(err, errMigrate) {
			s.close()
		}
	}()
	connCtx := s.conn.Context()
	udpCtx, stopUDP := context.WithCancel(connCtx)
	defer stopUDP()
	if s.c.cfg.Forward.Remote {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.acceptStreams(connCtx)
		}()
	}
	if pc := s.c.pc; pc != nil {
		ul := &tunnel.UDPListener{
			Conn: pc,
			Open: s.openUDPFlow,
			Closed: func(id uint32, r proto.CloseReason) {
				_ = s.control.Notify(connCtx, proto.ConnectionClose{ConnID: id, Reason: r})
			},
			IdleTimeout: s.c.cfg.UDPIdleTimeout,
			MaxFlows:    s.c.cfg.UDPMaxFlows,
			Log:         s.log,
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := ul.Run(udpCtx); err != nil {
				s.log.Warn("UDP listener failed", "err", err)
			}
		}()
	}
	stdioDone := make(chan struct{})
	if st := s.c.cfg.Forward.Stdio; st != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(stdioDone)
			s.active.Add(1)
			defer s.active.Add(-1)
			if !s.relayLocal(connCtx, st) {
				s.stdioFailed.Store(true)
				st.Close()
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() { readErr <- s.readControl() }()
	select {
	case <-ctx.Done():
		s.closeSession()
		<-readErr
		return nil
	case <-stdioDone:
		s.closeSession()
		<-readErr
		if s.stdioFailed.Load() {
			return &permanentError{errors.New("the tunneled connection failed")}
		}
		return nil
	case err := <-readErr:
		if errors.Is(err, errMigrate) {
			// Datagrams from now on belong to the new session's flows.
			stopUDP()
			s.c.bg.Add(1)
			go func() {
				defer s.c.bg.Done()
				s.finishMigrated(ctx)
			}()
			return err
		}
		if s.c.cfg.Forward.Stdio != nil {
			// The stdio byte stream cannot resume on a new session.
			return &permanentError{err}
		}
		return err
	}
}

// finishMigrated serves a session the server moved elsewhere until it ends:
// the server ends a remote forward's old session once the port moved and
// its connections have ended; a local forward's old session is ended here
// once the new session carries new connections and the last old one has
// ended.
func (s *session) finishMigrated(ctx context.Context) {
	defer s.close()
	defer s.c.unpublish(s) // if no new session replaced it
	connCtx := s.conn.Context()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.closeSession()
			return
		case <-connCtx.Done():
			s.log.Info("previous session ended")
			return
		case <-t.C:
		}
		if !s.c.cfg.Forward.Remote && !s.c.isCurrent(s) && s.active.Load() == 0 {
			s.log.Info("previous session is idle; closing it")
			s.closeSession()
			return
		}
	}
}

// closeSession tells the server the session ends and waits briefly for it to
// close the connection, so the server releases the forward at once.
func (s *session) closeSession() {
	s.log.Info("closing session")
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.control.Send(ctx, proto.SessionClose{}); err == nil {
		select {
		case <-s.conn.Context().Done():
		case <-ctx.Done():
		}
	}
	s.conn.CloseWithError(proto.ConnClosed, "client closed the session")
}

// readControl reads server messages until the session ends and returns why.
func (s *session) readControl() error {
	for {
		msg, err := s.control.Read()
		if err != nil {
			return s.sessionError(err)
		}
		switch m := msg.(type) {
		case proto.SessionMigrate:
			if s.c.cfg.Forward.Stdio != nil {
				// One byte stream cannot move; it stays until it ends.
				s.log.Info("server is draining; the stdio connection stays on this session")
				continue
			}
			s.log.Info("server is restarting; moving the forward to a new connection")
			go s.drainControl()
			return errMigrate
		case proto.SessionClose:
			s.log.Info("server closed the session")
			s.conn.CloseWithError(proto.ConnClosed, "")
			return ErrServerClosed
		case proto.ConnectionClose:
			s.log.Debug("server closed connection", "conn_id", m.ConnID, "reason", m.Reason)
		case proto.NewConnection:
			s.log.Debug("server announced connection", "conn_id", m.ConnID, "protocol", m.Protocol)
		default:
			err := fmt.Errorf("%w: unexpected %v from the server", proto.ErrMalformed, msg.Type())
			s.conn.CloseWithError(proto.ConnProtocolError, err.Error())
			return err
		}
	}
}

// drainControl reads a migrated session's remaining control messages, so
// the server's SessionClose is seen, until the connection ends.
func (s *session) drainControl() {
	for {
		msg, err := s.control.Read()
		if err != nil {
			return
		}
		if _, ok := msg.(proto.SessionClose); ok {
			s.conn.CloseWithError(proto.ConnClosed, "")
			return
		}
	}
}

// sessionError explains why a session's connection ended.
func (s *session) sessionError(err error) error {
	if tlsErr := s.tlsError(err); tlsErr != nil {
		return tlsErr
	}
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
		case proto.ConnLimit:
			return fmt.Errorf("server refused the session: %s", ae.ErrorMessage)
		}
	}
	var ie *quic.IdleTimeoutError
	if errors.As(err, &ie) {
		return fmt.Errorf("lost the server %s: no response within the idle timeout", s.c.cfg.Server)
	}
	var sr *quic.StatelessResetError
	if errors.As(err, &sr) {
		return fmt.Errorf("server %s no longer has this session (it restarted without handing the session over, or lost it)", s.c.cfg.Server)
	}
	return fmt.Errorf("session with %s ended: %w", s.c.cfg.Server, err)
}
