//go:build linux

package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/audit"
	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
	"github.com/quicport/quicport/internal/tlsid"
)

// pki makes certificates with the real openssl CLI.
type pki struct {
	t   *testing.T
	dir string
	bin string
}

func (p pki) run(args ...string) {
	p.t.Helper()
	cmd := testutil.Command(p.t, time.Minute, p.bin, args...)
	cmd.Dir = p.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		p.t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
}

// ca makes a self-signed CA named name.
func (p pki) ca(name string) {
	p.run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		"-keyout", name+".key", "-out", name+".crt", "-days", "30", "-subj", "/CN="+name)
}

// leaf makes a certificate for cn, signed by ca, with the given SAN.
func (p pki) leaf(name, cn, ca, san string) {
	p.run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
		"-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+cn)
	ext := filepath.Join(p.dir, name+".ext")
	os.WriteFile(ext, []byte("subjectAltName="+san+"\nextendedKeyUsage=serverAuth,clientAuth\n"), 0o600)
	p.run("x509", "-req", "-in", name+".csr", "-CA", ca+".crt", "-CAkey", ca+".key", "-CAcreateserial",
		"-out", name+".crt", "-days", "30", "-extfile", ext)
	os.Chmod(filepath.Join(p.dir, name+".key"), 0o600)
}

func (p pki) pair(name string) *tls.Certificate {
	p.t.Helper()
	c, err := tlsid.LoadKeyPair(filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key"))
	if err != nil {
		p.t.Fatal(err)
	}
	return &c
}

func (p pki) pool(name string) *x509.CertPool {
	p.t.Helper()
	pool, err := tlsid.LoadCAPool(filepath.Join(p.dir, name+".crt"))
	if err != nil {
		p.t.Fatal(err)
	}
	return pool
}

// expiredLeaf makes, in Go, a client certificate signed by the openssl CA
// that expired yesterday.
func (p pki) expiredLeaf(ca, cn string) *tls.Certificate {
	p.t.Helper()
	caPair := p.pair(ca)
	caCert, _ := x509.ParseCertificate(caPair.Certificate[0])
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caPair.PrivateKey)
	if err != nil {
		p.t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	c, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		p.t.Fatal(err)
	}
	return &c
}

func TestMutualTLS(t *testing.T) {
	p := pki{t: t, dir: t.TempDir(), bin: need(t, "openssl", "openssl")}
	p.ca("ca")
	p.ca("otherca")
	p.leaf("server", "quicport-server", "ca", "IP:127.0.0.1,DNS:localhost")
	p.leaf("alice", "alice", "ca", "email:alice@example.org")
	p.leaf("mallory", "mallory", "ca", "DNS:mallory.example.org")
	p.leaf("stranger", "alice", "otherca", "email:alice@example.org")

	auditPath := filepath.Join(t.TempDir(), "audit.log")
	auditLog, err := audit.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer auditLog.Close()
	srv := testutil.StartServer(t, server.Config{
		Certificate:  *p.pair("server"),
		ClientCAs:    p.pool("ca"),
		AllowedNames: []string{"alice"},
		Audit:        auditLog,
	})
	echo := testutil.EchoServer(t)
	connect := func(cert *tls.Certificate, serverCA *x509.CertPool) (*testutil.Client, error) {
		return testutil.TryClient(t, client.Config{
			Server: srv.AddrString(), Auth: auth.ClientConfig{MTLS: true}, ClientCert: cert, ServerCA: serverCA,
			Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)},
		})
	}

	// Valid: the server is verified by CA and name, the client by its certificate.
	c, err := connect(p.pair("alice"), p.pool("ca"))
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.EchoCheck(c.Ready.LocalListen.String(), 4<<20, 1); err != nil {
		t.Fatal(err)
	}
	c.Stop()

	refused := []struct {
		name     string
		cert     *tls.Certificate
		serverCA *x509.CertPool
		want     string
	}{
		{"expired", p.expiredLeaf("ca", "alice"), p.pool("ca"), `server rejected authentication: client certificate "CN=alice" is not valid now`},
		{"wrong CA", p.pair("stranger"), p.pool("ca"), "is not signed by the server's --client-ca"},
		{"not in the allowlist", p.pair("mallory"), p.pool("ca"), `client certificate "CN=mallory" is not in the server's --client-allowed-names`},
		{"no certificate", nil, p.pool("ca"), "no client certificate; this server requires one: pass --tls-cert and --tls-key"},
		{"server not trusted", p.pair("alice"), p.pool("otherca"), "certificate is not trusted"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, err := connect(tt.cert, tt.serverCA)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if !client.IsPermanent(err) {
				t.Error("a certificate refusal is not permanent")
			}
		})
	}
	// The four refused certificates are counted as mTLS failures; the
	// client that did not trust the server gave up inside the TLS
	// handshake, before the server had a connection to count.
	waitFor(t, func() bool { return srv.Stats().AuthFailedBy[auth.MethodMTLS] >= 4 }, "the refusals to be counted")
	if st := srv.Stats(); st.AuthSuccess != 1 || st.AuthFailedBy[auth.MethodMTLS] != 4 {
		t.Errorf("AuthSuccess = %d, mTLS failures = %d; want 1 and 4", st.AuthSuccess, st.AuthFailedBy[auth.MethodMTLS])
	}
	b, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"subject":"CN=alice"`, `not in the server's --client-allowed-names`, `is not signed by the server's --client-ca`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("audit log lacks %s", want)
		}
	}
}
