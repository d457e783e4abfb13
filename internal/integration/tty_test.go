package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tlsid"
)

// runOnTerminal runs quicport with a pseudo-terminal as stdin (util-linux
// script), typing answer, until it exits or timeout passes.
func runOnTerminal(t *testing.T, env []string, answer string, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	scriptBin := need(t, "script", "util-linux")
	quoted := make([]string, 0, len(args)+1)
	for _, a := range append([]string{quicportBin}, args...) {
		quoted = append(quoted, "'"+strings.ReplaceAll(a, "'", `'\''`)+"'")
	}
	cmd := exec.Command(scriptBin, "-qefc", "timeout "+fmt.Sprint(int(timeout.Seconds()))+" "+strings.Join(quoted, " "), "/dev/null")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(answer)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// On a terminal an unknown server's fingerprint is shown and asked about;
// "y" records it, "n" refuses.
func TestTOFUPromptOnTerminal(t *testing.T) {
	psk := auth.PSK("terminal-prompt-psk-0123456789")
	dir := t.TempDir()
	pskFile := filepath.Join(dir, "psk")
	os.WriteFile(pskFile, psk, 0o600)
	cert := testutil.Identity(t)
	srv := testutil.StartServer(t, server.Config{Auth: auth.ServerConfig{PSK: psk}, Certificate: cert})
	env := []string{"XDG_DATA_HOME=" + filepath.Join(dir, "data")}
	args := []string{"client", "-s", srv.AddrString(), "--psk-file", pskFile, "--reconnect=false", "-L", "127.0.0.1:0", "-R", testutil.EchoServer(t)}

	out, err := runOnTerminal(t, env, "n\n", 20*time.Second, args...)
	if err == nil || !strings.Contains(out, "Are you sure you want to continue connecting? [y/N]") || !strings.Contains(out, "not confirmed by the user") {
		t.Fatalf("answered n: %v\n%s", err, out)
	}
	if !strings.Contains(out, tlsid.Fingerprint(cert.Certificate[0])) {
		t.Errorf("the prompt did not show the fingerprint:\n%s", out)
	}

	// "y": recorded, and the forward comes up (the run ends at its timeout).
	out, _ = runOnTerminal(t, env, "y\n", 3*time.Second, args...)
	if !strings.Contains(out, "Permanently added") || !strings.Contains(out, "forward established") {
		t.Fatalf("answered y:\n%s", out)
	}
	kh := tlsid.KnownHosts{Path: filepath.Join(dir, "data", "quicport", "known_hosts")}
	if fp, _, found, _ := kh.Lookup(srv.AddrString()); !found || fp != tlsid.Fingerprint(cert.Certificate[0]) {
		t.Fatalf("known_hosts has %q (found %v)", fp, found)
	}
}
