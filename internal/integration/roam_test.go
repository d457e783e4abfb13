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

	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

// roamingHost is a network namespace, the client's machine, joined to
// this one by two links, "wifi" and "wired", each a veth pair with a
// subnet of its own (198.18.N.0/24 and 198.19.N.0/24, from the range set
// aside for benchmarks). The server's address is this side of the wifi
// link; across wired it is reached through a route, as across the
// internet.
type roamingHost struct {
	t          *testing.T
	ip, ns     string
	wifi, wire string // the interface names inside the namespace
	server     string // the server's address, this side of the wifi link
	n          int
}

func newRoamingHost(t *testing.T) *roamingHost {
	t.Helper()
	ip := need(t, "ip", "iproute2")
	needRoot(t, "network namespaces")
	n := os.Getpid()%200 + 1 // not bench/run's 198.18.213 and .214
	h := &roamingHost{t: t, ip: ip, ns: fmt.Sprintf("qproam%d", os.Getpid()), n: n,
		wifi: "wifi0", wire: "wired0", server: fmt.Sprintf("198.18.%d.1", n)}
	h.run("netns", "add", h.ns)
	t.Cleanup(func() {
		// Deleting the namespace deletes the links in it and their peers.
		if out, err := testutil.Command(t, 20*time.Second, ip, "netns", "del", h.ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", h.ns, err, out)
		}
	})
	h.run("-n", h.ns, "link", "set", "lo", "up")
	for i, name := range []string{h.wifi, h.wire} {
		outside := fmt.Sprintf("qpr%d%c", os.Getpid(), 'a'+i)
		h.run("link", "add", outside, "type", "veth", "peer", "name", name, "netns", h.ns)
		h.run("addr", "add", fmt.Sprintf("198.%d.%d.1/24", 18+i, n), "dev", outside)
		h.run("link", "set", outside, "up")
		h.run("-n", h.ns, "addr", "add", fmt.Sprintf("198.%d.%d.2/24", 18+i, n), "dev", name)
		h.run("-n", h.ns, "link", "set", name, "up")
	}
	return h
}

func (h *roamingHost) run(args ...string) {
	h.t.Helper()
	if out, err := testutil.Command(h.t, 20*time.Second, h.ip, args...).CombinedOutput(); err != nil {
		h.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// leaveWifi takes the wifi link down (its routes go with it: for a moment
// the server is unreachable) and then reaches the server across wired.
func (h *roamingHost) leaveWifi() {
	h.t.Helper()
	h.run("-n", h.ns, "link", "set", h.wifi, "down")
	time.Sleep(100 * time.Millisecond)
	h.run("-n", h.ns, "route", "add", h.server+"/32", "via", fmt.Sprintf("198.19.%d.1", h.n), "dev", h.wire)
}

// wrap returns an executable that runs bin inside the namespace.
func (h *roamingHost) wrap(bin string) string {
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
func (h *roamingHost) inside(f func()) {
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

// A client whose machine moves to another network in the middle of a
// transfer (its wifi link goes down; a moment later it reaches the server
// across its wired link, from another address) keeps its session: every
// byte arrives, the client never reconnects, and the server's session list
// shows the new address. The server listens on the wildcard address, as it
// does by default, so its replies follow the client to the new interface.
func TestClientChangesNetworks(t *testing.T) {
	const size = 64 << 20
	h := newRoamingHost(t)
	cr := credentials(t)[0] // a PSK
	srv := testutil.StartServer(t, server.Config{Auth: cr.server, Listen: "0.0.0.0:0"})
	var echo string
	h.inside(func() { echo = testutil.EchoServer(t) })
	port := testutil.Itoa(testutil.FreePort(t))
	dir := t.TempDir()
	c := testutil.StartProcess(t, h.wrap(quicportBin),
		[]string{"XDG_CONFIG_HOME=" + dir + "/config", "XDG_DATA_HOME=" + dir + "/data", "QUICPORT_PSK=" + string(cr.client.PSK)},
		"client", "-s", h.server+":"+testutil.Port(t, srv.AddrString()), "--accept-new-host", "-r", port, "-l", echo)
	c.WaitLog("forward established", 1, 20*time.Second)
	entry := "127.0.0.1:" + port
	before := fmt.Sprintf("198.18.%d.2:", h.n)
	if s := srv.Sessions(); len(s) != 1 || !strings.HasPrefix(s[0].Peer, before) {
		t.Fatalf("server's sessions: %+v, want one from the wifi address %s", s, before)
	}

	done := make(chan error, 1)
	go func() { done <- testutil.EchoCheck(entry, size, 21) }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the transfer ended (%v) before the client changed networks: this test would prove nothing", err)
	default:
	}
	start := time.Now()
	h.leaveWifi()
	if err := <-done; err != nil {
		t.Fatalf("transfer while the client changed networks: %v", err)
	}
	t.Logf("the transfer ended %v after the change began", time.Since(start).Round(time.Millisecond))
	if err := testutil.EchoCheck(entry, 1<<20, 22); err != nil {
		t.Fatalf("after the change: %v", err)
	}
	after := fmt.Sprintf("198.19.%d.2:", h.n)
	if s := srv.Sessions(); len(s) != 1 || !strings.HasPrefix(s[0].Peer, after) {
		t.Errorf("server's sessions after the change: %+v, want the one, from the wired address %s", s, after)
	}
	if st := srv.Stats(); st.AuthSuccess != 1 {
		t.Errorf("%d sessions authenticated, want the one: the client reconnected", st.AuthSuccess)
	}
	if strings.Contains(c.Output(), "reconnecting") {
		t.Errorf("the client reconnected:\n%s", c.Output())
	}
}
