package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tunnel"
)

// session serves one authenticated client: its single forward and the
// tunneled connections of that forward.
type session struct {
	srv      *Server
	conn     *quic.Conn
	ctrl     *quic.Stream
	log      *slog.Logger
	deadline time.Time // for the forward request

	control *tunnel.Control
	nextID  atomic.Uint32
	wg      sync.WaitGroup // accept loop and relays
}

// serve runs the session until the client or the server ends it.
func (ss *session) serve(ctx context.Context) {
	connCtx := ss.conn.Context()
	ss.control = tunnel.NewControl(connCtx, ss.ctrl)
	stop := context.AfterFunc(ctx, func() {
		// Server shutdown: tell the client, so it reconnects rather than
		// reporting an error, give it a moment to hang up, then close.
		waitCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if ss.control.Send(waitCtx, proto.SessionClose{}) == nil {
			select {
			case <-connCtx.Done():
			case <-waitCtx.Done():
			}
		}
		ss.conn.CloseWithError(proto.ConnShutdown, "server shutting down")
	})
	defer stop()

	closeForward := func() {}
	defer func() {
		closeForward()
		ss.conn.CloseWithError(proto.ConnClosed, "") // no-op when already closed
		ss.wg.Wait()
		ss.control.Wait()
	}()

	msg, err := ss.control.Read()
	if err != nil {
		ss.protocolError(fmt.Errorf("read forward request: %w", err))
		return
	}
	_ = ss.ctrl.SetDeadline(time.Time{})

	var started func()
	switch m := msg.(type) {
	case proto.RemoteForwardRequest:
		started = ss.startRemote(connCtx, m)
	case proto.LocalForwardRequest:
		started = ss.startLocal(connCtx, m)
	default:
		ss.protocolError(fmt.Errorf("first message is %v, want a forward request", msg.Type()))
		return
	}
	if started == nil {
		// Refused; the client has the response. Give it a moment to read
		// it before the connection goes.
		select {
		case <-connCtx.Done():
		case <-time.After(2 * time.Second):
		}
		ss.conn.CloseWithError(proto.ConnForwardFailed, "forward refused")
		return
	}
	closeForward = started

	for {
		msg, err := ss.control.Read()
		if err != nil {
			if connCtx.Err() == nil {
				ss.protocolError(fmt.Errorf("read control message: %w", err))
			} else {
				ss.log.Info("session ended", "reason", context.Cause(connCtx))
			}
			return
		}
		switch m := msg.(type) {
		case proto.SessionClose:
			ss.log.Info("client requested session close, releasing its forward")
			closeForward()
			ss.conn.CloseWithError(proto.ConnClosed, "session closed")
			return
		case proto.ConnectionClose:
			ss.log.Debug("client closed connection", "conn_id", m.ConnID, "reason", m.Reason)
		case proto.NewConnection:
			if m.Remote {
				ss.protocolError(errors.New("client sent RemoteNewConnection"))
				return
			}
			ss.log.Debug("client announced connection", "conn_id", m.ConnID, "protocol", m.Protocol)
		default:
			ss.protocolError(fmt.Errorf("unexpected %v during the session", msg.Type()))
			return
		}
	}
}

// protocolError logs a client's protocol violation and closes its session.
func (ss *session) protocolError(err error) {
	if errors.Is(err, proto.ErrMalformed) || !errors.Is(err, io.EOF) {
		ss.log.Warn("closing session", "reason", "protocol error", "err", err)
	}
	ss.conn.CloseWithError(proto.ConnProtocolError, err.Error())
}

func (ss *session) respond(ctx context.Context, remote bool, st proto.Status, msg string) {
	_ = ss.control.Send(ctx, proto.ForwardResponse{Remote: remote, Status: st, Message: msg})
}

