//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/audit"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// rebinder plays a NAT in front of a client on loopback: nftables rewrites
// the client's source port on the way to the server, and the server's
// replies back, so the server sees the client at another port, as it does
// when a home router's mapping changes. As there, the old mapping is gone:
// what the server still sends to the client's own port is dropped.
type rebinder struct {
	t                  *testing.T
	nft, table         string
	client, serverPort string
}

func newRebinder(t *testing.T, clientPort, serverPort string) *rebinder {
	t.Helper()
	nft := need(t, "nft", "nftables")
	needRoot(t, "nftables rules")
	r := &rebinder{t: t, nft: nft, table: fmt.Sprintf("quicport_rebind_%d_%s", os.Getpid(), serverPort), client: clientPort, serverPort: serverPort}
	t.Cleanup(func() {
		if out, err := testutil.Command(t, 20*time.Second, nft, "delete", "table", "inet", r.table).CombinedOutput(); err != nil {
			t.Errorf("removing nft table %s: %v: %s", r.table, err, out)
		}
	})
	return r
}

// to makes the server see the client at port from now on.
func (r *rebinder) to(port int) {
	r.t.Helper()
	script := fmt.Sprintf(`table inet %[1]s {}
flush table inet %[1]s
table inet %[1]s {
 chain out {
  type filter hook output priority 0; policy accept;
  udp sport %[2]s udp dport %[3]s counter udp sport set %[4]d
  udp sport %[3]s udp dport %[4]d counter udp dport set %[2]s accept
  udp sport %[3]s udp dport %[2]s drop
 }
}
`, r.table, r.client, r.serverPort, port)
	cmd := testutil.Command(r.t, 20*time.Second, r.nft, "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("nft: %v: %s", err, out)
	}
}

// counts returns the packets the two rules rewrote: to the server, back.
func (r *rebinder) counts() (out, back int) {
	r.t.Helper()
	b, err := testutil.Command(r.t, 20*time.Second, r.nft, "list", "table", "inet", r.table).CombinedOutput()
	if err != nil {
		r.t.Fatalf("nft list: %v: %s", err, b)
	}
	m := regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(string(b), -1)
	if len(m) != 2 {
		r.t.Fatalf("nft list: want two counters in\n%s", b)
	}
	out, _ = strconv.Atoi(m[0][1])
	back, _ = strconv.Atoi(m[1][1])
	return out, back
}

// A client behind a NAT whose mapping changes (twice, in the middle of a
// transfer) keeps its session: QUIC validates the new path and moves the
// connection to it, every byte arrives, and the client never reconnects.
func TestNATRebindingKeepsTheSession(t *testing.T) {
	const size = 64 << 20
	cr := credentials(t)[0]
	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			echo := testutil.EchoServer(t)
			auditPath := filepath.Join(t.TempDir(), "audit.log")
			auditLog, err := audit.Open(auditPath)
			if err != nil {
				t.Fatal(err)
			}
			defer auditLog.Close()
			srv := testutil.StartServer(t, server.Config{Auth: cr.server, Audit: auditLog})
			var ready atomic.Int32
			cfg := client.Config{
				Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t),
				Forward: client.Forward{Remote: m.remote, Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
				OnReady: func(client.Ready) { ready.Add(1) },
			}
			if m.remote {
				cfg.Forward.Source = mustAddr(t, "0")
			}
			c := testutil.StartClient(t, cfg)
			entry := entryOf(t, c, m.remote)
			sessions := srv.Sessions()
			if len(sessions) != 1 {
				t.Fatalf("%d sessions, want 1", len(sessions))
			}
			r := newRebinder(t, testutil.Port(t, sessions[0].Peer), testutil.Port(t, srv.AddrString()))

			done := make(chan error, 1)
			go func() { done <- testutil.EchoCheck(entry, size, 11) }()
			for _, port := range []int{20001, 20002} {
				time.Sleep(150 * time.Millisecond)
				r.to(port)
			}
			if err := <-done; err != nil {
				t.Fatalf("transfer across two rebindings: %v", err)
			}
			if err := testutil.EchoCheck(entry, 1<<20, 12); err != nil {
				t.Fatalf("after the rebindings: %v", err)
			}
			if out, back := r.counts(); out == 0 || back == 0 {
				t.Fatalf("the NAT rewrote %d packets out and %d back since the last rebinding: it did not bite, so this test proved nothing", out, back)
			}
			if s := srv.Sessions(); len(s) != 1 || s[0].Peer != "127.0.0.1:20002" {
				t.Errorf("server's sessions after the rebindings: %+v, want the one, its peer at the new port 20002", s)
			}
			if n := ready.Load(); n != 1 {
				t.Errorf("the forward was set up %d times, want once: the session did not survive", n)
			}
			if st := srv.Stats(); st.AuthSuccess != 1 {
				t.Errorf("%d sessions authenticated, want the one", st.AuthSuccess)
			}
			// The audit log names the address each event came from: the
			// first forward opened from the client's own port, the last
			// close came from the port of the last rebinding.
			c.Stop()
			waitFor(t, func() bool { return len(srv.Sessions()) == 0 }, "the session to end")
			b, err := os.ReadFile(auditPath)
			if err != nil {
				t.Fatal(err)
			}
			var opens, closes []string
			for _, line := range strings.Split(string(b), "\n") {
				switch {
				case strings.Contains(line, `"event":"forward_open"`):
					opens = append(opens, line)
				case strings.Contains(line, `"event":"forward_close"`):
					closes = append(closes, line)
				}
			}
			if len(opens) == 0 || !strings.Contains(opens[0], `"remote":"`+sessions[0].Peer+`"`) {
				t.Errorf("audit log's forward_open: %q, want the first from the client's own address %s", opens, sessions[0].Peer)
			}
			if len(closes) == 0 || !strings.Contains(closes[len(closes)-1], `"remote":"127.0.0.1:20002"`) {
				t.Errorf("audit log's forward_close: %q, want the last from the client's address after the rebindings, 127.0.0.1:20002", closes)
			}
		})
	}
}
