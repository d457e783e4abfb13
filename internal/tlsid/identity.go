// Package tlsid owns the TLS identities of quicport: the server's persisted
// self-signed certificate, certificate fingerprints, and the client's
// trust-on-first-use known_hosts file.
//
// It decides nothing about application authentication; it only answers
// "is this the certificate we saw before?".
package tlsid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/quicport/quicport/internal/atomicfile"
)

// ALPN is quicport's application protocol. It differs from the Rust
// implementation's because the authentication handshake (bound to the TLS
// session) is not wire-compatible with it.
const ALPN = "quicport-tlsbound/1"

// File names of the server identity inside the config directory.
const (
	CertFile = "server.crt"
	KeyFile  = "server.key"
)

// LoadOrCreate returns the server certificate stored in dir (server.crt and
// server.key, both DER), creating a new self-signed ECDSA P-256 identity when
// none exists. Creation is atomic and serialised with a file lock, so two
// servers starting at once end up with the same identity.
func LoadOrCreate(dir string) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	unlock, err := atomicfile.Lock(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	defer unlock()

	cert, err := load(certPath, keyPath)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return cert, err
	}
	certDER, keyDER, err := generate()
	if err != nil {
		return tls.Certificate{}, err
	}
	// The key first: a certificate without its key would be unusable.
	if err := atomicfile.Write(keyPath, keyDER, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := atomicfile.Write(certPath, certDER, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return load(certPath, keyPath)
}

func load(certPath, keyPath string) (tls.Certificate, error) {
	certDER, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	fi, err := os.Stat(keyPath)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s exists but its key: %w", certPath, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return tls.Certificate{}, fmt.Errorf("server key %s has mode %04o and is readable by other users; run: chmod 600 %s", keyPath, fi.Mode().Perm(), keyPath)
	}
	keyDER, err := os.ReadFile(keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse %s: %w (remove it and %s to create a new identity; clients will see a changed certificate)", certPath, err, keyPath)
	}
	key, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse %s: %w", keyPath, err)
	}
	cert := tls.Certificate{Certificate: [][]byte{certDER}, PrivateKey: key, Leaf: leaf}
	return cert, nil
}

func generate() (certDER, keyDER []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "quicport self-signed"},
		NotBefore:    time.Now().Add(-time.Hour),
		// RFC 5280's "no well-defined expiration": the certificate is pinned,
		// not validated against a CA.
		NotAfter:              time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	return certDER, keyDER, err
}

// Fingerprint returns the SHA-256 fingerprint of a DER certificate as
// colon-separated upper-case hex, the form known_hosts stores.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// ServerTLSConfig returns the TLS configuration of a quicport server. With
// requestClientCert the server asks clients for a certificate (mTLS) but
// leaves checking it to VerifyClient, after the handshake, so a refusal can
// be explained to the client, counted and audited like any other failed
// authentication. TLS 1.3 already proves the client holds the certificate's
// key (CertificateVerify).
func ServerTLSConfig(cert tls.Certificate, requestClientCert bool) *tls.Config {
	c := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{ALPN},
	}
	if requestClientCert {
		c.ClientAuth = tls.RequestClientCert
	}
	return c
}

// VerifyClient checks the client certificate of a TLS session: it must
// chain to clientCAs for client authentication, be valid now, and, when
// allowedNames is not empty, carry one of those names (CN, DNS, email or
// URI SAN). It returns the certificate's subject.
func VerifyClient(cs tls.ConnectionState, clientCAs *x509.CertPool, allowedNames []string) (string, error) {
	if len(cs.PeerCertificates) == 0 {
		return "", errors.New("no client certificate; this server requires one: pass --tls-cert and --tls-key")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	now := time.Now()
	_, err := leaf.Verify(x509.VerifyOptions{Roots: clientCAs, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	var invalid x509.CertificateInvalidError
	var unknown x509.UnknownAuthorityError
	switch {
	case err == nil:
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "", fmt.Errorf("client certificate %q is not valid now (valid %s to %s)", leaf.Subject, leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	case errors.As(err, &unknown):
		return "", fmt.Errorf("client certificate %q is not signed by the server's --client-ca", leaf.Subject)
	default:
		return "", fmt.Errorf("client certificate %q is not accepted: %v", leaf.Subject, err)
	}
	if len(allowedNames) > 0 {
		found := false
		for _, n := range CertificateNames(leaf) {
			found = found || slices.Contains(allowedNames, n)
		}
		if !found {
			return "", fmt.Errorf("client certificate %q is not in the server's --client-allowed-names", leaf.Subject)
		}
	}
	return leaf.Subject.String(), nil
}

// CertificateNames returns a certificate's common name and its DNS, email
// and URI subject alternative names.
func CertificateNames(c *x509.Certificate) []string {
	names := []string{}
	if c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	names = append(names, c.DNSNames...)
	names = append(names, c.EmailAddresses...)
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	return names
}

// ClientTLSConfig returns the TLS configuration of a quicport client.
// Without serverCA it does not validate the certificate chain: the
// certificate is self-signed and pinned by TOFU after the handshake, and
// crypto/tls still verifies that the server holds the certificate's key
// (CertificateVerify). With serverCA the server must present a certificate
// for serverName that chains to it. clientCert, if set, is presented for
// mTLS.
func ClientTLSConfig(serverName string, clientCert *tls.Certificate, serverCA *x509.CertPool) *tls.Config {
	c := &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: serverCA == nil,
		RootCAs:            serverCA,
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{ALPN},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("server sent no certificate")
			}
			return nil
		},
	}
	if clientCert != nil {
		c.Certificates = []tls.Certificate{*clientCert}
	}
	return c
}

// LoadKeyPair loads a PEM certificate (chain) and its PEM private key,
// refusing a key file that other users can read.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	fi, err := os.Stat(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("TLS key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return tls.Certificate{}, fmt.Errorf("TLS key %s has mode %04o and is readable by other users; run: chmod 600 %s", keyFile, fi.Mode().Perm(), keyFile)
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load %s and %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

// LoadCAPool reads PEM CA certificates.
func LoadCAPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}
