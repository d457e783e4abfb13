package cli

import (
	"crypto/tls"
	"crypto/x509"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/tlsid"
)

// tlsFlags are the certificate options: the own certificate (server
// identity or client certificate for mTLS) and the CA to verify the peer.
type tlsFlags struct {
	cert, key string
	ca        string // --client-ca (server) or --server-ca (client)
	names     string // --client-allowed-names (server)
}

func (t *tlsFlags) registerServer(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&t.cert, "tls-cert", "", "PEM certificate (chain) to present instead of the self-signed identity")
	fs.StringVar(&t.key, "tls-key", "", "PEM private key of --tls-cert, mode 0600")
	fs.StringVar(&t.ca, "client-ca", "", "PEM CA certificates: clients must present a certificate that chains to one (mTLS)")
	fs.StringVar(&t.names, "client-allowed-names", "", "with --client-ca: comma-separated certificate names (CN, DNS, email or URI SAN) allowed to connect")
}

func (t *tlsFlags) registerClient(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&t.cert, "tls-cert", "", "PEM client certificate to present (mTLS)")
	fs.StringVar(&t.key, "tls-key", "", "PEM private key of --tls-cert, mode 0600")
	fs.StringVar(&t.ca, "server-ca", "", "PEM CA certificates: verify the server's certificate and name against them instead of known_hosts")
}

// keyPair loads --tls-cert and --tls-key, or returns nil when neither is set.
func (t *tlsFlags) keyPair() (*tls.Certificate, error) {
	switch {
	case t.cert == "" && t.key == "":
		return nil, nil
	case t.cert == "" || t.key == "":
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	c, err := tlsid.LoadKeyPair(t.cert, t.key)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// pool loads the CA flag, or returns nil when it is not set.
func (t *tlsFlags) pool() (*x509.CertPool, error) {
	if t.ca == "" {
		return nil, nil
	}
	return tlsid.LoadCAPool(t.ca)
}

func (t *tlsFlags) allowedNames() []string {
	var out []string
	for _, n := range strings.Split(t.names, ",") {
		if n = strings.TrimSpace(n); n != "" {
			out = append(out, n)
		}
	}
	return out
}
