package permit

import (
	"fmt"
	"net/netip"
)

// Policy is what one session may do: the server-wide rules and, for an
// X25519 client, the rules of its key. Unset lists impose nothing, except
// that ports below 1024 always need an explicit server-wide rule.
type Policy struct {
	Listen    Ports // --permit-listen
	Open      Dests // --permit-open
	KeyListen Ports // the key's permitlisten option
	KeyOpen   Dests // the key's permitopen option
}

// Denied says which rule refused a request.
type Denied struct {
	What string // "listen on port 80", "connect to 10.0.0.5:22"
	Rule string // "--permit-listen 9000-9100", "this key's permitopen option", ...
}

func (d *Denied) Error() string { return fmt.Sprintf("%s is not permitted by %s", d.What, d.Rule) }

// CheckListen decides whether a remote forward may listen on port (0 asks
// the server to choose).
func (p Policy) CheckListen(port uint16) error {
	what := fmt.Sprintf("listening on port %d", port)
	if port == 0 {
		what = "listening on a server-chosen port (0)"
	}
	switch {
	case p.Listen.IsSet() && (port == 0 || !p.Listen.Contains(port)):
		return &Denied{what, fmt.Sprintf("the server's --permit-listen %s", p.Listen.Text)}
	case !p.Listen.IsSet() && port != 0 && port < PrivilegedPorts:
		return &Denied{what, "the server's defaults (ports below 1024 need an explicit --permit-listen rule)"}
	case p.KeyListen.IsSet() && (port == 0 || !p.KeyListen.Contains(port)):
		return &Denied{what, fmt.Sprintf("this client key's permitlisten=%q option", p.KeyListen.Text)}
	}
	return nil
}

// CheckOpen decides whether a local forward may connect to host:port as
// the client wrote it.
func (p Policy) CheckOpen(host string, port uint16) error {
	what := fmt.Sprintf("connecting to %s", joinHostPort(host, port))
	if p.Open.IsSet() && !p.Open.Allows(host, port) {
		return &Denied{what, fmt.Sprintf("the server's --permit-open %s", p.Open.Text)}
	}
	if p.KeyOpen.IsSet() && !p.KeyOpen.Allows(host, port) {
		return &Denied{what, fmt.Sprintf("this client key's permitopen=%q option", p.KeyOpen.Text)}
	}
	return nil
}

// CheckResolved decides whether the address a permitted name resolved to
// may be dialed: an IP rule must not be bypassed through a name.
func (p Policy) CheckResolved(requested string, addr netip.AddrPort) error {
	var rule string
	switch {
	case p.Open.IsSet() && !p.Open.AllowsAddr(requested, addr):
		rule = fmt.Sprintf("the server's --permit-open %s", p.Open.Text)
	case p.KeyOpen.IsSet() && !p.KeyOpen.AllowsAddr(requested, addr):
		rule = fmt.Sprintf("this client key's permitopen=%q option", p.KeyOpen.Text)
	default:
		return nil
	}
	// Formatted only for a refusal: this runs on every tunneled
	// connection's dial.
	return &Denied{fmt.Sprintf("connecting to %s (resolved from %s)", addr, requested), rule}
}

func joinHostPort(host string, port uint16) string {
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}
