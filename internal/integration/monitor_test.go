//go:build linux

package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/testutil"
)

// The processes that carry the traffic, a client and a server's data
// plane, run with the Go runtime's monitor thread kept out of deep sleep
// (procs.KeepMonitorAwake, docs/BENCHMARKS.md "The runtime's monitor
// thread"): each runs itself again in place with the setting. A GODEBUG of the user's own is kept, one
// that sets schedtrace is left alone, and the control plane, which
// carries no traffic, keeps its environment as it was.
func TestTrafficProcessesKeepTheMonitorAwake(t *testing.T) {
	const want = "madvdontneed=1,schedtrace=2147483647"
	dir := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + dir + "/config", "XDG_DATA_HOME=" + dir + "/data", "QUICPORT_PSK=monitor-test-psk", "GODEBUG=madvdontneed=1"}
	srv := testutil.StartProcess(t, quicportBin, env, "server", "--no-api", "--listen", "127.0.0.1:0")
	listen := srv.WaitLog("quicport server listening", 1, 20*time.Second)["listen"].(string)
	dp := int(srv.WaitLog("quicport data plane listening", 1, 20*time.Second)["pid"].(float64))
	if got := godebugOf(t, srv.Pid()); got != "madvdontneed=1" {
		t.Errorf("control plane: GODEBUG=%q, want it unchanged, %q", got, "madvdontneed=1")
	}
	if got := godebugOf(t, dp); got != want {
		t.Errorf("data plane: GODEBUG=%q, want %q", got, want)
	}
	checkName(t, "data plane", dp)
	echo := testutil.EchoServer(t)

	for _, tc := range []struct{ name, godebug, want string }{
		{"set", "GODEBUG=madvdontneed=1", want},
		{"user's choice", "GODEBUG=schedtrace=0", "schedtrace=0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testutil.StartProcess(t, quicportBin, append(env, tc.godebug), "client", "-s", listen, "--accept-new-host", "-L", "0", "-R", echo)
			entry := c.WaitLog("forward established", 1, 20*time.Second)["local_listen"].(string)
			// The pid the test started: the client ran itself again in place.
			if got := godebugOf(t, c.Pid()); got != tc.want {
				t.Errorf("client: GODEBUG=%q, want %q", got, tc.want)
			}
			checkName(t, "client", c.Pid())
			if err := testutil.EchoCheck(entry, 1<<20, 7); err != nil {
				t.Fatalf("1 MiB each way: %v", err)
			}
		})
	}
}

// checkName checks that process pid still has the binary's name (what ps,
// top and pgrep show), not "exe".
func checkName(t *testing.T, what string, pid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(b)), filepath.Base(quicportBin); got != want {
		t.Errorf("%s: process name %q, want %q", what, got, want)
	}
}

// godebugOf is the GODEBUG in the environment of process pid.
func godebugOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("GODEBUG=")); ok {
			return string(v)
		}
	}
	return ""
}