// startRemote opens the requested port and relays its connections to the
// client. It returns the function that closes the listener, or nil when
// the request was refused.
func (ss *session) startRemote(ctx context.Context, req proto.RemoteForwardRequest) func() {
	log := ss.log.With("forward", fmt.Sprintf("remote %d/%v -> client %s", req.Port, req.Protocol, req.LocalDestination))
	if req.Protocol == proto.UDP {
		return ss.startRemoteUDP(ctx, log, req)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(int(req.Port))))
	if err != nil {
		st, msg := listenStatus(req.Port, err)
		log.Warn("forward refused", "reason", msg, "err", err)
		ss.respond(ctx, true, st, msg)
		return nil
	}
	log = log.With("listen", ln.Addr().String())
	ss.log = log
	log.Info("remote forward open")
	ss.respond(ctx, true, proto.StatusSuccess, ln.Addr().String())

	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ss.wg.Add(1)
			go func() {
				defer ss.wg.Done()
				ss.relayRemote(ctx, c.(*net.TCPConn))
			}()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			ln.Close()
			log.Info("remote forward closed")
		})
	}
}

// startRemoteUDP opens the requested UDP port: each source address becomes
// a flow on its own stream.
func (ss *session) startRemoteUDP(ctx context.Context, log *slog.Logger, req proto.RemoteForwardRequest) func() {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(req.Port)})
	if err != nil {
		st, msg := listenStatus(req.Port, err)
		log.Warn("forward refused", "reason", msg, "err", err)
		ss.respond(ctx, true, st, msg)
		return nil
	}
	log = log.With("listen", pc.LocalAddr().String())
	ss.log = log
	log.Info("remote forward open")
	ss.respond(ctx, true, proto.StatusSuccess, pc.LocalAddr().String())
	ul := &tunnel.UDPListener{
		Conn: pc,
		Open: func(ctx context.Context) (tunnel.Stream, uint32, error) {
			id := ss.nextID.Add(1)
			if err := ss.control.Send(ctx, proto.NewConnection{Remote: true, ConnID: id, Protocol: proto.UDP}); err != nil {
				return nil, 0, err
			}
			st, err := ss.conn.OpenStreamSync(ctx)
			if err != nil {
				return nil, 0, err
			}
			if err := proto.WriteStreamHeader(st, id); err != nil {
				st.CancelWrite(proto.StreamAborted)
				st.CancelRead(proto.StreamAborted)
				return nil, 0, err
			}
			ss.srv.connsTotal.Add(1)
			ss.srv.udpFlows.Add(1)
			return st, id, nil
		},
		Closed: func(id uint32, reason proto.CloseReason) {
			ss.srv.udpFlows.Add(-1)
			_ = ss.control.Send(ctx, proto.ConnectionClose{ConnID: id, Reason: reason})
		},
		IdleTimeout: ss.srv.cfg.UDPIdleTimeout,
		MaxFlows:    ss.srv.cfg.UDPMaxFlows,
		Log:         log,
	}
	uctx, cancel := context.WithCancel(ctx)
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		if err := ul.Run(uctx); err != nil {
			log.Warn("UDP listener failed", "err", err)
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			pc.Close()
			log.Info("remote forward closed")
		})
	}
}

// listenStatus maps a listen error to the protocol status and a message the
// client shows its user.
func listenStatus(port uint16, err error) (proto.Status, string) {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return proto.StatusPortInUse, fmt.Sprintf("port %d is already in use on the server", port)
	case errors.Is(err, syscall.EACCES):
		return proto.StatusPermissionDenied, fmt.Sprintf("the server may not listen on port %d (ports below 1024 need privileges)", port)
	}
	return proto.StatusInternalError, fmt.Sprintf("the server could not listen on port %d", port)
}

// relayRemote carries one accepted TCP connection to the client.
func (ss *session) relayRemote(ctx context.Context, c *net.TCPConn) {
	id := ss.nextID.Add(1)
	log := ss.log.With("conn_id", id, "from", c.RemoteAddr().String())
	if err := ss.control.Send(ctx, proto.NewConnection{Remote: true, ConnID: id, Protocol: proto.TCP}); err != nil {
		c.Close()
		return
	}
	st, err := ss.conn.OpenStreamSync(ctx)
	if err != nil {
		log.Debug("open stream", "err", err)
		c.Close()
		return
	}
	if err := proto.WriteStreamHeader(st, id); err != nil {
		st.CancelWrite(proto.StreamAborted)
		st.CancelRead(proto.StreamAborted)
		c.Close()
		return
	}
	ss.relay(ctx, log, id, c, st)
}

