package permit

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustPorts(t *testing.T, s string) Ports {
	t.Helper()
	p, err := ParsePorts(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustDests(t *testing.T, s string) Dests {
	t.Helper()
	d, err := ParseDests(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"", "0", "70000", "10-5", "a", "1-", ",,"} {
		if _, err := ParsePorts(s); err == nil {
			t.Errorf("ParsePorts(%q) succeeded", s)
		}
	}
	for _, s := range []string{"", "22", "host", "1.2.3.4:x", "10.0.0.0/33:22", "bad host:22", ":22"} {
		if _, err := ParseDests(s); err == nil {
			t.Errorf("ParseDests(%q) succeeded", s)
		}
	}
}

func TestListen(t *testing.T) {
	tests := []struct {
		name     string
		p        Policy
		port     uint16
		denyRule string // "" = allowed
	}{
		{"default high port", Policy{}, 9022, ""},
		{"default server-chosen", Policy{}, 0, ""},
		{"default privileged", Policy{}, 80, "ports below 1024"},
		{"in range", Policy{Listen: mustPorts(t, "9000-9100,2222")}, 9050, ""},
		{"single", Policy{Listen: mustPorts(t, "9000-9100,2222")}, 2222, ""},
		{"outside", Policy{Listen: mustPorts(t, "9000-9100,2222")}, 9101, "--permit-listen 9000-9100,2222"},
		{"privileged explicit", Policy{Listen: mustPorts(t, "80")}, 80, ""},
		{"zero with rules", Policy{Listen: mustPorts(t, "9000-9100")}, 0, "--permit-listen"},
		{"key narrows", Policy{Listen: mustPorts(t, "9000-9100"), KeyListen: mustPorts(t, "9022")}, 9023, `permitlisten="9022"`},
		{"key allows inside", Policy{Listen: mustPorts(t, "9000-9100"), KeyListen: mustPorts(t, "9022")}, 9022, ""},
		{"key cannot widen", Policy{Listen: mustPorts(t, "9000-9100"), KeyListen: mustPorts(t, "8000")}, 8000, "--permit-listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.CheckListen(tt.port)
			check(t, err, tt.denyRule)
		})
	}
}

func check(t *testing.T, err error, denyRule string) {
	t.Helper()
	if denyRule == "" {
		if err != nil {
			t.Fatalf("denied: %v", err)
		}
		return
	}
	var d *Denied
	if !errors.As(err, &d) || !strings.Contains(err.Error(), denyRule) {
		t.Fatalf("error = %v, want a denial naming %q", err, denyRule)
	}
}

func TestOpen(t *testing.T) {
	server := mustDests(t, "127.0.0.1:22,10.0.0.0/8:5432,db.internal:5432,[::1]:*")
	tests := []struct {
		name     string
		p        Policy
		host     string
		port     uint16
		denyRule string
	}{
		{"default anything", Policy{}, "example.com", 443, ""},
		{"exact", Policy{Open: server}, "127.0.0.1", 22, ""},
		{"wrong port", Policy{Open: server}, "127.0.0.1", 23, "--permit-open"},
		{"cidr", Policy{Open: server}, "10.20.30.40", 5432, ""},
		{"outside cidr", Policy{Open: server}, "11.0.0.1", 5432, "--permit-open"},
		{"name", Policy{Open: server}, "DB.internal", 5432, ""},
		{"other name", Policy{Open: server}, "db.external", 5432, "--permit-open"},
		{"ipv6 any port", Policy{Open: server}, "::1", 8080, ""},
		{"mapped v4", Policy{Open: server}, "::ffff:127.0.0.1", 22, ""},
		{"key narrows", Policy{Open: server, KeyOpen: mustDests(t, "127.0.0.1:22")}, "10.1.1.1", 5432, "permitopen"},
		{"key and server agree", Policy{Open: server, KeyOpen: mustDests(t, "127.0.0.1:22")}, "127.0.0.1", 22, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, tt.p.CheckOpen(tt.host, tt.port), tt.denyRule)
		})
	}
}

// A name permitted by an IP rule's absence cannot resolve to a forbidden
// address; a name rule vouches for its own resolution.
func TestResolved(t *testing.T) {
	p := Policy{Open: mustDests(t, "10.0.0.0/8:*,db.internal:5432")}
	check(t, p.CheckResolved("db.internal", netip.MustParseAddrPort("192.168.1.5:5432")), "")
	check(t, p.CheckResolved("evil.example", netip.MustParseAddrPort("192.168.1.5:22")), "--permit-open")
	check(t, p.CheckResolved("inside.example", netip.MustParseAddrPort("10.1.2.3:22")), "")
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"9000-9100,2222", "127.0.0.1:22,10.0.0.0/8:5432,db.internal:5432", "[::1]:*", "*:*"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParsePorts(s); err == nil {
			for _, r := range p.Ranges {
				if r.Lo == 0 || r.Hi < r.Lo {
					t.Fatalf("bad range %+v from %q", r, s)
				}
			}
		}
		if d, err := ParseDests(s); err == nil {
			d.Allows("127.0.0.1", 22)
			d.Allows("db.internal", 5432)
		}
	})
}
