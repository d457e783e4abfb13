package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

// otherAddressTimeout bounds a handshake to one of the server's addresses
// while others remain to be tried: a working path completes a QUIC
// handshake in a few round trips, and one that stays silent this long is
// more likely blocked than slow. The last address gets the full Timeout.
const otherAddressTimeout = 3 * time.Second

// dial resolves the server and completes the QUIC handshake with the first
// of its addresses that answers. A name may have several (IPv4 and IPv6,
// or more than one host): those this machine has a route to come first,
// IPv4 before IPv6 as Go's resolver prefers, and an address that cannot be
// reached (no answer, an ICMP error) passes the attempt on to the next.
func (s *session) dial(ctx context.Context) error {
	cfg := &s.c.cfg
	host, port, err := net.SplitHostPort(cfg.Server)
	if err != nil {
		return &permanentError{fmt.Errorf("server address %q: want host:port, such as example.com:39000", cfg.Server)}
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	addrs, err := resolve(rctx, host, port)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("resolve server %s: %w", cfg.Server, err)
	}
	var errs dialErrors
	for i, raddr := range addrs {
		name := cfg.Server
		if len(addrs) > 1 {
			name = fmt.Sprintf("%s (%s)", cfg.Server, raddr)
		}
		timeout := cfg.Timeout
		if i < len(addrs)-1 {
			timeout = min(timeout, otherAddressTimeout)
		}
		err := s.dialAddr(ctx, host, name, raddr, timeout)
		var ue *unreachableError
		if err == nil || ctx.Err() != nil || !errors.As(err, &ue) {
			return err
		}
		errs = append(errs, err)
		if i < len(addrs)-1 {
			s.log.Info("the server's address did not answer; trying its next one", "addr", raddr.String(), "err", err.Error())
		}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errs
}

// dialErrors is why each of the server's addresses failed, in order.
type dialErrors []error

func (e dialErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "none of the server's %d addresses answered: ", len(e))
	for i, err := range e {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e dialErrors) Unwrap() []error { return e }

// unreachableError is a handshake that found nobody at an address: another
// of the server's addresses may still work.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }
func (e *unreachableError) Unwrap() error { return e.err }

// resolve returns the server's addresses in the order to try them: those
// with a route from this machine (a UDP connect, which sends nothing,
// finds one) before those without, IPv4 before IPv6, and otherwise as the
// resolver gave them.
func resolve(ctx context.Context, host, port string) ([]*net.UDPAddr, error) {
	p, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil {
		return nil, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, err
	}
	rank := func(ip netip.Addr) int {
		r := 0
		if !ip.Unmap().Is4() {
			r++
		}
		if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, uint16(p)))); err != nil {
			r += 2
		} else {
			c.Close()
		}
		return r
	}
	ranks := make(map[netip.Addr]int, len(ips))
	ips = slices.DeleteFunc(ips, func(ip netip.Addr) bool {
		if _, dup := ranks[ip]; dup {
			return true
		}
		ranks[ip] = rank(ip)
		return false
	})
	slices.SortStableFunc(ips, func(a, b netip.Addr) int { return ranks[a] - ranks[b] })
	addrs := make([]*net.UDPAddr, len(ips))
	for i, ip := range ips {
		addrs[i] = net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(p)))
	}
	return addrs, nil
}

// dialAddr binds a UDP socket of raddr's family and completes the QUIC
// handshake with raddr within timeout; name is the server as errors call
// it. It returns an *unreachableError when nobody answered there.
//
// Each session has a socket of its own, so the server sees one address
// and port pair per QUIC connection: its BPF steering takes a run of
// datagrams that receive offload coalesced to the data plane of the run's
// first (tunnel.WithGRO), and a new session during a graceful restart
// must not share a pair with the old one.
func (s *session) dialAddr(ctx context.Context, host, name string, raddr *net.UDPAddr, timeout time.Duration) error {
	cfg := &s.c.cfg
	v6 := raddr.IP.To4() == nil
	bind := &net.UDPAddr{IP: net.IPv4zero}
	if v6 {
		bind = &net.UDPAddr{IP: net.IPv6unspecified}
	}
	udp, err := net.ListenUDP("udp", bind)
	if err != nil {
		return fmt.Errorf("bind UDP socket: %w", err)
	}
	reportUnreachable(udp, v6, true)
	var refused atomic.Uint64 // datagrams the kernel would not send
	tr := &quic.Transport{Conn: tunnel.WithGRO(tunnel.LossyConn{UDPConn: udp, Refused: tunnel.RefusedSends(&refused, s.log)})}
	dialCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	qc := tunnel.QUICConfig(cfg.KeepAlive, cfg.IdleTimeout)
	tunnel.SetWindows(qc, cfg.StreamWindow)
	cfg.Congestion.Apply(qc)
	conn, err := tr.Dial(dialCtx, raddr, tlsid.ClientTLSConfig(host, cfg.ClientCert, cfg.ServerCA), qc)
	if err != nil {
		tr.Close()
		udp.Close()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := icmpError(name, err); err != nil {
			return &unreachableError{err}
		}
		var ie *quic.IdleTimeoutError
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ie) {
			if n := refused.Load(); n > 0 {
				return &unreachableError{fmt.Errorf("cannot reach server %s: the system refused to send to it (%d datagrams), so no QUIC handshake within %v; check for a firewall rule that drops outgoing UDP to it, and the route", name, n, timeout)}
			}
			return &unreachableError{fmt.Errorf("cannot reach server %s: no QUIC handshake within %v; check the address, that quicport server runs there, and that UDP is not blocked", name, timeout)}
		}
		if tlsErr := s.tlsError(err); tlsErr != nil {
			return tlsErr
		}
		var te *quic.TransportError
		if errors.As(err, &te) && te.Remote && te.ErrorCode == quic.ConnectionRefused {
			return fmt.Errorf("server %s refused the connection: it is restarting, or overloaded, or this address failed to authenticate too often (wait a minute and check the credentials)", name)
		}
		return fmt.Errorf("connect to server %s: %w", name, err)
	}
	reportUnreachable(udp, v6, false)
	s.udp, s.tr, s.conn = udp, tr, conn
	return nil
}

