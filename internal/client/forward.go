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
func (c *session) acceptStreams(ctx context.Context) {
	dest := c.cfg.Forward.Dest.HostPort(DefaultDestHost)
	for {
		st, err := c.conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.relayRemote(ctx, dest, st)
		}()
	}
}

func (c *session) relayRemote(ctx context.Context, dest string, st *quic.Stream) {
	abort := func(code quic.StreamErrorCode) {
		st.CancelRead(code)
		st.CancelWrite(code)
	}
	_ = st.SetReadDeadline(time.Now().Add(c.cfg.Timeout))
	id, err := proto.ReadStreamHeader(st)
	if err != nil {
		abort(proto.StreamAborted)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	log := c.log.With("conn_id", id)
	d := net.Dialer{Timeout: c.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", dest)
	if err != nil {
		log.Warn("local destination unreachable", "dest", dest, "err", err)
		abort(proto.StreamRefused)
		_ = c.control.Send(ctx, proto.ConnectionClose{ConnID: id, Reason: proto.ReasonRefused})
		return
	}
	c.relay(ctx, log, id, conn.(*net.TCPConn), st)
}

// acceptLocal serves a local forward: each connection accepted on ln gets a
// stream to the server.
func (c *session) acceptLocal(ctx context.Context, ln net.Listener) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.relayLocal(ctx, conn.(*net.TCPConn))
		}()
	}
}

func (c *session) relayLocal(ctx context.Context, conn *net.TCPConn) {
	id := c.nextID.Add(1)
	log := c.log.With("conn_id", id, "from", conn.RemoteAddr().String())
	if err := c.control.Send(ctx, proto.NewConnection{ConnID: id, Protocol: proto.TCP}); err != nil {
		conn.Close()
		return
	}
	st, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		log.Debug("open stream", "err", err)
		conn.Close()
		return
	}
	if err := proto.WriteStreamHeader(st, id); err != nil {
		st.CancelRead(proto.StreamAborted)
		st.CancelWrite(proto.StreamAborted)
		conn.Close()
		return
	}
	c.relay(ctx, log, id, conn, st)
}

func (c *session) relay(ctx context.Context, log *slog.Logger, id uint32, conn *net.TCPConn, st *quic.Stream) {
	log.Debug("connection open")
	stats, err := tunnel.Relay(conn, st)
	reason := proto.ReasonNormal
	if err != nil {
		reason = proto.ReasonError
	}
	log.Debug("connection closed", "sent", stats.ToStream, "received", stats.FromStream, "err", err)
	_ = c.control.Send(ctx, proto.ConnectionClose{ConnID: id, Reason: reason})
}
