//go:build linux

package integration

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/testutil"
)

// need returns the path of a required program: missing is a failure under
// CI (which installs it) and a skip elsewhere.
func need(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return filepath.Join(dir, name)
			}
		}
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI; .ci/run installs it (apt-get install %s)", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	}
	return p
}

// sshd starts OpenSSH's sshd on 127.0.0.1 with a throwaway host key that
// accepts the returned user key for the current user. It returns the port
// and the private key path.
func sshd(t *testing.T) (port int, userKey string) {
	t.Helper()
	sshdBin := need(t, "sshd", "openssh-server")
	keygen := need(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	for _, k := range []string{"host", "user"} {
		out, err := testutil.Command(t, time.Minute, keygen, "-q", "-t", "ed25519", "-N", "", "-f", filepath.Join(dir, k)).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, _ := os.ReadFile(filepath.Join(dir, "user.pub"))
	os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600)
	if os.Geteuid() == 0 {
		os.MkdirAll("/run/sshd", 0o755) // privilege separation directory
	}
	port = testutil.FreePort(t)
	config := fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
`, port, filepath.Join(dir, "host"), filepath.Join(dir, "sshd.pid"), filepath.Join(dir, "authorized_keys"))
	cfgPath := filepath.Join(dir, "sshd_config")
	os.WriteFile(cfgPath, []byte(config), 0o600)
	cmd := exec.Command(sshdBin, "-D", "-e", "-f", cfgPath)
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd stderr:\n%s", errb.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not listen: %s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return port, filepath.Join(dir, "user")
}

func randomFile(t *testing.T, path string, size int64) [32]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8([32]byte{7}), size)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// Real ssh, scp and sftp through `quicport ssh-proxy` to a real sshd behind
// a real quicport server.
func TestSSHProxyWithOpenSSH(t *testing.T) {
	sshBin := need(t, "ssh", "openssh-client")
	scpBin := need(t, "scp", "openssh-client")
	sftpBin := need(t, "sftp", "openssh-client")
	sshPort, userKey := sshd(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	psk := filepath.Join(dir, "psk")
	os.WriteFile(psk, []byte("ssh-proxy-test-psk-0123456789\n"), 0o600)
	env := []string{"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "XDG_DATA_HOME=" + filepath.Join(dir, "data")}
	srv := testutil.StartProcess(t, quicportBin, env, "server", "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--psk-file", psk)
	listen := srv.WaitLog("quicport server listening", 1, 20*time.Second)["listen"].(string)

	proxy := fmt.Sprintf("%s ssh-proxy --server %s --psk-file %s --accept-new-host --remote-destination %%p", quicportBin, listen, psk)
	common := []string{
		"-o", "ProxyCommand=" + proxy,
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-i", userKey,
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := testutil.Command(t, 3*time.Minute, name, args...)
		cmd.Env = append(os.Environ(), env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s%s", filepath.Base(name), args, err, out, stderr.String())
		}
		return string(out)
	}

	// A command.
	out := run(sshBin, append(common, "-p", fmt.Sprint(sshPort), me.Username+"@127.0.0.1", "echo hello through quicport")...)
	if strings.TrimSpace(out) != "hello through quicport" {
		t.Fatalf("ssh printed %q", out)
	}

	// 32 MiB up with scp, down with sftp, bytes checked.
	src := filepath.Join(dir, "payload")
	want := randomFile(t, src, 32<<20)
	remote := filepath.Join(dir, "uploaded")
	run(scpBin, append(common, "-P", fmt.Sprint(sshPort), src, me.Username+"@127.0.0.1:"+remote)...)
	if got := fileSum(t, remote); got != want {
		t.Fatal("scp: sha256 of the uploaded file differs")
	}
	back := filepath.Join(dir, "downloaded")
	batch := filepath.Join(dir, "batch")
	os.WriteFile(batch, []byte("get "+remote+" "+back+"\n"), 0o600)
	run(sftpBin, append(common, "-P", fmt.Sprint(sshPort), "-b", batch, me.Username+"@127.0.0.1")...)
	if got := fileSum(t, back); got != want {
		t.Fatal("sftp: sha256 of the downloaded file differs")
	}
}

// ssh-proxy exits 0 after stdin closes and the far side finishes, and
// non-zero when the tunnel dies.
func TestSSHProxyExitCodes(t *testing.T) {
	dir := t.TempDir()
	psk := filepath.Join(dir, "psk")
	os.WriteFile(psk, []byte("exit-code-test-psk\n"), 0o600)
	env := []string{"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "XDG_DATA_HOME=" + filepath.Join(dir, "data")}
	srv := testutil.StartProcess(t, quicportBin, env, "server", "--api-listen", "127.0.0.1:0", "--listen", "127.0.0.1:0", "--psk-file", psk)
	listen := srv.WaitLog("quicport server listening", 1, 20*time.Second)["listen"].(string)
	echo := testutil.EchoServer(t)

	// stdin closes: the echo server sees EOF, echoes everything, and the
	// proxy exits 0 with the bytes on stdout.
	cmd := testutil.Command(t, 2*time.Minute, quicportBin, "ssh-proxy", "--server", listen, "--psk-file", psk, "--accept-new-host", "-R", echo)
	cmd.Env = append(os.Environ(), env...)
	payload := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	cmd.Stdin = strings.NewReader(payload)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ssh-proxy: %v\n%s", err, stderr.String())
	}
	if stdout.String() != payload {
		t.Fatalf("stdout has %d bytes, want the %d sent", stdout.Len(), len(payload))
	}
	if strings.Contains(stdout.String(), "level") {
		t.Fatal("a log line reached stdout")
	}

	// The tunnel dies (server killed) while stdin is open: exit non-zero.
	cmd = testutil.Command(t, 2*time.Minute, quicportBin, "ssh-proxy", "--server", listen, "--psk-file", psk, "-R", echo, "--quic-idle-timeout", "2")
	cmd.Env = append(os.Environ(), env...)
	stdinW, err := cmd.StdinPipe() // an OS pipe: Wait does not wait on a copy
	if err != nil {
		t.Fatal(err)
	}
	defer stdinW.Close()
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdinW.Write([]byte("ping"))
	time.Sleep(500 * time.Millisecond)
	srv.KillAll() // the control plane and its data plane
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("ssh-proxy exited 0 after the tunnel died\n%s", stderr.String())
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("ssh-proxy did not exit after the server died\n%s", stderr.String())
	}
}
