package proto

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Addr is a parsed address spec as users write it on the command line:
// `22`, `22/tcp`, `192.168.1.100:22`, `[::1]:22/tcp`, `db.internal:5432`.
type Addr struct {
	Host     string // empty when the spec gave only a port
	Port     uint16
	Protocol Protocol
}

// HostPort joins Host (or defaultHost when Host is empty) and Port into a
// dialable address.
func (a Addr) HostPort(defaultHost string) string {
	h := a.Host
	if h == "" {
		h = defaultHost
	}
	return net.JoinHostPort(h, strconv.Itoa(int(a.Port)))
}

// String formats the spec canonically, e.g. "[::1]:22/tcp" or "9022/tcp".
func (a Addr) String() string {
	if a.Host == "" {
		return fmt.Sprintf("%d/%v", a.Port, a.Protocol)
	}
	return a.HostPort("") + "/" + a.Protocol.String()
}

// maxAddrSpec bounds a spec's length: a DNS name is at most 253 bytes, plus
// brackets, port and protocol.
const maxAddrSpec = 300

// ParseAddr parses an address spec. allowHost says whether an address part is
// permitted (`--remote-source` takes only a port). Port 0 is accepted only
// when allowZero is set (a server-chosen port).
func ParseAddr(spec string, allowHost, allowZero bool) (Addr, error) {
	var a Addr
	if spec == "" {
		return a, fmt.Errorf("empty address: want a port such as 22, or addr:port such as 127.0.0.1:22")
	}
	if len(spec) > maxAddrSpec {
		return a, fmt.Errorf("address %.20q... is %d bytes long; the limit is %d", spec, len(spec), maxAddrSpec)
	}
	rest := spec
	a.Protocol = TCP
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		switch strings.ToLower(rest[i+1:]) {
		case "tcp":
			a.Protocol = TCP
		case "udp":
			a.Protocol = UDP
		default:
			return a, fmt.Errorf("address %q: unknown protocol %q; use /tcp or /udp", spec, rest[i+1:])
		}
		rest = rest[:i]
	}
	portStr := rest
	if strings.ContainsAny(rest, ":[]") {
		host, port, err := net.SplitHostPort(rest)
		if err != nil {
			return a, fmt.Errorf("address %q: want port or addr:port (IPv6 as [addr]:port)", spec)
		}
		if host == "" {
			return a, fmt.Errorf("address %q: empty host before the port", spec)
		}
		if (strings.HasPrefix(rest, "[") || strings.Contains(host, ":")) && net.ParseIP(host) == nil {
			return a, fmt.Errorf("address %q: want port or addr:port; %q in brackets is not an IPv6 address", spec, host)
		}
		if strings.ContainsAny(host, " \t/[]") {
			return a, fmt.Errorf("address %q: invalid host %q", spec, host)
		}
		if !allowHost {
			return a, fmt.Errorf("address %q: only a port is allowed here, such as 9022 or 9022/tcp", spec)
		}
		a.Host = host
		portStr = port
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || (portStr != "" && portStr[0] == '+') {
		return a, fmt.Errorf("address %q: port %q is not a number from 1 to 65535", spec, portStr)
	}
	if port == 0 && !allowZero {
		return a, fmt.Errorf("address %q: port 0 is not allowed here; use 1 to 65535", spec)
	}
	a.Port = uint16(port)
	return a, nil
}
