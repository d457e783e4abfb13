//go:build linux

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/testutil"
)

// netnsHost is a network namespace: another machine, for tests whose
// client must change networks or lack one. It is deleted, with the links
// in it, when the test ends.
type netnsHost struct {
	t      *testing.T
	ip, ns string
	n      int // picks the host's subnets: 198.18.n.0/24 and so on
}

func newNetnsHost(t *testing.T) *netnsHost {
	t.Helper()
	ip := need(t, "ip", "iproute2")
	needRoot(t, "network namespaces")
	h := &netnsHost{t: t, ip: ip, ns: fmt.Sprintf("qptest%d", os.Getpid()),
		n: os.Getpid()%200 + 1} // not bench/run's 198.18.213 and .214
	h.run("netns", "add", h.ns)
	t.Cleanup(func() {
		// Deleting the namespace deletes the links in it and their peers.
		if out, err := testutil.Command(t, 20*time.Second, ip, "netns", "del", h.ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", h.ns, err, out)
		}
		os.RemoveAll(filepath.Join("/etc/netns", h.ns))
	})
	h.run("-n", h.ns, "link", "set", "lo", "up")
	return h
}

// link joins the namespace to this one by a veth pair: inside is its name
// in the namespace; the name outside ends in suffix.
func (h *netnsHost) link(inside string, suffix byte) (outside string) {
	h.t.Helper()
	outside = fmt.Sprintf("qpt%d%c", os.Getpid(), suffix)
	h.run("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", h.ns)
	h.run("link", "set", outside, "up")
	h.run("-n", h.ns, "link", "set", inside, "up")
	return outside
}

// hosts gives the namespace's programs an /etc/hosts of their own (ip
// netns exec mounts /etc/netns/NAME/hosts over it).
func (h *netnsHost) hosts(content string) {
	h.t.Helper()
	dir := filepath.Join("/etc/netns", h.ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(content), 0o644); err != nil {
		h.t.Fatal(err)
	}
}

func (h *netnsHost) run(args ...string) {
	h.t.Helper()
	if out, err := testutil.Command(h.t, 20*time.Second, h.ip, args...).CombinedOutput(); err != nil {
		h.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// wrap returns an executable that runs bin inside the namespace.
func (h *netnsHost) wrap(bin string) string {
	h.t.Helper()
	path := filepath.Join(h.t.TempDir(), "in-netns")
	script := fmt.Sprintf("#!/bin/sh\nexec %s netns exec %s %s \"$@\"\n", h.ip, h.ns, bin)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// inside runs f with the calling thread in the namespace, so the sockets f
// opens belong to it (and stay there, whichever thread serves them later).
func (h *netnsHost) inside(f func()) {
	h.t.Helper()
	here, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		h.t.Fatal(err)
	}
	defer here.Close()
	there, err := os.Open("/run/netns/" + h.ns)
	if err != nil {
		h.t.Fatal(err)
	}
	defer there.Close()
	runtime.LockOSThread()
	if err := unix.Setns(int(there.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		h.t.Fatalf("setns %s: %v", h.ns, err)
	}
	f()
	if err := unix.Setns(int(here.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked and ends with this goroutine.
		h.t.Fatalf("setns back: %v", err)
	}
	runtime.UnlockOSThread()
}

// startClient runs quicport client inside the namespace with a fresh
// configuration and the PSK of cr, for test t.
func (h *netnsHost) startClient(t *testing.T, cr creds, args ...string) *testutil.Process {
	t.Helper()
	dir := t.TempDir()
	return testutil.StartProcess(t, h.wrap(quicportBin),
		[]string{"XDG_CONFIG_HOME=" + dir + "/config", "XDG_DATA_HOME=" + dir + "/data", "QUICPORT_PSK=" + string(cr.client.PSK)},
		append([]string{"client", "--accept-new-host"}, args...)...)
}
