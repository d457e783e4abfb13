//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/testutil"
)

// The units in contrib/systemd are units systemd accepts: systemd's own
// verifier checks them, with ExecStart pointing at the built binary, and
// they keep what the docs promise of them.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := need(t, "systemd-analyze", "systemd")
	for _, u := range []struct {
		file, as string // as: the name systemd sees (an instance for a template)
		want     []string
	}{
		{"quicport.service", "quicport.service",
			[]string{"Type=notify", "KillMode=process", "ExecReload=/bin/kill -HUP $MAINPID", "EnvironmentFile=", "CAP_BPF", "RuntimeDirectoryPreserve=yes"}},
		{"quicport-client@.service", "quicport-client@ssh.service",
			[]string{"EnvironmentFile=/etc/quicport/client-%i.env", "quicport client $QUICPORT_CLIENT_ARGS", "Restart=on-failure", "XDG_DATA_HOME=/var/lib/quicport-client/%i"}},
	} {
		t.Run(u.file, func(t *testing.T) {
			unit, err := os.ReadFile(filepath.Join("..", "..", "contrib", "systemd", u.file))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range u.want {
				if !strings.Contains(string(unit), want) {
					t.Errorf("the unit lacks %q", want)
				}
			}
			if strings.Contains(string(unit), "--psk ") || strings.Contains(string(unit), "--privkey ") {
				t.Error("the unit puts a secret on the command line")
			}
			path := filepath.Join(t.TempDir(), u.as)
			os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/quicport", quicportBin)), 0o644)
			out, err := testutil.Command(t, time.Minute, analyze, "verify", path).CombinedOutput()
			if err != nil || len(strings.TrimSpace(string(out))) > 0 {
				t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
			}
		})
	}
}
