package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/permit"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tunnel"
)

// session serves one authenticated client: its single forward and the
// tunneled connections of that forward.
type session struct {
	srv    *Server
	conn   *quic.Conn
	ctrl   *quic.Stream
	log    *slog.Logger
	policy permit.Policy
	peer   auth.Peer
	since  time.Time

	forward             atomic.Value // string: the forward, once set up
	bytesSent, bytesRcv atomic.Uint64

	active      atomic.Int64  // tunneled TCP connections
	connRate    *rate.Limiter // new tunneled connections
	bwUp, bwDn  *rate.Limiter // bytes from the client / to the client; nil = unlimited
	lastRefusal atomic.Int64  // unix nanoseconds, to rate-limit the log line

	control *tunnel.Control
	nextID  atomic.Uint32
	wg      sync.WaitGroup // accept loop and relays

	rpf           atomic.Pointer[remoteListener] // the remote forward's socket, once open
	forwardUp     atomic.Bool                    // the forward response went out
	migrateWanted atomic.Bool                    // the server drains
	migrateOnce   sync.Once
	probing       atomic.Bool // closeIfSilent runs
}

// remoteListener is a remote forward's listening socket, as far as a
// graceful restart needs it: a duplicate to hand over, and a way to stop
// accepting on it without closing the socket.
type remoteListener struct {
	port       uint16
	protocol   proto.Protocol
	file       func() (*os.File, error)
	stop       func() // returns once nothing more is accepted
	handedOver atomic.Bool
	group      *sharedPort // a shared port's, or nil
}

// remote is the client's address now, for the audit log: a NAT rebinding
// moves a session to a new address, and each entry names the one it came
// from when it happened.
func (ss *session) remote() string { return ss.conn.RemoteAddr().String() }

// identity names the client for hand-overs: the same identity may take over
// the session's remote port.
func (ss *session) identity() string {
	return ss.peer.Method.String() + ":" + ss.peer.Identity()
}

// migrate asks the client to set its forward up again on a fresh
// connection (the server is draining). The request waits until the forward
// is set up: the client reads the forward's response first.
func (ss *session) migrate() {
	ss.migrateWanted.Store(true)
	if ss.forwardUp.Load() {
		ss.sendMigrate()
	}
}

func (ss *session) sendMigrate() {
	ss.migrateOnce.Do(func() {
		go func() {
			if err := ss.control.Send(ss.conn.Context(), proto.SessionMigrate{}); err == nil {
				ss.srv.log.Info("asked the client to reconnect (draining)", "peer", ss.remote())
			}
		}()
	})
}

// handOver stops accepting on the remote forward's socket and returns a
// duplicate of it for the client's new session. This session then ends as
// soon as the connections it already carries have ended.
func (ss *session) handOver() (*os.File, error) {
	rl := ss.rpf.Load()
	if rl == nil || !rl.handedOver.CompareAndSwap(false, true) {
		return nil, ErrNoSuchForward
	}
	f, err := rl.file()
	if err != nil {
		rl.handedOver.Store(false)
		return nil, fmt.Errorf("duplicate the listening socket: %w", err)
	}
	rl.stop()
	ss.log.Info("handed the remote port over to the client's new session", "active_connections", ss.active.Load())
	ss.srv.audit("forward_handover", "remote", ss.remote(), "port", rl.port, "protocol", rl.protocol.String())
	if rl.group != nil {
		rl.group.closeWhenIdle()
		return f, nil
	}
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		ss.closeWhenIdle()
	}()
	return f, nil
}

