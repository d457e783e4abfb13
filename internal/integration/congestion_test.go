//go:build linux

package integration

import (
	"net"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/testutil"
)

// --congestion bbr on real processes: the server, its data plane and both
// clients say they run BBR, and 16 MiB each way arrive intact through
// local and remote forwards across a path that drops 2% of the tunnel's
// datagrams in each direction — so BBR's sending, pacing and its
// indifference to loss go through quic-go's retransmissions unharmed.
func TestBBRAcrossALossyPath(t *testing.T) {
	const size = 16 << 20
	dir := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + dir + "/config", "XDG_DATA_HOME=" + dir + "/data", "QUICPORT_PSK=congestion-test-psk"}
	srv := testutil.StartProcess(t, quicportBin, env, "server", "--no-api", "--listen", "127.0.0.1:0", "--congestion", "bbr")
	ready := srv.WaitLog("quicport server listening", 1, 20*time.Second)
	listen := ready["listen"].(string)
	for _, line := range []map[string]any{ready, srv.WaitLog("quicport data plane listening", 1, 20*time.Second)} {
		if line["congestion"] != "bbr" {
			t.Errorf("%q logged congestion=%v, want bbr", line["msg"], line["congestion"])
		}
	}
	_, port, _ := net.SplitHostPort(listen)
	dropOnOutput(t, port, 2)
	echo := testutil.EchoServer(t)

	for _, m := range modes() {
		t.Run(m.name, func(t *testing.T) {
			args := []string{"client", "-s", listen, "--accept-new-host", "--congestion", "bbr"}
			if m.remote {
				args = append(args, "-r", "0", "-l", echo)
			} else {
				args = append(args, "-L", "0", "-R", echo)
			}
			c := testutil.StartProcess(t, quicportBin, env, args...)
			if got := c.WaitLog("authenticated", 1, 20*time.Second)["congestion"]; got != "bbr" {
				t.Errorf("client logged congestion=%v, want bbr", got)
			}
			est := c.WaitLog("forward established", 1, 20*time.Second)
			entry, _ := est["local_listen"].(string)
			if m.remote {
				_, rport, _ := net.SplitHostPort(est["remote_listen"].(string))
				entry = net.JoinHostPort("127.0.0.1", rport)
			}
			if err := testutil.EchoCheck(entry, size, 4); err != nil {
				t.Fatalf("16 MiB each way with BBR across a path that drops 2%%: %v", err)
			}
		})
	}
}