// icmpError explains a handshake that an ICMP error ended (see
// reportUnreachable), or returns nil.
func icmpError(server string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return nil
	}
	switch errno {
	case syscall.ECONNREFUSED:
		return fmt.Errorf("cannot reach server %s: nothing listens on that UDP port (its host answered \"port unreachable\"); check the port, and that quicport server runs there", server)
	case syscall.EHOSTUNREACH, syscall.ENETUNREACH:
		return fmt.Errorf("cannot reach server %s: %v (an ICMP error from the network); check the address and the route", server, errno)
	}
	return nil
}

// authenticate checks the server certificate against known_hosts, then runs
// the authentication handshake on the first stream, which it returns as the
// control stream.
func (s *session) authenticate(ctx context.Context) (*quic.Stream, error) {
	cfg, conn := &s.c.cfg, s.conn
	var record func() error
	switch {
	case cfg.ServerCA != nil:
		// TLS verified the chain and the name: no TOFU needed.
	case cfg.Insecure:
		s.log.Warn("--insecure: the server certificate is not checked")
	default:
		certs := conn.ConnectionState().TLS.PeerCertificates
		var err error
		record, err = cfg.TOFU.Check(cfg.Server, certs[0].Raw, !cfg.Auth.PrivateKey.IsZero())
		if err != nil {
			return nil, &permanentError{err}
		}
	}
	binding, err := auth.Binding(conn.ConnectionState().TLS)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(cfg.Timeout)
	authCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ctrl, err := conn.OpenStreamSync(authCtx)
	if err != nil {
		return nil, s.sessionError(err)
	}
	_ = ctrl.SetDeadline(deadline)
	if err := auth.Client(ctrl, binding, cfg.Auth); err != nil {
		var re *auth.RejectedError
		if errors.As(err, &re) {
			return nil, err
		}
		serr := s.sessionError(err)
		if IsPermanent(serr) {
			return nil, serr
		}
		return nil, fmt.Errorf("authenticate: %w", serr)
	}
	if record != nil {
		// The server proved the pinned key in this TLS session, which
		// vouches for its certificate.
		if err := record(); err != nil {
			return nil, err
		}
	}
	s.log.Info("authenticated", "method", methodOf(cfg.Auth), "congestion", cfg.Congestion.String(), "stream_window", cfg.StreamWindow)
	return ctrl, nil
}

func methodOf(a auth.ClientConfig) auth.Method {
	switch {
	case a.PSK != nil:
		return auth.MethodPSK
	case !a.PrivateKey.IsZero():
		return auth.MethodX25519
	}
	return auth.MethodMTLS
}

// requestForward asks the server for the forward and waits for its answer.
func (s *session) requestForward(ctx context.Context, ctrl *quic.Stream) (Ready, error) {
	f := s.c.cfg.Forward
	var req proto.Message
	if f.Remote {
		req = proto.RemoteForwardRequest{Port: f.Source.Port, Protocol: f.Source.Protocol, LocalDestination: f.Dest.String(),
			Shared: s.c.cfg.Sessions > 1, Token: s.c.token}
	} else {
		req = proto.LocalForwardRequest{Protocol: f.Dest.Protocol, Destination: f.Dest.HostPort(DefaultDestHost), LocalSource: f.Source.String()}
	}
	if err := s.control.Send(ctx, req); err != nil {
		return Ready{}, s.sessionError(err)
	}
	msg, err := s.control.Read()
	if err != nil {
		var ae *quic.ApplicationError
		if f.Remote && s.c.cfg.Sessions > 1 && errors.As(err, &ae) && ae.Remote && ae.ErrorCode == proto.ConnProtocolError {
			// A server that predates shared remote forwards takes the
			// shared request for a malformed one; retrying cannot help.
			return Ready{}, &permanentError{fmt.Errorf("server %s refused the remote forward shared by %d QUIC connections (%s): it runs a quicport older than this client; upgrade the server, or leave --quic-connections at 1",
				s.c.cfg.Server, s.c.cfg.Sessions, ae.ErrorMessage)}
		}
		return Ready{}, s.sessionError(err)
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
	switch {
	case s.c.ln != nil:
		return Ready{LocalListen: s.c.ln.Addr()}, nil
	case s.c.pc != nil:
		return Ready{LocalListen: s.c.pc.LocalAddr()}, nil
	}
	return Ready{}, nil
}

// tlsError turns a TLS failure (a certificate one side does not accept)
// into a permanent error that says which side refused what, or returns nil.
// In TLS 1.3 the server checks the client certificate after the client has
// finished, so a refusal can also end an established session.
func (s *session) tlsError(err error) error {
	var te *quic.TransportError
	if !errors.As(err, &te) || !te.ErrorCode.IsCryptoError() {
		return nil
	}
	cfg := &s.c.cfg
	if te.Remote {
		return &permanentError{fmt.Errorf("server %s refused the TLS handshake (%v): its --client-ca does not accept this client's --tls-cert, the certificate expired, or its name is not allowed", cfg.Server, err)}
	}
	host, _, _ := net.SplitHostPort(cfg.Server)
	return &permanentError{fmt.Errorf("server %s's certificate is not trusted (%v): check --server-ca and that the certificate is for %q", cfg.Server, err, host)}
}