// answers reports whether the session's client still answers. It sends a
// message that every client accepts and ignores (ConnectionClose for
// connection 0, which is never assigned) and whose QUIC packet the client
// acknowledges, and waits up to wait for any packet from the client.
func (ss *session) answers(wait time.Duration) bool {
	before := ss.conn.ConnectionStats().PacketsReceived
	ctx, cancel := context.WithTimeout(ss.conn.Context(), wait)
	defer cancel()
	if ss.control.Send(ctx, proto.ConnectionClose{ConnID: 0, Reason: proto.ReasonNormal}) != nil {
		return false
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if ss.conn.ConnectionStats().PacketsReceived != before {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// closeWhenIdle ends a session whose forward moved elsewhere once its last
// tunneled connection has ended.
func (ss *session) closeWhenIdle() {
	connCtx := ss.conn.Context()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for ss.active.Load() > 0 {
		select {
		case <-connCtx.Done():
			return
		case <-t.C:
		}
	}
	ctx, cancel := context.WithTimeout(connCtx, time.Second)
	defer cancel()
	if ss.control.Send(ctx, proto.SessionClose{}) == nil {
		<-ctx.Done() // the client hangs up, or a second passes
	}
	ss.log.Info("session ended: its forward moved to the client's new session")
	ss.conn.CloseWithError(proto.ConnClosed, "forward moved to a new session")
}

// serve runs the session until the client or the server ends it.
func (ss *session) serve(ctx context.Context) {
	cfg := &ss.srv.cfg
	ss.connRate = rate.NewLimiter(rate.Limit(cfg.ConnRate), max(1, int(2*cfg.ConnRate)))
	ss.bwUp, ss.bwDn = newBandwidthLimiter(cfg.BandwidthLimit), newBandwidthLimiter(cfg.BandwidthLimit)
	connCtx := ss.conn.Context()
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
	var remote int
	var protocol proto.Protocol
	switch m := msg.(type) {
	case proto.RemoteForwardRequest:
		remote, protocol = 1, m.Protocol
		started = ss.startRemote(connCtx, m)
	case proto.LocalForwardRequest:
		protocol = m.Protocol
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
	ss.forwardUp.Store(true)
	if ss.migrateWanted.Load() {
		ss.sendMigrate()
	}
	if protocol == proto.TCP || protocol == proto.UDP {
		n := &ss.srv.forwards[remote][protocol]
		n.Add(1)
		defer n.Add(-1)
	}

	for {
		msg, err := ss.control.Read()
		if err != nil {
			if ended := connectionEnded(connCtx, err); ended != nil {
				ss.log.Info("session ended", "reason", ended)
			} else {
				ss.protocolError(fmt.Errorf("read control message: %w", err))
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

// connectionEnded returns why the session's QUIC connection ended, if a
// failed control-stream read was that and not the client's doing: we
// closed it, or it went silent (a client killed or cut off is seen by the
// idle timeout, often before the connection's context says so), or the
// client lost its state (stateless reset). Nil means the client broke the
// protocol.
func connectionEnded(connCtx context.Context, err error) error {
	var (
		ae    *quic.ApplicationError
		idle  *quic.IdleTimeoutError
		reset *quic.StatelessResetError
	)
	switch {
	case connCtx.Err() != nil:
		return context.Cause(connCtx)
	case errors.As(err, &ae) && !ae.Remote, errors.As(err, &idle), errors.As(err, &reset):
		return err
	}
	return nil
}

// protocolError logs a client's protocol violation and closes its session.
// A control stream that simply ended (EOF) is logged at info level: the
// client went away without SessionClose, which is sloppy but not hostile.
func (ss *session) protocolError(err error) {
	level := slog.LevelWarn
	if errors.Is(err, io.EOF) {
		level = slog.LevelInfo
	}
	ss.log.Log(context.Background(), level, "closing session", "reason", "protocol error", "err", err)
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
	if err := ss.policy.CheckListen(req.Port); err != nil {
		ss.deny(ctx, true, log, err, "port", req.Port, "protocol", req.Protocol.String())
		return nil
	}
	if req.Protocol == proto.UDP {
		if req.Shared {
			ss.protocolError(errors.New("a shared remote forward must be TCP"))
			return nil
		}
		return ss.startRemoteUDP(ctx, log, req)
	}
	if req.Shared {
		return ss.startShared(ctx, log, req)
	}
	ln, err := ss.listenTCP(req.Port)
	if err != nil {
		ss.refuseListen(ctx, log, req.Port, err)
		return nil
	}
	log = ss.remoteOpened(ctx, log, ln.Addr(), req)

	// Admission happens here, in the accept loop, so that once the loop
	// has stopped every accepted connection is counted in ss.active.
	accepting := make(chan struct{})
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		defer close(accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*net.TCPConn)
			if !ss.takeRemote(ctx, tc) {
				tc.SetLinger(0)
				tc.Close()
			}
		}
	}()
	ss.rpf.Store(&remoteListener{port: req.Port, protocol: proto.TCP, file: ln.File,
		stop: func() { ln.Close(); <-accepting }})
	return ss.remoteCloser(log, ln.Addr(), func() { ln.Close() })
}

// startShared opens or joins a shared remote forward (shared.go).
func (ss *session) startShared(ctx context.Context, log *slog.Logger, req proto.RemoteForwardRequest) func() {
	var addr net.Addr
	g, err := ss.join(ctx, shareKey{identity: ss.identity(), token: req.Token, port: req.Port}, func(a net.Addr, others int) {
		addr, log = a, ss.remoteOpened(ctx, log, a, req, "shared_with_sessions", others)
	})
	if err != nil {
		ss.refuseListen(ctx, log, req.Port, err)
		return nil
	}
	return ss.remoteCloser(log, addr, func() { g.leave(ss) })
}

// listenTCP opens a remote forward's TCP port, or takes its socket over
// when a session of the same client holds it (takeOver).
func (ss *session) listenTCP(port uint16) (*net.TCPListener, error) {
	addr := net.JoinHostPort("", strconv.Itoa(int(port)))
	ln, err := tunnel.ListenTCP(addr)
	if err == nil {
		return ln, nil
	}
	f := ss.takeOver(port, proto.TCP, err)
	if f == nil {
		// The holder may have let go while we asked around.
		if ln, err2 := tunnel.ListenTCP(addr); err2 == nil {
			return ln, nil
		}
		return nil, err
	}
	defer f.Close()
	fl, ferr := net.FileListener(f)
	if ferr != nil {
		return nil, fmt.Errorf("%w (and the handed-over socket: %v)", err, ferr)
	}
	return fl.(*net.TCPListener), nil
}

// listenUDP is listenTCP for a UDP remote forward.
func (ss *session) listenUDP(port uint16) (*net.UDPConn, error) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(port)})
	if err == nil {
		return pc, nil
	}
	f := ss.takeOver(port, proto.UDP, err)
	if f == nil {
		if pc, err2 := net.ListenUDP("udp", &net.UDPAddr{Port: int(port)}); err2 == nil {
			return pc, nil
		}
		return nil, err
	}
	defer f.Close()
	c, ferr := net.FilePacketConn(f)
	if ferr != nil {
		return nil, fmt.Errorf("%w (and the handed-over socket: %v)", err, ferr)
	}
	return c.(*net.UDPConn), nil
}

// takeOver asks for port's socket when opening it failed because it is in
// use: from a session of the same client here that no longer answers, or
// from a draining data plane. It returns nil when nobody hands one over.
func (ss *session) takeOver(port uint16, protocol proto.Protocol, err error) *os.File {
	if !errors.Is(err, syscall.EADDRINUSE) || port == 0 {
		return nil
	}
	if f := ss.srv.reclaim(port, protocol, ss); f != nil {
		return f
	}
	if ss.srv.cfg.TakeOver == nil {
		return nil
	}
	f, terr := ss.srv.cfg.TakeOver(port, protocol, ss.identity())
	if terr != nil {
		ss.log.Debug("no draining data plane hands this port over", "port", port, "err", terr)
		return nil
	}
	ss.log.Info("took the remote port over from a draining data plane", "port", port, "protocol", protocol.String())
	return f
}

// refuseListen answers a remote forward whose port could not be opened.
func (ss *session) refuseListen(ctx context.Context, log *slog.Logger, port uint16, err error) {
	st, msg := listenStatus(port, err)
	log.Warn("forward refused", "reason", msg, "err", err)
	ss.respond(ctx, true, st, msg)
}

// remoteOpened logs, audits and answers a remote forward now listening on
// addr, and returns the session's logger for it.
func (ss *session) remoteOpened(ctx context.Context, log *slog.Logger, addr net.Addr, req proto.RemoteForwardRequest, kv ...any) *slog.Logger {
	log = log.With("listen", addr.String())
	ss.log = log
	ss.forward.Store(fmt.Sprintf("remote %s/%v -> %s", addr, req.Protocol, req.LocalDestination))
	log.Info("remote forward open", kv...)
	ss.srv.audit("forward_open", "remote", ss.remote(), "kind", "remote", "listen", addr.String(), "protocol", req.Protocol.String())
	ss.respond(ctx, true, proto.StatusSuccess, addr.String())
	return log
}

// remoteCloser returns the idempotent function that ends a remote forward:
// stop, then log and audit.
func (ss *session) remoteCloser(log *slog.Logger, addr net.Addr, stop func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			log.Info("remote forward closed")
			ss.srv.audit("forward_close", "remote", ss.remote(), "kind", "remote", "listen", addr.String())
		})
	}
}

