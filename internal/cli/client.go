package cli

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/procs"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/tunnel"
)

func (a *app) clientCommand() *cobra.Command {
	var (
		f                       clientFlags
		remoteSource, localDest string
		localSource, remoteDest string
		udp                     udpFlags
		quicConns               int
	)
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Connect to a quicport server and run a port forward",
		Long: `Connect to a quicport server and run one port forward.

Remote forwarding (the server listens, connections reach a service here):
  --remote-source/-r PORT[/tcp|/udp]  with  --local-destination/-l [ADDR:]PORT[/tcp|/udp]
Local forwarding (this client listens, connections reach a service there):
  --local-source/-L [ADDR:]PORT[/tcp|/udp]  with  --remote-destination/-R [ADDR:]PORT[/tcp|/udp]

UDP is carried per source address: each gets its own stream, datagram
boundaries are kept, replies go back to that source, and a flow ends after
--udp-idle-timeout of silence.

A destination without an address means 127.0.0.1 on its side. A local source
without an address listens on 127.0.0.1 only; write 0.0.0.0:PORT to accept
connections from other hosts. Port 0 lets the system (or server) pick.

Authentication, one of:
  X25519 keys  --privkey-file with --server-pubkey (the server's key, pinned)
  PSK          --psk-file (or QUICPORT_PSK)

The server's certificate is checked against $XDG_DATA_HOME/quicport/known_hosts
(default ~/.local/share/quicport/known_hosts), like SSH: on first use a
terminal asks to confirm its fingerprint; without a terminal pass
--accept-new-host, or pin --server-pubkey.`,
		Example: `  quicport client -s vps.example.com:39000 -r 9022 -l 22 --privkey-file client.key --server-pubkey-file server.pub
  quicport client -s vps.example.com:39000 -L 5432 -R db.internal:5432 --psk-file psk`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := a.logger(cmd, a.stdio.Out)
			if err != nil {
				return err
			}
			// What to forward is checked before the credentials: it is the
			// mistake a user most wants to hear about first.
			if err := f.requireServer("vps.example.com:39000"); err != nil {
				return err
			}
			fwd, err := parseForward(remoteSource, localDest, localSource, remoteDest)
			if err != nil {
				return err
			}
			if err := client.CheckSessions(quicConns, fwd); err != nil {
				return usagef("--quic-connections %d: %v", quicConns, err)
			}
			cfg, err := a.clientConfig(cmd, &f, "vps.example.com:39000", a.terminalPrompt())
			if err != nil {
				return err
			}
			cfg.Forward = fwd
			warnArgv(cmd, log)
			warnWeakPSK(log, cfg.Auth.PSK)
			cfg.UDPIdleTimeout, cfg.UDPMaxFlows, cfg.Logger = udp.idle, udp.maxFlows, log
			cfg.Sessions = quicConns
			procs.Adapt(cmd.Context(), log)
			return client.Run(cmd.Context(), cfg)
		},
	}
	f.register(cmd)
	fs := cmd.Flags()
	fs.StringVarP(&remoteSource, "remote-source", "r", "", "remote forwarding: port the server opens, PORT[/tcp|/udp]")
	fs.StringVarP(&localDest, "local-destination", "l", "", "remote forwarding: where connections go on this side, [ADDR:]PORT[/tcp|/udp]")
	fs.StringVarP(&localSource, "local-source", "L", "", "local forwarding: where this client listens, [ADDR:]PORT[/tcp|/udp] (default address 127.0.0.1)")
	fs.StringVarP(&remoteDest, "remote-destination", "R", "", "local forwarding: where connections go on the server's side, [ADDR:]PORT[/tcp|/udp]")
	fs.IntVar(&quicConns, "quic-connections", 1, fmt.Sprintf("TCP forwarding: spread connections over this many QUIC connections to the server (1 to %d), each new one on the QUIC connection carrying the fewest, so that a bulk transfer does not delay the others; a remote forward needs a fixed port and a server of this version; each counts as a session against the server's --max-sessions-per-key", client.MaxSessions))
	udp.register(cmd)
	return cmd
}

// udpFlags tune UDP forwarding on the side that listens.
type udpFlags struct {
	idle     time.Duration
	maxFlows int
}

func (u *udpFlags) register(cmd *cobra.Command) {
	u.idle, u.maxFlows = tunnel.DefaultUDPIdleTimeout, tunnel.DefaultUDPMaxFlows
	cmd.Flags().Var(seconds{&u.idle}, "udp-idle-timeout", "end a UDP flow (one per source address) after this many seconds without a datagram either way")
	cmd.Flags().IntVar(&u.maxFlows, "udp-max-flows", u.maxFlows, "most concurrent UDP flows per session; datagrams from further sources are dropped and logged")
}

