//go:build linux

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// roamingHost is the client's machine with two links to this one, "wifi"
// and "wired", each with a subnet of its own (198.18.N.0/24 and
// 198.19.N.0/24, from the range set aside for benchmarks). The server's
// address is this side of the wifi link; across wired it is reached
// through a route, as across the internet.
type roamingHost struct {
	*netnsHost
	wifi, wire string // the interface names inside the namespace
	server     string // the server's address, this side of the wifi link
}

func newRoamingHost(t *testing.T) *roamingHost {
	t.Helper()
	h := &roamingHost{netnsHost: newNetnsHost(t), wifi: "wifi0", wire: "wired0"}
	h.server = fmt.Sprintf("198.18.%d.1", h.n)
	for i, name := range []string{h.wifi, h.wire} {
		outside := h.link(name, byte('a'+i))
		h.run("addr", "add", fmt.Sprintf("198.%d.%d.1/24", 18+i, h.n), "dev", outside)
		h.run("-n", h.ns, "addr", "add", fmt.Sprintf("198.%d.%d.2/24", 18+i, h.n), "dev", name)
	}
	return h
}

// leaveWifi takes the wifi link down (its routes go with it: for a moment
// the server is unreachable) and then reaches the server across wired.
func (h *roamingHost) leaveWifi() {
	h.t.Helper()
	h.run("-n", h.ns, "link", "set", h.wifi, "down")
	time.Sleep(100 * time.Millisecond)
	h.run("-n", h.ns, "route", "add", h.server+"/32", "via", fmt.Sprintf("198.19.%d.1", h.n), "dev", h.wire)
}

// A client whose machine moves to another network in the middle of a
// transfer (its wifi link goes down; a moment later it reaches the server
// across its wired link, from another address) keeps its session: every
// byte arrives, the client never reconnects, and the server's session list
// shows the new address. The server listens on the wildcard address, as it
// does by default, so its replies follow the client to the new interface.
func TestClientChangesNetworks(t *testing.T) {
	const size = 64 << 20
	h := newRoamingHost(t)
	cr := credentials(t)[0] // a PSK
	srv := testutil.StartServer(t, server.Config{Auth: cr.server, Listen: "0.0.0.0:0"})
	var echo string
	h.inside(func() { echo = testutil.EchoServer(t) })
	port := testutil.Itoa(testutil.FreePort(t))
	c := h.startClient(t, cr, "-s", h.server+":"+testutil.Port(t, srv.AddrString()), "-r", port, "-l", echo)
	c.WaitLog("forward established", 1, 20*time.Second)
	entry := "127.0.0.1:" + port
	before := fmt.Sprintf("198.18.%d.2:", h.n)
	if s := srv.Sessions(); len(s) != 1 || !strings.HasPrefix(s[0].Peer, before) {
		t.Fatalf("server's sessions: %+v, want one from the wifi address %s", s, before)
	}

	done := make(chan error, 1)
	go func() { done <- testutil.EchoCheck(entry, size, 21) }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the transfer ended (%v) before the client changed networks: this test would prove nothing", err)
	default:
	}
	start := time.Now()
	h.leaveWifi()
	if err := <-done; err != nil {
		t.Fatalf("transfer while the client changed networks: %v", err)
	}
	t.Logf("the transfer ended %v after the change began", time.Since(start).Round(time.Millisecond))
	if err := testutil.EchoCheck(entry, 1<<20, 22); err != nil {
		t.Fatalf("after the change: %v", err)
	}
	after := fmt.Sprintf("198.19.%d.2:", h.n)
	if s := srv.Sessions(); len(s) != 1 || !strings.HasPrefix(s[0].Peer, after) {
		t.Errorf("server's sessions after the change: %+v, want the one, from the wired address %s", s, after)
	}
	if st := srv.Stats(); st.AuthSuccess != 1 {
		t.Errorf("%d sessions authenticated, want the one: the client reconnected", st.AuthSuccess)
	}
	if strings.Contains(c.Output(), "reconnecting") {
		t.Errorf("the client reconnected:\n%s", c.Output())
	}
}

// A client that lost its network backs off between attempts, up to a
// minute (here at once: --reconnect-delay 600, capped at 60 s); when the
// network returns (its interface comes back up) it reconnects within
// seconds, not at the end of the wait: it watches the machine's addresses
// and routes.
func TestClientReconnectsWhenTheNetworkReturns(t *testing.T) {
	h := newNetnsHost(t)
	outside := h.link("eth0", 'a')
	h.run("addr", "add", fmt.Sprintf("198.18.%d.1/24", h.n), "dev", outside)
	h.run("-n", h.ns, "addr", "add", fmt.Sprintf("198.18.%d.2/24", h.n), "dev", "eth0")
	cr := credentials(t)[0] // a PSK
	srv := testutil.StartServer(t, server.Config{Auth: cr.server, Listen: fmt.Sprintf("198.18.%d.1:0", h.n)})
	var echo string
	h.inside(func() { echo = testutil.EchoServer(t) })

	h.run("-n", h.ns, "link", "set", "eth0", "down")
	port := testutil.Itoa(testutil.FreePort(t))
	c := h.startClient(t, cr, "-s", srv.AddrString(), "-r", port, "-l", echo, "--reconnect-delay", "600")
	line := c.WaitLog("tunnel down; reconnecting", 1, 30*time.Second)
	if in, err := time.ParseDuration(fmt.Sprint(line["in"])); err != nil || in != client.MaxReconnectDelay {
		t.Fatalf("first wait %v (%v), want %v: the test relies on it", line["in"], err, client.MaxReconnectDelay)
	}
	h.run("-n", h.ns, "link", "set", "eth0", "up")
	c.WaitLog("forward established", 1, client.MaxReconnectDelay/2)
	if !strings.Contains(c.Output(), "the network changed; reconnecting") {
		t.Errorf("the client did not say why it reconnected early:\n%s", c.Output())
	}
	if err := testutil.EchoCheck("127.0.0.1:"+port, 1<<20, 23); err != nil {
		t.Fatalf("through the tunnel: %v", err)
	}
}