// startRemoteUDP opens the requested UDP port: each source address becomes
// a flow on its own stream.
func (ss *session) startRemoteUDP(ctx context.Context, log *slog.Logger, req proto.RemoteForwardRequest) func() {
	pc, err := ss.listenUDP(req.Port)
	if err != nil {
		ss.refuseListen(ctx, log, req.Port, err)
		return nil
	}
	log = ss.remoteOpened(ctx, log, pc.LocalAddr(), req)
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
			_ = ss.control.Notify(ctx, proto.ConnectionClose{ConnID: id, Reason: reason})
		},
		IdleTimeout: ss.srv.cfg.UDPIdleTimeout,
		MaxFlows:    ss.srv.cfg.UDPMaxFlows,
		Log:         log,
		Count:       ss.counters(),
		Dropped:     &ss.srv.udpDropped,
	}
	uctx, cancel := context.WithCancel(ctx)
	running := make(chan struct{})
	ss.wg.Add(1)
	go func() {
		defer ss.wg.Done()
		defer close(running)
		if err := ul.Run(uctx); err != nil {
			log.Warn("UDP listener failed", "err", err)
		}
	}()
	// Handing over ends this session's flows: datagrams that arrive from
	// then on reach the new session as new flows.
	ss.rpf.Store(&remoteListener{port: req.Port, protocol: proto.UDP, file: pc.File,
		stop: func() { cancel(); <-running; pc.Close() }})
	return ss.remoteCloser(log, pc.LocalAddr(), func() {
		cancel()
		pc.Close()
	})
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