// parseForward validates the forwarding flags.
func parseForward(remoteSource, localDest, localSource, remoteDest string) (client.Forward, error) {
	rpf := remoteSource != "" || localDest != ""
	lpf := localSource != "" || remoteDest != ""
	switch {
	case rpf && lpf:
		return client.Forward{}, usagef("remote forwarding (-r/-l) and local forwarding (-L/-R) cannot be combined in one client; run two clients")
	case !rpf && !lpf:
		return client.Forward{}, usagef("nothing to forward: use --remote-source/-r with --local-destination/-l to expose a local service on the server, or --local-source/-L with --remote-destination/-R to reach a service behind the server")
	case remoteSource == "" && localDest != "":
		return client.Forward{}, usagef("--local-destination/-l needs --remote-source/-r: the port the server should open")
	case remoteSource != "" && localDest == "":
		return client.Forward{}, usagef("--remote-source/-r needs --local-destination/-l: where connections go on this side, such as 22 or 192.168.1.100:22")
	case localSource == "" && remoteDest != "":
		return client.Forward{}, usagef("--remote-destination/-R needs --local-source/-L: the local port to listen on")
	case localSource != "" && remoteDest == "":
		return client.Forward{}, usagef("--local-source/-L needs --remote-destination/-R: where connections go on the server's side, such as 22 or 10.0.0.5:5432")
	}
	var f client.Forward
	var err error
	if rpf {
		f.Remote = true
		if f.Source, err = proto.ParseAddr(remoteSource, false, true); err != nil {
			return f, usagef("--remote-source: %v", err)
		}
		if f.Dest, err = proto.ParseAddr(localDest, true, false); err != nil {
			return f, usagef("--local-destination: %v", err)
		}
	} else {
		if f.Source, err = proto.ParseAddr(localSource, true, true); err != nil {
			return f, usagef("--local-source: %v", err)
		}
		if f.Dest, err = proto.ParseAddr(remoteDest, true, false); err != nil {
			return f, usagef("--remote-destination: %v", err)
		}
	}
	if f.Source.Protocol != f.Dest.Protocol {
		return f, usagef("source is %v but destination is %v; both ends of a forward use the same protocol", f.Source.Protocol, f.Dest.Protocol)
	}
	return f, nil
}

// clientCredentials validates the client's authentication flags.
func clientCredentials(creds credentialFlags, serverPubkey, serverPubkeyFile string, haveCert bool) (auth.ClientConfig, error) {
	var cc auth.ClientConfig
	key, haveKey, err := creds.privateKey()
	if err != nil {
		return cc, err
	}
	psk, err := creds.presharedKey()
	if err != nil {
		return cc, err
	}
	havePub := serverPubkey != "" || serverPubkeyFile != ""
	switch {
	case haveKey && psk != nil:
		return cc, usagef("choose one authentication method: --psk or --privkey(-file), not both")
	case psk != nil && havePub:
		return cc, usagef("--server-pubkey is for X25519 authentication; with --psk leave it out, or use --privkey-file instead of --psk")
	case psk != nil:
		cc.PSK = psk
		return cc, nil
	case !haveKey && havePub:
		return cc, usagef("--server-pubkey needs the client's own key: add --privkey-file (create one with `quicport keygen`)")
	case !haveKey && haveCert:
		cc.MTLS = true
		return cc, nil
	case !haveKey:
		return cc, usagef("no credentials: pass --psk-file (or QUICPORT_PSK) for PSK authentication, --privkey-file with --server-pubkey for X25519, or --tls-cert and --tls-key for mTLS")
	case !havePub:
		return cc, usagef("X25519 authentication needs the server's public key, so a man in the middle cannot pose as the server: add --server-pubkey or --server-pubkey-file")
	case serverPubkey != "" && serverPubkeyFile != "":
		return cc, usagef("use only one of --server-pubkey and --server-pubkey-file")
	}
	cc.PrivateKey = key
	if serverPubkeyFile != "" {
		cc.ServerKey, err = readPublicKeyFile(serverPubkeyFile)
		if err != nil {
			return cc, fmt.Errorf("--server-pubkey-file: %w", err)
		}
	} else if cc.ServerKey, err = auth.ParsePublicKey(serverPubkey); err != nil {
		return cc, usagef("--server-pubkey: %v", err)
	}
	return cc, nil
}

// terminalPrompt returns a yes/no prompt on the terminal, or nil when stdin
// is not a terminal.
func (a *app) terminalPrompt() func(string) (bool, error) {
	f, ok := a.stdio.In.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	r := bufio.NewReader(f)
	return func(q string) (bool, error) {
		fmt.Fprint(a.stdio.Err, q)
		line, err := r.ReadString('\n')
		if err != nil && line == "" {
			return false, fmt.Errorf("read answer: %w", err)
		}
		ans := strings.ToLower(strings.TrimSpace(line))
		return ans == "y" || ans == "yes", nil
	}
}
