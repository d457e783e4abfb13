package cli

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/procs"
	"github.com/quicport/quicport/internal/proto"
)

func (a *app) sshProxyCommand() *cobra.Command {
	var (
		f          clientFlags
		remoteDest string
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
			// stdin is the SSH byte stream: never prompt on it.
			cfg, err := a.clientConfig(cmd, &f, "%h:39000", nil)
			if err != nil {
				return err
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
			warnArgv(cmd, log)
			warnWeakPSK(log, cfg.Auth.PSK)
			cfg.Forward = client.Forward{Dest: dest, Stdio: stdioConn{in: pollable(a.stdio.In), out: a.stdio.Out}}
			cfg.Logger = log
			procs.Adapt(cmd.Context(), log)
			return client.Run(cmd.Context(), cfg)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&remoteDest, "remote-destination", "R", "", "destination behind the server, [ADDR:]PORT (required)")
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