// counters count tunneled bytes into the server's and the session's totals
// as they move, so metrics are true mid-transfer.
func (ss *session) counters() tunnel.Counters {
	return tunnel.Counters{
		ToStream:   []*atomic.Uint64{&ss.srv.bytesSent, &ss.bytesSent},
		FromStream: []*atomic.Uint64{&ss.srv.bytesRcv, &ss.bytesRcv},
	}
}

// admit decides whether the session may open one more tunneled
// connection; the caller calls release when it ends.
func (ss *session) admit() bool {
	cfg := &ss.srv.cfg
	reason := ""
	switch {
	case ss.active.Load() >= int64(cfg.MaxConnsPerSession):
		reason = fmt.Sprintf("the session already has %d connections", cfg.MaxConnsPerSession)
	case !ss.connRate.Allow():
		reason = fmt.Sprintf("more than %.0f new connections per second", cfg.ConnRate)
	}
	if reason == "" {
		ss.active.Add(1)
		return true
	}
	ss.srv.refusedConns.Add(1)
	now := time.Now().UnixNano()
	if last := ss.lastRefusal.Load(); now-last > int64(time.Second) && ss.lastRefusal.CompareAndSwap(last, now) {
		ss.log.Warn("refusing tunneled connections", "reason", reason)
		ss.srv.audit("rate_limited", "remote", ss.remote(), "reason", reason)
	}
	return false
}

func (ss *session) release() { ss.active.Add(-1) }

// takeRemote admits a connection accepted on the remote forward's port and
// relays it to the client, or reports that the session's limits refuse it.
func (ss *session) takeRemote(ctx context.Context, c *net.TCPConn) bool {
	if !ss.admit() {
		return false
	}
	ss.wg.Add(1)
	ss.srv.workers.Go(func() {
		defer ss.wg.Done()
		defer ss.release()
		ss.relayRemote(ctx, c)
	})
	return true
}

// relayRemote carries one accepted (and admitted) TCP connection to the
// client.
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
	var tc tunnel.Conn = c
	var ts tunnel.Stream = st
	if ss.bwUp != nil {
		tc = limitedConn{Conn: c, ctx: ctx, lim: ss.bwDn}
		ts = limitedStream{Stream: st, ctx: ctx, lim: ss.bwUp}
	}
	stats, err := tunnel.Relay(tc, ts, ss.counters(), srv.workers)
	reason := proto.ReasonNormal
	if err != nil {
		reason = proto.ReasonError
	}
	log.Debug("connection closed", "sent", stats.ToStream, "received", stats.FromStream, "err", err)
	_ = ss.control.Notify(ctx, proto.ConnectionClose{ConnID: id, Reason: reason})
}

