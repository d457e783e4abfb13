//go:build linux

package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// needRoot skips the test unless it runs as root, which what needs; under
// CI, which runs as root, it fails instead, so nothing is skipped there.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root; %s need it", what)
		}
		t.Skipf("needs root for %s", what)
	}
}

// dropOnOutput makes the kernel refuse to send percent of the UDP datagrams
// to and from port: an nftables rule at the output hook, where a drop
// fails the sender's sendmsg with EPERM — what a local firewall rule or a
// full conntrack table does. The rule is removed when the test ends. It
// needs root and nft: a failure under CI, a skip elsewhere.
func dropOnOutput(t *testing.T, port string, percent int) {
	t.Helper()
	nft := need(t, "nft", "nftables")
	needRoot(t, "nftables rules")
	table := fmt.Sprintf("quicport_test_%d_%s", os.Getpid(), port)
	share := fmt.Sprintf("numgen random mod 100 < %d ", percent)
	if percent >= 100 {
		share = ""
	}
	script := fmt.Sprintf("table inet %s {\n chain out {\n  type filter hook output priority 0; policy accept;\n  udp dport %s %sdrop\n  udp sport %s %sdrop\n }\n}\n",
		table, port, share, port, share)
	cmd := testutil.Command(t, 20*time.Second, nft, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := testutil.Command(t, 20*time.Second, nft, "delete", "table", "inet", table).CombinedOutput(); err != nil {
			t.Errorf("removing nft table %s: %v: %s", table, err, out)
		}
	})
}

// A datagram the kernel refuses to send is a lost packet, not the end of
// the session: with 3% of the tunnel's datagrams refused in each
// direction, 16 MiB each way arrive intact over the one session, and the
// server counts what it could not send.
func TestSendRefusalsAreLoss(t *testing.T) {
	const size = 16 << 20
	cr := credentials(t)[0]
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			entry, srv := setup(t, m.remote, cr)
			dropOnOutput(t, testutil.Port(t, srv.AddrString()), 3)
			if err := testutil.EchoCheck(entry, size, 7); err != nil {
				t.Fatalf("through a path that refuses 3%% of sends: %v", err)
			}
			st := srv.Stats()
			if st.AuthSuccess != 1 {
				t.Errorf("%d sessions authenticated, want the one: the session was lost and replaced", st.AuthSuccess)
			}
			if st.UDPSendRefused == 0 {
				t.Error("server counted no refused datagrams: the rule did not bite, so this test proved nothing")
			}
		})
	}
}

// When every datagram to the server is refused, the client says so and
// names the likely cause, instead of a bare handshake timeout.
func TestSendRefusedClientError(t *testing.T) {
	cr := credentials(t)[0]
	srv := testutil.StartServer(t, server.Config{Auth: cr.server})
	dropOnOutput(t, testutil.Port(t, srv.AddrString()), 100)
	_, err := testutil.TryClient(t, client.Config{
		Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t), Timeout: time.Second,
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, "127.0.0.1:9")},
	})
	if err == nil || !strings.Contains(err.Error(), "the system refused to send to it") || !strings.Contains(err.Error(), "firewall") {
		t.Fatalf("client error = %v, want one that says the system refused to send and names a firewall rule", err)
	}
}