// relay runs a tunneled connection and keeps the counters.
func (ss *session) relay(ctx context.Context, log *slog.Logger, id uint32, c *net.TCPConn, st *quic.Stream) {
	srv := ss.srv
	srv.connsTotal.Add(1)
	srv.connsActive.Add(1)
	defer srv.connsActive.Add(-1)
	log.Debug("connection open")
	stats, err := tunnel.Relay(c, st)
	srv.bytesSent.Add(uint64(stats.ToStream))
	srv.bytesRcv.Add(uint64(stats.FromStream))
	reason := proto.ReasonNormal
	if err != nil {
		reason = proto.ReasonError
	}
	log.Debug("connection closed", "sent", stats.ToStream, "received", stats.FromStream, "err", err)
	_ = ss.control.Send(ctx, proto.ConnectionClose{ConnID: id, Reason: reason})
}

// startLocal accepts the client's streams and connects each to the
// requested destination.
func (ss *session) startLocal(ctx context.Context, req proto.LocalForwardRequest) func() {
	log := ss.log.With("forward", fmt.Sprintf("client %s -> %s/%v", req.LocalSource, req.Destination, req.Protocol))
	if _, _, err := net.SplitHostPort(req.Destination); err != nil {
		log.Warn("forward refused", "reason", "bad destination", "err", err)
		ss.respond(ctx, false, proto.StatusInternalError, fmt.Sprintf("destination %q is not host:port", req.Destination))
		return nil
	}
	ss.log = log
	log.Info("local forward open")
	ss.respond(ctx, false, proto.StatusSuccess, "")

	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		for {
			st, err := ss.conn.AcceptStream(ctx)
			if err != nil {
				return
			}
			ss.wg.Add(1)
			go func() {
				defer ss.wg.Done()
				ss.relayLocal(ctx, req.Protocol, req.Destination, st)
			}()
		}
	}()
	return func() {}
}

// relayLocal connects one client stream to the destination.
func (ss *session) relayLocal(ctx context.Context, protocol proto.Protocol, dest string, st *quic.Stream) {
	abort := func(code quic.StreamErrorCode) {
		st.CancelRead(code)
		st.CancelWrite(code)
	}
	_ = st.SetReadDeadline(time.Now().Add(ss.srv.cfg.AuthTimeout))
	id, err := proto.ReadStreamHeader(st)
	if err != nil {
		ss.log.Debug("read stream header", "err", err)
		abort(proto.StreamAborted)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	log := ss.log.With("conn_id", id)
	if protocol == proto.UDP {
		c, err := net.Dial("udp", dest)
		if err != nil {
			log.Warn("destination unreachable", "dest", dest, "err", err)
			abort(proto.StreamRefused)
			_ = ss.control.Send(ctx, proto.ConnectionClose{ConnID: id, Reason: proto.ReasonRefused})
			return
		}
		ss.srv.connsTotal.Add(1)
		ss.srv.udpFlows.Add(1)
		err = tunnel.RelayUDP(c.(*net.UDPConn), st, ss.srv.cfg.UDPIdleTimeout)
		ss.srv.udpFlows.Add(-1)
		log.Debug("UDP flow closed", "err", err)
		return
	}
	d := net.Dialer{Timeout: ss.srv.cfg.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", dest)
	if err != nil {
		log.Warn("destination unreachable", "dest", dest, "err", err)
		abort(proto.StreamRefused)
		_ = ss.control.Send(ctx, proto.ConnectionClose{ConnID: id, Reason: proto.ReasonRefused})
		return
	}
	ss.relay(ctx, log, id, c.(*net.TCPConn), st)
}
