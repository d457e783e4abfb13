//go:build linux

package integration

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quicport/quicport/internal/audit"
	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/permit"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

func denied(t *testing.T, err error, rule string) {
	t.Helper()
	var fe *client.ForwardError
	if !errors.As(err, &fe) || fe.Status != proto.StatusPermissionDenied || !strings.Contains(err.Error(), rule) {
		t.Fatalf("error = %v, want permission denied naming %q", err, rule)
	}
	if !client.IsPermanent(err) {
		t.Error("a denied forward is not permanent")
	}
}

func TestPermits(t *testing.T) {
	serverKey, limited, free := testutil.Key(t), testutil.Key(t), testutil.Key(t)
	allowed, other := testutil.FreePort(t), testutil.FreePort(t)
	echo := testutil.EchoServer(t)
	echoPort := testutil.Port(t, echo)
	listenRule, _ := permit.ParsePorts(testutil.Itoa(allowed) + "," + testutil.Itoa(other))
	openRule, _ := permit.ParseDests("127.0.0.1:" + echoPort + ",localhost:" + echoPort)
	auditPath := filepath.Join(t.TempDir(), "audit.log")
	auditLog, err := audit.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer auditLog.Close()
	srv := testutil.StartServer(t, server.Config{
		Auth: auth.ServerConfig{PrivateKey: serverKey, AuthorizedKeys: []auth.AuthorizedKey{
			{Key: limited.Public(), Comment: "limited", PermitListen: testutil.Itoa(allowed), PermitOpen: "127.0.0.1:" + echoPort},
			{Key: free.Public(), Comment: "free"},
		}},
		PermitListen: listenRule, PermitOpen: openRule, Audit: auditLog,
	})
	run := func(key auth.PrivateKey, f client.Forward) (*testutil.Client, error) {
		return testutil.TryClient(t, client.Config{
			Server: srv.AddrString(), TOFU: testutil.KnownHosts(t), Forward: f,
			Auth: auth.ClientConfig{PrivateKey: key, ServerKey: serverKey.Public()},
		})
	}
	rpf := func(port int) client.Forward {
		return client.Forward{Remote: true, Source: mustAddr(t, testutil.Itoa(port)), Dest: mustAddr(t, echo)}
	}
	lpf := func(dest string) client.Forward {
		return client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, dest)}
	}

	// Server-wide and per-key rules both allow: works.
	c, err := run(limited, rpf(allowed))
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.EchoCheck("127.0.0.1:"+testutil.Itoa(allowed), 1<<20, 1); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	// The server allows `other`, the key does not.
	_, err = run(limited, rpf(other))
	denied(t, err, `this client key's permitlisten="`+testutil.Itoa(allowed)+`" option`)
	// Another key without options may.
	c, err = run(free, rpf(other))
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
	// Nobody may leave the server-wide list, nor take a privileged port.
	_, err = run(free, rpf(testutil.FreePort(t)))
	denied(t, err, "the server's --permit-listen")
	_, err = run(free, rpf(80))
	denied(t, err, "the server's --permit-listen")

	// permit-open: an IP rule, a name rule, and what neither allows.
	c, err = run(free, lpf(echo))
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.EchoCheck(c.Ready.LocalListen.String(), 1<<20, 2); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	c, err = run(free, lpf("localhost:"+echoPort))
	if err != nil {
		t.Fatal(err)
	}
	c.Stop()
	_, err = run(free, lpf("127.0.0.1:22"))
	denied(t, err, "connecting to 127.0.0.1:22 is not permitted by the server's --permit-open")
	_, err = run(limited, lpf("localhost:"+echoPort))
	denied(t, err, "this client key's permitopen")

	if got := srv.Stats().ForwardsDenied; got != 5 {
		t.Errorf("ForwardsDenied = %d, want 5", got)
	}

	// Every decision is in the audit log, whose chain holds, and no secret is.
	b, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := audit.Verify(bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"event":"auth_success"`, `"event":"forward_open"`, `"event":"forward_denied"`, `"event":"forward_close"`, limited.Public().String()} {
		if !strings.Contains(string(b), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	for _, secret := range []string{serverKey.Encode(), limited.Encode(), free.Encode()} {
		if strings.Contains(string(b), secret) {
			t.Fatal("a private key is in the audit log")
		}
	}
}

// A remote port belongs to one session at a time.
func TestRemotePortOwnedByOneSession(t *testing.T) {
	cr := credentials(t)[0]
	srv := testutil.StartServer(t, server.Config{Auth: cr.server})
	port := testutil.FreePort(t)
	f := client.Forward{Remote: true, Source: mustAddr(t, testutil.Itoa(port)), Dest: mustAddr(t, testutil.EchoServer(t))}
	testutil.StartClient(t, client.Config{Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t), Forward: f})
	_, err := testutil.TryClient(t, client.Config{Server: srv.AddrString(), Auth: cr.client, TOFU: testutil.KnownHosts(t), Forward: f})
	var fe *client.ForwardError
	if !errors.As(err, &fe) || fe.Status != proto.StatusPortInUse {
		t.Fatalf("second session on the same port: %v, want port in use", err)
	}
}