// startLocal accepts the client's streams and connects each to the
// requested destination.
func (ss *session) startLocal(ctx context.Context, req proto.LocalForwardRequest) func() {
	log := ss.log.With("forward", fmt.Sprintf("client %s -> %s/%v", req.LocalSource, req.Destination, req.Protocol))
	host, portStr, err := net.SplitHostPort(req.Destination)
	port, perr := strconv.ParseUint(portStr, 10, 16)
	if err != nil || perr != nil || port == 0 || host == "" {
		log.Warn("forward refused", "reason", "bad destination", "destination", req.Destination)
		ss.respond(ctx, false, proto.StatusInternalError, fmt.Sprintf("destination %q is not host:port", req.Destination))
		return nil
	}
	if err := ss.policy.CheckOpen(host, uint16(port)); err != nil {
		ss.deny(ctx, false, log, err, "destination", req.Destination, "protocol", req.Protocol.String())
		return nil
	}
	ss.log = log
	ss.forward.Store(fmt.Sprintf("local %s -> %s/%v", req.LocalSource, req.Destination, req.Protocol))
	log.Info("local forward open")
	ss.srv.audit("forward_open", "remote", ss.remote(), "kind", "local", "destination", req.Destination, "protocol", req.Protocol.String())
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
			ss.srv.workers.Go(func() {
				defer ss.wg.Done()
				ss.relayLocal(ctx, req.Protocol, req.Destination, host, st)
			})
		}
	}()
	return func() {
		ss.srv.audit("forward_close", "remote", ss.remote(), "kind", "local", "destination", req.Destination)
	}
}

// deny refuses a forward that the permit rules do not allow: status 0x02
// with the rule that refused it, logged and audited.
func (ss *session) deny(ctx context.Context, remote bool, log *slog.Logger, err error, kv ...any) {
	log.Warn("forward denied", "reason", err.Error())
	ss.srv.deniedForwards.Add(1)
	ss.srv.audit("forward_denied", append([]any{"remote", ss.remote(), "reason", err.Error()}, kv...)...)
	ss.respond(ctx, remote, proto.StatusPermissionDenied, err.Error())
}

// relayLocal connects one client stream to the destination.
func (ss *session) relayLocal(ctx context.Context, protocol proto.Protocol, dest, host string, st *quic.Stream) {
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
	if !ss.admit() {
		abort(proto.StreamRefused)
		_ = ss.control.Notify(ctx, proto.ConnectionClose{ConnID: id, Reason: proto.ReasonRefused})
		return
	}
	defer ss.release()
	// Check the address a name resolves to, so a name cannot reach an
	// address the permit rules forbid.
	d := net.Dialer{Timeout: ss.srv.cfg.DialTimeout, ControlContext: func(_ context.Context, network, address string, c syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return err
		}
		if err := ss.policy.CheckResolved(host, ap); err != nil {
			return err
		}
		return tunnel.ConnectEarly(network, address, c)
	}}
	if protocol == proto.UDP {
		c, err := d.DialContext(ctx, "udp", dest)
		if err != nil {
			log.Warn("destination unreachable", "dest", dest, "err", err)
			abort(proto.StreamRefused)
			_ = ss.control.Notify(ctx, proto.ConnectionClose{ConnID: id, Reason: proto.ReasonRefused})
			return
		}
		ss.srv.connsTotal.Add(1)
		ss.srv.udpFlows.Add(1)
		err = tunnel.RelayUDP(c.(*net.UDPConn), st, ss.srv.cfg.UDPIdleTimeout, ss.counters())
		ss.srv.udpFlows.Add(-1)
		log.Debug("UDP flow closed", "err", err)
		return
	}
	c, err := d.DialContext(ctx, "tcp", dest)
	if err != nil {
		log.Warn("destination unreachable", "dest", dest, "err", err)
		abort(proto.StreamRefused)
		_ = ss.control.Notify(ctx, proto.ConnectionClose{ConnID: id, Reason: proto.ReasonRefused})
		return
	}
	ss.relay(ctx, log, id, c.(*net.TCPConn), st)
}
