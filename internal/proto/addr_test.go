package proto

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAddr(t *testing.T) {
	tests := []struct {
		spec      string
		allowHost bool
		want      Addr
		wantErr   string
	}{
		{spec: "22", allowHost: true, want: Addr{Port: 22, Protocol: TCP}},
		{spec: "22/tcp", allowHost: true, want: Addr{Port: 22, Protocol: TCP}},
		{spec: "53/udp", allowHost: true, want: Addr{Port: 53, Protocol: UDP}},
		{spec: "53/UDP", allowHost: true, want: Addr{Port: 53, Protocol: UDP}},
		{spec: "192.168.1.100:22", allowHost: true, want: Addr{Host: "192.168.1.100", Port: 22, Protocol: TCP}},
		{spec: "192.168.1.100:22/tcp", allowHost: true, want: Addr{Host: "192.168.1.100", Port: 22, Protocol: TCP}},
		{spec: "[::1]:22", allowHost: true, want: Addr{Host: "::1", Port: 22, Protocol: TCP}},
		{spec: "[::1]:22/tcp", allowHost: true, want: Addr{Host: "::1", Port: 22, Protocol: TCP}},
		{spec: "db.internal:5432", allowHost: true, want: Addr{Host: "db.internal", Port: 5432, Protocol: TCP}},
		{spec: "9022", allowHost: false, want: Addr{Port: 9022, Protocol: TCP}},
		{spec: "127.0.0.1:9022", allowHost: false, wantErr: "only a port is allowed"},
		{spec: "", allowHost: true, wantErr: "empty address"},
		{spec: "22/sctp", allowHost: true, wantErr: "unknown protocol"},
		{spec: "0", allowHost: true, wantErr: "port 0 is not allowed"},
		{spec: "65536", allowHost: true, wantErr: "not a number from 1 to 65535"},
		{spec: "+22", allowHost: true, wantErr: "not a number"},
		{spec: "-1", allowHost: true, wantErr: "not a number"},
		{spec: "ssh", allowHost: true, wantErr: "not a number"},
		{spec: ":22", allowHost: true, wantErr: "empty host"},
		{spec: "::1:22", allowHost: true, wantErr: "want port or addr:port"},
		{spec: "[::1]", allowHost: true, wantErr: "want port or addr:port"},
		{spec: "[zz]:22", allowHost: true, wantErr: "want port or addr:port"},
		{spec: strings.Repeat("a", 400) + ":22", allowHost: true, wantErr: "limit is"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseAddr(tt.spec, tt.allowHost, false)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseAddr(%q) error = %v, want one containing %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAddr(%q): %v", tt.spec, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseAddr(%q) (-want +got):\n%s", tt.spec, diff)
			}
		})
	}
}

func TestAddrHostPort(t *testing.T) {
	a, _ := ParseAddr("[::1]:22", true, false)
	if got := a.HostPort("127.0.0.1"); got != "[::1]:22" {
		t.Errorf("HostPort = %q", got)
	}
	a, _ = ParseAddr("22", true, false)
	if got := a.HostPort("127.0.0.1"); got != "127.0.0.1:22" {
		t.Errorf("HostPort = %q", got)
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, s := range []string{"22", "22/tcp", "1.2.3.4:22/udp", "[::1]:22", "[fe80::1%eth0]:22", "a:0", "x/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAddr(s, true, true)
		if err != nil {
			return
		}
		// A parsed spec prints to a spec that parses back to the same Addr.
		b, err := ParseAddr(a.String(), true, true)
		if err != nil {
			t.Fatalf("ParseAddr(%q) = %v, but its String %q does not parse: %v", s, a, a.String(), err)
		}
		if a != b {
			t.Fatalf("round trip of %q: %#v != %#v", s, a, b)
		}
	})
}
