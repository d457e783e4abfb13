package cli

import (
	"io"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

func (a *app) sshProxyCommand() *cobra.Command {
	var (
		serverAddr, remoteDest         string
		creds                          credentialFlags
		serverPubkey, serverPubkeyFile string
		insecure, acceptNew            bool
		tf                             tlsFlags
		reconnect                      bool
		maxAttempts                    int
		reconnectDelay                 = time.Second
		keepAlive                      = tunnel.DefaultKeepAlive
		idleTimeout                    = tunnel.DefaultIdleTimeout
	)
	cmd := &cobra.Command{
		Use:   "ssh-proxy",
		Short: "Carry stdin/stdout through the tunnel (an SSH ProxyCommand)",
		Long: `Connect stdin and stdout to a destination behind the server, for use as an
SSH ProxyCommand. stdout carries only the tunneled bytes; logs go to stderr.

When stdin ends, the destination sees EOF and ssh-proxy exits 0 once the
destination has finished; if the tunnel fails, it exits 1. Reconnect options
apply to reaching the server; an established byte stream cannot be resumed.
There is no terminal to confirm an unknown server: record it once with
quicport client, pass --accept-new-host, or pin --server-pubkey.`,
		Example: `  ssh -o ProxyCommand='quicport ssh-proxy --server %h:39000 --psk-file ~/.config/quicport/psk --remote-destination %p' user@example.com

  # ~/.ssh/config
  Host myserver
      HostName example.com
      ProxyCommand quicport ssh-proxy --server %h:39000 --privkey-file ~/.quicport/client.key --server-pubkey-file ~/.quicport/server.pub --remote-destination %p`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// ssh shows stderr to its user: only warnings, unless asked.
			if !cmd.Flags().Changed("log-level") && a.getenv("QUICPORT_LOG_LEVEL") == "" {
				a.logLevel = "warn"
			}
			log, err := a.logger(cmd, a.stdio.Err)
			if err != nil {
				return err
			}
			if err := a.fromEnv(cmd.Flags(), map[string]string{
				"server-pubkey": "QUICPORT_SERVER_PUBKEY", "server-pubkey-file": "QUICPORT_SERVER_PUBKEY_FILE",
			}); err != nil {
				return err
			}
			if err := a.credentialEnv(cmd); err != nil {
				return err
			}
			if serverAddr == "" {
				return usagef("--server/-s is required: the server's host:port, such as %%h:39000")
			}
			if remoteDest == "" {
				return usagef("--remote-destination/-R is required: where to connect behind the server, such as 22 or %%p")
			}
			dest, err := proto.ParseAddr(remoteDest, true, false)
			if err != nil {
				return usagef("--remote-destination: %v", err)
			}
			if dest.Protocol != proto.TCP {
				return usagef("--remote-destination: ssh-proxy carries a TCP byte stream; drop /%v", dest.Protocol)
			}
			clientCert, err := tf.keyPair()
			if err != nil {
				return err
			}
			serverCA, err := tf.pool()
			if err != nil {
				return err
			}
			cc, err := clientCredentials(creds, serverPubkey, serverPubkeyFile, clientCert != nil)
			if err != nil {
				return err
			}
			if maxAttempts < 0 {
				return usagef("--reconnect-max-attempts %d: want 0 (unlimited) or more", maxAttempts)
			}
			warnArgv(cmd, log)
			warnWeakPSK(log, cc.PSK)
			dataDir, err := a.dataDir()
			if err != nil {
				return err
			}
			return client.Run(cmd.Context(), client.Config{
				Server:  serverAddr,
				Forward: client.Forward{Dest: dest, Stdio: stdioConn{in: pollable(a.stdio.In), out: a.stdio.Out}},
				Auth:    cc,
				// stdin is the SSH byte stream: never prompt on it.
				TOFU:           tlsid.TOFU{KnownHosts: tlsid.KnownHosts{Path: filepath.Join(dataDir, "known_hosts")}, AcceptNew: acceptNew, Out: a.stdio.Err},
				Insecure:       insecure,
				ClientCert:     clientCert,
				ServerCA:       serverCA,
				Reconnect:      reconnect,
				MaxAttempts:    maxAttempts,
				ReconnectDelay: reconnectDelay,
				KeepAlive:      keepAlive,
				IdleTimeout:    idleTimeout,
				Logger:         log,
			})
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&serverAddr, "server", "s", "", "server address, host:port (required)")
	fs.StringVarP(&remoteDest, "remote-destination", "R", "", "destination behind the server, [ADDR:]PORT (required)")
	creds.register(cmd, "client")
	fs.StringVar(&serverPubkey, "server-pubkey", "", "the server's X25519 public key, base64 (env QUICPORT_SERVER_PUBKEY)")
	fs.StringVar(&serverPubkeyFile, "server-pubkey-file", "", "file holding the server's X25519 public key (env QUICPORT_SERVER_PUBKEY_FILE)")
	tf.registerClient(cmd)
	fs.BoolVar(&insecure, "insecure", false, "do not check the server certificate against known_hosts (testing only)")
	fs.BoolVar(&acceptNew, "accept-new-host", false, "record an unknown server's certificate without asking (a changed one is still refused)")
	addReconnectFlags(cmd, &reconnect, &maxAttempts, &reconnectDelay)
	addQUICFlags(cmd, &keepAlive, &idleTimeout)
	return cmd
}

// stdioConn is stdin and stdout as one half-closable connection.
type stdioConn struct {
	in  io.Reader
	out io.Writer
}

func (s stdioConn) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s stdioConn) Write(p []byte) (int, error) { return s.out.Write(p) }

// CloseWrite closes stdout, so the reader (ssh) sees EOF.
func (s stdioConn) CloseWrite() error {
	if c, ok := s.out.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Close closes both; closing stdin unblocks a pending read.
func (s stdioConn) Close() error {
	if c, ok := s.in.(io.Closer); ok {
		c.Close()
	}
	return s.CloseWrite()
}
