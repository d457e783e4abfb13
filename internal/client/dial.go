package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

// dial resolves the server, binds a UDP socket of the server's address
// family and completes the QUIC handshake.
func (c *session) dial(ctx context.Context) (*net.UDPConn, *quic.Transport, *quic.Conn, error) {
	host, _, err := net.SplitHostPort(c.cfg.Server)
	if err != nil {
		return nil, nil, nil, &permanentError{fmt.Errorf("server address %q: want host:port, such as example.com:39000", c.cfg.Server)}
	}
	raddr, err := net.ResolveUDPAddr("udp", c.cfg.Server)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("resolve server %s: %w", c.cfg.Server, err)
	}
	bind := &net.UDPAddr{IP: net.IPv4zero}
	if raddr.IP.To4() == nil {
		bind = &net.UDPAddr{IP: net.IPv6unspecified}
	}
	udp, err := net.ListenUDP("udp", bind)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bind UDP socket: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	dialCtx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := tr.Dial(dialCtx, raddr, tlsid.ClientTLSConfig(host), tunnel.QUICConfig(c.cfg.KeepAlive, c.cfg.IdleTimeout))
	if err != nil {
		tr.Close()
		udp.Close()
		if ctx.Err() != nil {
			return nil, nil, nil, ctx.Err()
		}
		var ie *quic.IdleTimeoutError
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ie) {
			return nil, nil, nil, fmt.Errorf("cannot reach server %s: no QUIC handshake within %v; check the address, that quicport server runs there, and that UDP is not blocked", c.cfg.Server, c.cfg.Timeout)
		}
		return nil, nil, nil, fmt.Errorf("connect to server %s: %w", c.cfg.Server, err)
	}
	return udp, tr, conn, nil
}

// authenticate checks the server certificate against known_hosts, then runs
// the authentication handshake on the first stream, which it returns as the
// control stream.
func (c *session) authenticate(ctx context.Context, conn *quic.Conn) (*quic.Stream, error) {
	var record func() error
	if c.cfg.Insecure {
		c.log.Warn("--insecure: the server certificate is not checked")
	} else {
		certs := conn.ConnectionState().TLS.PeerCertificates
		var err error
		record, err = c.cfg.TOFU.Check(c.cfg.Server, certs[0].Raw, !c.cfg.Auth.PrivateKey.IsZero())
		if err != nil {
			return nil, &permanentError{err}
		}
	}
	binding, err := auth.Binding(conn.ConnectionState().TLS)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(c.cfg.Timeout)
	authCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ctrl, err := conn.OpenStreamSync(authCtx)
	if err != nil {
		return nil, c.sessionError(err)
	}
	_ = ctrl.SetDeadline(deadline)
	if err := auth.Client(ctrl, binding, c.cfg.Auth); err != nil {
		var re *auth.RejectedError
		if errors.As(err, &re) {
			return nil, err
		}
		return nil, fmt.Errorf("authenticate: %w", c.sessionError(err))
	}
	if record != nil {
		// The server proved the pinned key in this TLS session, which
		// vouches for its certificate.
		if err := record(); err != nil {
			return nil, err
		}
	}
	c.log.Info("authenticated", "method", methodOf(c.cfg.Auth))
	return ctrl, nil
}

func methodOf(a auth.ClientConfig) auth.Method {
	if a.PSK != nil {
		return auth.MethodPSK
	}
	return auth.MethodX25519
}

// requestForward asks the server for the forward and waits for its answer.
func (c *session) requestForward(ctx context.Context, ctrl *quic.Stream, ln net.Listener) (Ready, error) {
	f := c.cfg.Forward
	var req proto.Message
	if f.Remote {
		req = proto.RemoteForwardRequest{Port: f.Source.Port, Protocol: f.Source.Protocol, LocalDestination: f.Dest.String()}
	} else {
		req = proto.LocalForwardRequest{Protocol: f.Dest.Protocol, Destination: f.Dest.HostPort(DefaultDestHost), LocalSource: f.Source.String()}
	}
	if err := c.control.Send(ctx, req); err != nil {
		return Ready{}, c.sessionError(err)
	}
	msg, err := c.control.Read()
	if err != nil {
		return Ready{}, c.sessionError(err)
	}
	_ = ctrl.SetDeadline(time.Time{})
	resp, ok := msg.(proto.ForwardResponse)
	if !ok || resp.Remote != f.Remote {
		return Ready{}, fmt.Errorf("%w: server answered the forward request with %v", proto.ErrMalformed, msg.Type())
	}
	if resp.Status != proto.StatusSuccess {
		return Ready{}, &ForwardError{Status: resp.Status, Message: resp.Message}
	}
	if f.Remote {
		return Ready{RemoteListen: resp.Message}, nil
	}
	return Ready{LocalListen: ln.Addr()}, nil
}
