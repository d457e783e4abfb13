package client

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tunnel"
)

// acceptStreams serves a remote forward: each stream the server opens is
// one connection that arrived at the server's port.
func (s *session) acceptStreams(ctx context.Context) {
	dest := s.c.cfg.Forward.Dest.HostPort(DefaultDestHost)
	for {
		st, err := s.conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		s.wg.Add(1)
		s.c.workers.Go(func() {
			defer s.wg.Done()
			s.relayRemote(ctx, dest, st)
		})
	}
}

func (s *session) relayRemote(ctx context.Context, dest string, st *quic.Stream) {
	s.active.Add(1)
	defer s.active.Add(-1)
	abort := func(code quic.StreamErrorCode) {
		st.CancelRead(code)
		st.CancelWrite(code)
	}
	_ = st.SetReadDeadline(time.Now().Add(s.c.cfg.Timeout))
	id, err := proto.ReadStreamHeader(st)
	if err != nil {
		abort(proto.StreamAborted)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	log := s.log.With("conn_id", id)
	if s.c.cfg.Forward.Dest.Protocol == proto.UDP {
		conn, err := net.Dial("udp", dest)
		if err != nil {
			log.Warn("local destination unreachable", "dest", dest, "err", err)
			abort(proto.StreamRefused)
			_ = s.control.Notify(ctx, proto.ConnectionClose{ConnID: id, Reason: proto.ReasonRefused})
			return
		}
		err = tunnel.RelayUDP(conn.(*net.UDPConn), st, s.c.cfg.UDPIdleTimeout, tunnel.Counters{})
		log.Debug("UDP flow closed", "err", err)
		return
	}
	d := net.Dialer{Timeout: s.c.cfg.Timeout, Control: tunnel.ConnectEarly}
	conn, err := d.DialContext(ctx, "tcp", dest)
	if err != nil {
		log.Warn("local destination unreachable", "dest", dest, "err", err)
		abort(proto.StreamRefused)
		_ = s.control.Notify(ctx, proto.ConnectionClose{ConnID: id, Reason: proto.ReasonRefused})
		return
	}
	s.relay(ctx, log, id, conn.(*net.TCPConn), st)
}

// relayLocal carries one local connection (or stdio) to the server. It
// reports false, leaving conn open, when no stream could be opened: the
// session died, and the caller may try the next one. The caller counts
// conn in s.active while relayLocal runs (waitSession does).
func (s *session) relayLocal(ctx context.Context, conn tunnel.Conn) bool {
	st, id, err := s.openStream(ctx, proto.TCP)
	if err != nil {
		s.log.Debug("open stream", "err", err)
		return false
	}
	log := s.log.With("conn_id", id)
	if tc, ok := conn.(net.Conn); ok {
		log = log.With("from", tc.RemoteAddr().String())
	}
	if err := s.relay(ctx, log, id, conn, st); err != nil {
		s.stdioFailed.Store(true)
	}
	return true
}

// openStream announces a new local connection or UDP flow and opens its
// stream, header written.
func (s *session) openStream(ctx context.Context, protocol proto.Protocol) (*quic.Stream, uint32, error) {
	id := s.nextID.Add(1)
	if err := s.control.Send(ctx, proto.NewConnection{ConnID: id, Protocol: protocol}); err != nil {
		return nil, 0, err
	}
	st, err := s.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, 0, err
	}
	if err := proto.WriteStreamHeader(st, id); err != nil {
		st.CancelRead(proto.StreamAborted)
		st.CancelWrite(proto.StreamAborted)
		return nil, 0, err
	}
	return st, id, nil
}

func (s *session) relay(ctx context.Context, log *slog.Logger, id uint32, conn tunnel.Conn, st *quic.Stream) error {
	log.Debug("connection open")
	stats, err := tunnel.Relay(conn, st, tunnel.Counters{}, s.c.workers)
	reason := proto.ReasonNormal
	if err != nil {
		reason = proto.ReasonError
	}
	log.Debug("connection closed", "sent", stats.ToStream, "received", stats.FromStream, "err", err)
	_ = s.control.Notify(ctx, proto.ConnectionClose{ConnID: id, Reason: reason})
	return err
}

// openUDPFlow opens the stream of a new local UDP flow.
func (s *session) openUDPFlow(ctx context.Context) (tunnel.Stream, uint32, error) {
	st, id, err := s.openStream(ctx, proto.UDP)
	if err != nil {
		return nil, 0, err
	}
	return st, id, nil
}
