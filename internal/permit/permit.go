// Package permit decides which remote ports a client may open on the server
// (permit-listen) and which destinations a local forward may reach from the
// server (permit-open). Server-wide rules come from flags; an authorized
// key's own options, OpenSSH style, can only narrow them.
package permit

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// PrivilegedPorts are the ports below this number: a remote forward may
// listen on one only when a --permit-listen rule names it explicitly.
const PrivilegedPorts = 1024

// maxRules bounds the entries of one rule list.
const maxRules = 4096

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// Ports is a list of port ranges, as in "9000-9100,2222". The zero value
// is "not set".
type Ports struct {
	Ranges []PortRange
	Text   string // as the user wrote it, for messages
}

// ParsePorts parses a comma-separated list of ports and ranges.
func ParsePorts(s string) (Ports, error) {
	p := Ports{Text: s}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if len(p.Ranges) >= maxRules {
			return p, fmt.Errorf("more than %d port rules", maxRules)
		}
		lo, hi, isRange := strings.Cut(item, "-")
		a, err := parsePort(lo)
		if err != nil {
			return p, fmt.Errorf("port rule %q: %w", item, err)
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return p, fmt.Errorf("port rule %q: %w", item, err)
			}
			if b < a {
				return p, fmt.Errorf("port rule %q: range ends before it starts", item)
			}
		}
		p.Ranges = append(p.Ranges, PortRange{a, b})
	}
	if len(p.Ranges) == 0 {
		return p, fmt.Errorf("empty port list; write ports or ranges such as 9000-9100,2222")
	}
	return p, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return uint16(n), nil
}

// IsSet reports whether the list was given.
func (p Ports) IsSet() bool { return p.Ranges != nil }

// Contains reports whether port is in one of the ranges.
func (p Ports) Contains(port uint16) bool {
	for _, r := range p.Ranges {
		if port >= r.Lo && port <= r.Hi {
			return true
		}
	}
	return false
}

// Dest is one permit-open rule: a host (IP, CIDR prefix, DNS name, or "*")
// and a port ("*" = any).
type Dest struct {
	prefix  netip.Prefix // valid for IP and CIDR rules
	host    string       // lower-case DNS name, or "*"
	port    uint16       // 0 = any
	literal string
}

// Dests is a list of permit-open rules, as in
// "127.0.0.1:22,10.0.0.0/8:5432,db.internal:5432,[::1]:*".
type Dests struct {
	Rules []Dest
	Text  string
}

// ParseDests parses a comma-separated permit-open list.
func ParseDests(s string) (Dests, error) {
	d := Dests{Text: s}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if len(d.Rules) >= maxRules {
			return d, fmt.Errorf("more than %d destination rules", maxRules)
		}
		i := strings.LastIndexByte(item, ':')
		if i <= 0 {
			return d, fmt.Errorf("destination rule %q: want host:port, such as 127.0.0.1:22 or 10.0.0.0/8:5432", item)
		}
		host, portStr := strings.Trim(item[:i], "[]"), item[i+1:]
		r := Dest{literal: item}
		if portStr != "*" {
			p, err := parsePort(portStr)
			if err != nil {
				return d, fmt.Errorf("destination rule %q: %w", item, err)
			}
			r.port = p
		}
		switch {
		case host == "*":
			r.host = "*"
		case strings.Contains(host, "/"):
			pfx, err := netip.ParsePrefix(host)
			if err != nil {
				return d, fmt.Errorf("destination rule %q: %q is not a CIDR prefix", item, host)
			}
			r.prefix = pfx.Masked()
		default:
			if ip, err := netip.ParseAddr(host); err == nil {
				r.prefix = netip.PrefixFrom(ip.Unmap(), ip.Unmap().BitLen())
			} else if validName(host) {
				r.host = strings.ToLower(host)
			} else {
				return d, fmt.Errorf("destination rule %q: %q is not an IP address, CIDR prefix or host name", item, host)
			}
		}
		d.Rules = append(d.Rules, r)
	}
	if len(d.Rules) == 0 {
		return d, fmt.Errorf("empty destination list; write host:port rules such as 127.0.0.1:22")
	}
	return d, nil
}

func validName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c == '-' || c == '.' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// IsSet reports whether the list was given.
func (d Dests) IsSet() bool { return d.Rules != nil }

// Allows reports whether the destination host:port matches a rule. host is
// what the client asked for (a name or an address); a name rule matches
// the name as written, an IP or CIDR rule matches an address. Callers that
// resolve names must check the resolved address too (AllowsAddr), so a
// name cannot smuggle a forbidden address.
func (d Dests) Allows(host string, port uint16) bool {
	h := strings.ToLower(strings.Trim(host, "[]"))
	ip, ipErr := netip.ParseAddr(h)
	for _, r := range d.Rules {
		if r.port != 0 && r.port != port {
			continue
		}
		switch {
		case r.host == "*":
			return true
		case r.host != "" && r.host == h:
			return true
		case r.prefix.IsValid() && ipErr == nil && r.prefix.Contains(ip.Unmap()):
			return true
		}
	}
	return false
}

// AllowsAddr reports whether a resolved address is permitted by an IP or
// CIDR rule, or by a name rule that the requested name matched.
func (d Dests) AllowsAddr(requested string, addr netip.AddrPort) bool {
	if d.Allows(addr.Addr().Unmap().String(), addr.Port()) {
		return true
	}
	// A name rule vouches for whatever the name resolves to.
	h := strings.ToLower(requested)
	for _, r := range d.Rules {
		if (r.host == "*" || (r.host != "" && r.host == h)) && (r.port == 0 || r.port == addr.Port()) {
			return true
		}
	}
	return false
}
