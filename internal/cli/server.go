package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

func (a *app) serverCommand() *cobra.Command {
	var (
		listen         string
		creds          credentialFlags
		clientKeys     string
		clientKeysFile string
		keepAlive      = tunnel.DefaultKeepAlive
		idleTimeout    = tunnel.DefaultIdleTimeout
		udp            udpFlags
	)
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Accept quicport clients and serve their forwards",
		Long: `Accept quicport clients over QUIC and serve their port forwards.

Authentication, one of:
  X25519 keys  --privkey-file with --client-pubkeys-file (or --client-pubkeys)
  PSK          --psk-file (or QUICPORT_PSK)
  nothing      a random PSK is created once in $XDG_CONFIG_HOME/quicport/psk
               (default ~/.config/quicport/psk) and reused afterwards.

The server's TLS identity is kept in $XDG_CONFIG_HOME/quicport/server.crt and
server.key, so clients' pinned fingerprints survive restarts.`,
		Example: `  quicport keygen > server.key && chmod 600 server.key
  quicport server --privkey-file server.key --client-pubkeys-file authorized_keys
  QUICPORT_PSK_FILE=/etc/quicport/psk quicport server --listen 0.0.0.0:39000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := a.logger(cmd, a.stdio.Out)
			if err != nil {
				return err
			}
			if err := a.fromEnv(cmd.Flags(), map[string]string{
				"client-pubkeys": "QUICPORT_CLIENT_PUBKEYS", "client-pubkeys-file": "QUICPORT_CLIENT_PUBKEYS_FILE",
			}); err != nil {
				return err
			}
			if err := a.credentialEnv(cmd); err != nil {
				return err
			}
			warnArgv(cmd, log)
			configDir, err := a.configDir()
			if err != nil {
				return err
			}
			policy, err := serverPolicy(creds, clientKeys, clientKeysFile)
			if err != nil {
				return err
			}
			if policy.PSK == nil && policy.PrivateKey.IsZero() {
				psk, path, created, err := loadOrCreatePSK(configDir)
				if err != nil {
					return fmt.Errorf("auto-generated PSK: %w", err)
				}
				policy.PSK = psk
				if created {
					log.Info("no authentication configured: created a random PSK; give clients a copy of this file (--psk-file) or its content (QUICPORT_PSK)", "psk_file", path)
				} else {
					log.Info("no authentication configured: using the PSK from file", "psk_file", path)
				}
			}
			cert, err := tlsid.LoadOrCreate(configDir)
			if err != nil {
				return fmt.Errorf("server identity: %w", err)
			}
			srv, err := server.Listen(server.Config{Listen: listen, Certificate: cert, Auth: policy, KeepAlive: keepAlive, IdleTimeout: idleTimeout,
				UDPIdleTimeout: udp.idle, UDPMaxFlows: udp.maxFlows, Logger: log})
			if err != nil {
				return err
			}
			attrs := []any{"listen", srv.Addr().String(), "auth", policy.Method().String(), "cert_sha256", tlsid.Fingerprint(cert.Certificate[0])}
			if policy.Method() == auth.MethodX25519 {
				attrs = append(attrs, "pubkey", policy.PrivateKey.Public().String(), "authorized_keys", len(policy.AuthorizedKeys))
			}
			log.Info("quicport server listening", attrs...)
			err = srv.Serve(cmd.Context())
			log.Info("quicport server stopped")
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&listen, "listen", "l", server.DefaultListen, "UDP address to accept QUIC connections on")
	creds.register(cmd, "server")
	fs.StringVar(&clientKeys, "client-pubkeys", "", "authorized client public keys, comma separated (env QUICPORT_CLIENT_PUBKEYS)")
	fs.StringVar(&clientKeysFile, "client-pubkeys-file", "", "file of authorized client public keys, one per line, # comments (env QUICPORT_CLIENT_PUBKEYS_FILE)")
	addQUICFlags(cmd, &keepAlive, &idleTimeout)
	udp.register(cmd)
	return cmd
}

// serverPolicy turns the server's flags into an authentication policy. An
// empty policy means "no authentication configured".
func serverPolicy(creds credentialFlags, clientKeys, clientKeysFile string) (auth.ServerConfig, error) {
	var p auth.ServerConfig
	key, haveKey, err := creds.privateKey()
	if err != nil {
		return p, err
	}
	psk, err := creds.presharedKey()
	if err != nil {
		return p, err
	}
	var keys []auth.AuthorizedKey
	if clientKeys != "" {
		ks, err := auth.ParseAuthorizedKeys(strings.NewReader(strings.ReplaceAll(clientKeys, ",", "\n")), "--client-pubkeys")
		if err != nil {
			return p, usagef("%v", err)
		}
		keys = append(keys, ks...)
	}
	if clientKeysFile != "" {
		f, err := os.Open(clientKeysFile)
		if err != nil {
			return p, fmt.Errorf("--client-pubkeys-file: %w", err)
		}
		ks, err := auth.ParseAuthorizedKeys(f, clientKeysFile)
		f.Close()
		if err != nil {
			return p, err
		}
		if len(ks) == 0 {
			return p, fmt.Errorf("--client-pubkeys-file %s holds no keys; add one public key per line (from `quicport pubkey`)", clientKeysFile)
		}
		keys = append(keys, ks...)
	}
	x25519 := len(keys) > 0 || clientKeysFile != "" || clientKeys != ""
	switch {
	case x25519 && psk != nil:
		return p, usagef("choose one authentication method: --psk or --client-pubkeys(-file), not both")
	case x25519 && !haveKey:
		return p, usagef("X25519 authentication (--client-pubkeys) needs the server's own private key, so clients can verify the server: add --privkey-file (create one with `quicport keygen`)")
	case haveKey && !x25519:
		return p, usagef("--privkey is for X25519 authentication and needs the authorized client keys: add --client-pubkeys-file or --client-pubkeys")
	case x25519:
		p.PrivateKey, p.AuthorizedKeys = key, keys
	case psk != nil:
		p.PSK = psk
	}
	return p, nil
}
