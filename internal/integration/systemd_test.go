package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/testutil"
)

// contrib/systemd/quicport.service is a unit systemd accepts: systemd's
// own verifier checks it, with ExecStart pointing at the built binary.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze := need(t, "systemd-analyze", "systemd")
	unit, err := os.ReadFile(filepath.Join("..", "..", "contrib", "systemd", "quicport.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "KillMode=process", "ExecReload=/bin/kill -HUP $MAINPID", "EnvironmentFile=", "CAP_BPF", "RuntimeDirectoryPreserve=yes"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	if strings.Contains(string(unit), "--psk ") || strings.Contains(string(unit), "--privkey ") {
		t.Error("the unit puts a secret on the command line")
	}
	path := filepath.Join(t.TempDir(), "quicport.service")
	os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/local/bin/quicport", quicportBin)), 0o644)
	out, err := testutil.Command(t, time.Minute, analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
