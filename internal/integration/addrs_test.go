//go:build linux

package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// A server name with an IPv4 and an IPv6 address, of which only the IPv6
// one serves: the client connects through it, whether the IPv4 address
// answers "port unreachable" or has no route from the client's machine at
// all (an IPv6-only network). Before, the client took the IPv4 address
// alone and retried it for ever. When neither answers, the error says what
// each address did.
func TestClientTriesEachServerAddress(t *testing.T) {
	h := newNetnsHost(t)
	outside := h.link("eth0", 'a')
	v4 := func(host int) string { return fmt.Sprintf("198.18.%d.%d", h.n, host) }
	v6 := func(host int) string { return fmt.Sprintf("fd00:0:%d::%d", h.n, host) }
	h.run("addr", "add", v4(1)+"/24", "dev", outside)
	h.run("addr", "add", v6(1)+"/64", "dev", outside, "nodad")
	h.run("-n", h.ns, "addr", "add", v4(2)+"/24", "dev", "eth0")
	h.run("-n", h.ns, "addr", "add", v6(2)+"/64", "dev", "eth0", "nodad")
	h.hosts(fmt.Sprintf("127.0.0.1 localhost\n%s quicport-server\n%s quicport-server\n", v4(1), v6(1)))

	cr := credentials(t)[0] // a PSK
	srv := testutil.StartServer(t, server.Config{Auth: cr.server, Listen: "[" + v6(1) + "]:0"})
	name := "quicport-server:" + testutil.Port(t, srv.AddrString())
	var echo string
	h.inside(func() { echo = testutil.EchoServer(t) })

	connect := func(t *testing.T) string {
		t.Helper()
		port := testutil.Itoa(testutil.FreePort(t))
		c := h.startClient(t, cr, "-s", name, "-r", port, "-l", echo)
		c.WaitLog("forward established", 1, 30*time.Second)
		if err := testutil.EchoCheck("127.0.0.1:"+port, 1<<20, 31); err != nil {
			t.Fatalf("through the tunnel: %v", err)
		}
		out := c.Output()
		if strings.Contains(out, "reconnecting") {
			t.Errorf("the client needed more than one attempt:\n%s", out)
		}
		c.KillAll()
		return out
	}
	t.Run("IPv4 port unreachable", func(t *testing.T) {
		out := connect(t)
		if !strings.Contains(out, "trying its next one") || !strings.Contains(out, "nothing listens on that UDP port") {
			t.Errorf("want the client to try the IPv4 address first and move on at its ICMP error:\n%s", out)
		}
	})
	t.Run("neither answers", func(t *testing.T) {
		closed := freeUDPPort(t)
		c := h.startClient(t, cr, "-s", "quicport-server:"+closed, "-r", testutil.Itoa(testutil.FreePort(t)), "-l", echo)
		line := c.WaitLog("tunnel down; reconnecting", 1, 30*time.Second)
		msg, _ := line["err"].(string)
		for _, want := range []string{"none of the server's 2 addresses answered", v4(1) + ":" + closed, "[" + v6(1) + "]:" + closed, "nothing listens on that UDP port"} {
			if !strings.Contains(msg, want) {
				t.Errorf("client's error %q lacks %q", msg, want)
			}
		}
		c.KillAll()
	})
	t.Run("no IPv4 route", func(t *testing.T) {
		h.run("-n", h.ns, "addr", "del", v4(2)+"/24", "dev", "eth0")
		if out := connect(t); strings.Contains(out, "trying its next one") {
			t.Errorf("want the client to start with the address it has a route to:\n%s", out)
		}
	})
}
