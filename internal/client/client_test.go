package client

import (
	"net"
	"testing"

	"github.com/quicport/quicport/internal/proto"
)

func TestCheckSessions(t *testing.T) {
	local := Forward{Source: proto.Addr{Port: 5432, Protocol: proto.TCP}}
	var stdio *net.TCPConn // only whether a forward has one matters here
	for _, c := range []struct {
		name string
		n    int
		f    Forward
		ok   bool
	}{
		{"one, remote", 1, Forward{Remote: true}, true},
		{"one, stdio", 1, Forward{Stdio: stdio}, true},
		{"two, local TCP", 2, local, true},
		{"the most, local TCP", MaxSessions, local, true},
		{"none", 0, local, false},
		{"too many", MaxSessions + 1, local, false},
		{"two, remote TCP", 2, Forward{Remote: true, Source: proto.Addr{Port: 9022, Protocol: proto.TCP}}, true},
		{"two, remote on port 0", 2, Forward{Remote: true, Source: proto.Addr{Protocol: proto.TCP}}, false},
		{"two, remote UDP", 2, Forward{Remote: true, Source: proto.Addr{Port: 53, Protocol: proto.UDP}}, false},
		{"two, local UDP", 2, Forward{Source: proto.Addr{Port: 53, Protocol: proto.UDP}}, false},
		{"two, stdio", 2, Forward{Stdio: stdio}, false},
	} {
		if err := CheckSessions(c.n, c.f); (err == nil) != c.ok {
			t.Errorf("%s: CheckSessions(%d) = %v, want ok %v", c.name, c.n, err, c.ok)
		}
	}
}
