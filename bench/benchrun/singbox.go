//go:build linux

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// The other QUIC-based tunnel in the comparison is sing-box
// (https://sing-box.sagernet.org, GPLv3; built and run here as a separate
// program, never linked into quicport). It forwards a TCP port when a
// "direct" inbound with override_address/override_port feeds a QUIC
// outbound, and its two QUIC protocols differ where it matters: Hysteria 2
// runs BBR, a delay-based congestion controller, and TUIC runs CUBIC, like
// quic-go. Both run on sing-box's own fork of quic-go. The other QUIC
// tunnels (frp, gost, Hysteria's own app, chisel) cannot be fetched through
// the Go module proxy this harness builds from.
const singBoxModule = "github.com/sagernet/sing-box/cmd/sing-box@v1.14.1"

// singBoxPaths returns the sing-box rows, Hysteria 2 and TUIC, or none
// when sing-box is left out. Their servers listen on ip (ports from port
// up, 10 apart per protocol; 0 picks free ones on loopback) and run with
// prefix, as in singBoxPath.
func (e *env) singBoxPaths(prefix []string, ip string, port int) []*path {
	if e.singBox == "" {
		return nil
	}
	var paths []*path
	for i, protocol := range []string{"hysteria2", "tuic"} {
		p := port
		if p != 0 {
			p += 10 * i
		}
		paths = append(paths, e.singBoxPath("sing-box "+protocol, protocol, prefix, ip, p))
	}
	return paths
}

// findSingBox sets e.singBox: the binary at want, or when want is empty one
// built (once per version, in the user's cache directory) from
// singBoxModule with `go install`.
func (e *env) findSingBox(want string) error {
	if want != "" {
		if _, err := exec.LookPath(want); err != nil {
			return fmt.Errorf("--sing-box %s: %w", want, err)
		}
		e.singBox = want
		return e.singBoxCert()
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return err
	}
	bin := filepath.Join(cache, "quicport-bench", "sing-box-v1.14.1")
	if _, err := os.Stat(filepath.Join(bin, "sing-box")); err != nil {
		progress("building %s (once; a few minutes the first time)", singBoxModule)
		cmd := exec.Command("go", "install", "-tags", "with_quic", singBoxModule)
		cmd.Env = append(os.Environ(), "GOBIN="+bin, "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go install %s: %v\n%s", singBoxModule, err, out)
		}
	}
	e.singBox = filepath.Join(bin, "sing-box")
	return e.singBoxCert()
}

// singBoxCert writes a self-signed certificate for the sing-box servers,
// valid for localhost, loopback and the loss scenario's far address; the
// clients trust exactly it.
func (e *env) singBoxCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(farIP), net.ParseIP(wanFarIP)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	dir := filepath.Join(e.dir, "sing-box")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// singBoxPath tunnels through a sing-box client and server speaking
// protocol; the server listens on ip:port (port 0: a free one on loopback;
// otherwise each setup takes the next port) and runs with prefix (a command
// that runs it in another network namespace).
func (e *env) singBoxPath(name, protocol string, prefix []string, ip string, port int) *path {
	p := &path{name: name}
	p.setup = func(dest string) (string, error) {
		qport := port
		if qport == 0 {
			qport = freePort()
		} else {
			port++
		}
		dir := filepath.Join(e.dir, "sing-box")
		tls := map[string]any{"enabled": true, "alpn": []string{"h3"}}
		user := map[string]any{"password": "benchmark-password-0123456789"}
		if protocol == "tuic" {
			user["uuid"] = "6b9e1c1e-3c1a-4a8e-9a55-2f5f3a1b7c11"
		}
		server := map[string]any{
			"log": map[string]any{"level": "fatal"},
			"inbounds": []any{map[string]any{"type": protocol, "listen": ip, "listen_port": qport, "users": []any{user},
				"tls": merge(tls, map[string]any{"certificate_path": filepath.Join(dir, "cert.pem"), "key_path": filepath.Join(dir, "key.pem")})}},
			"outbounds": []any{map[string]any{"type": "direct"}},
		}
		host, dport, err := net.SplitHostPort(dest)
		if err != nil {
			return "", err
		}
		destPort, _ := strconv.Atoi(dport)
		entryPort := freePort()
		client := map[string]any{
			"log": map[string]any{"level": "fatal"},
			"inbounds": []any{map[string]any{"type": "direct", "network": "tcp", "listen": "127.0.0.1", "listen_port": entryPort,
				"override_address": host, "override_port": destPort}},
			// The first outbound is where everything goes.
			"outbounds": []any{merge(user, map[string]any{"type": protocol, "server": ip, "server_port": qport,
				"tls": merge(tls, map[string]any{"server_name": "localhost", "certificate_path": filepath.Join(dir, "cert.pem")})})},
		}
		for _, side := range []struct {
			cfg    map[string]any
			prefix []string
			file   string
		}{{server, prefix, fmt.Sprintf("%s-server-%s-%d.json", protocol, ip, qport)}, {client, nil, fmt.Sprintf("%s-client-%s-%d.json", protocol, ip, qport)}} {
			b, _ := json.Marshal(side.cfg)
			file := filepath.Join(dir, side.file)
			if err := os.WriteFile(file, b, 0o600); err != nil {
				return "", err
			}
			argv := slices.Concat(side.prefix, []string{e.singBox, "run", "-c", file})
			cmd := helper(argv[0], argv[1:]...)
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				return "", err
			}
			p.procs = append(p.procs, cmd)
			time.Sleep(200 * time.Millisecond) // the server's UDP socket, which waitTCP cannot see
		}
		entry := net.JoinHostPort("127.0.0.1", strconv.Itoa(entryPort))
		return entry, waitTCP(entry)
	}
	return p
}

// merge returns a copy of a with b's keys added.
func merge(a, b map[string]any) map[string]any {
	m := maps.Clone(a)
	maps.Copy(m, b)
	return m
}
