package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/dataplane"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/tlsid"
)

func (a *app) dataPlaneCommand() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "data-plane",
		Short: "Run a data plane: terminate QUIC, authenticate, relay (configured by QUICPORT_DP_* variables)",
		Long: `Run one data plane: the part of the server that terminates QUIC, authenticates
clients and relays their forwards. quicport server runs the same code in one
process; data-plane runs it standalone, configured by the environment so no
secret is in argv:

  QUICPORT_DP_AUTH_TYPE       psk or x25519
  QUICPORT_DP_PSK             the pre-shared key (psk)
  QUICPORT_DP_SERVER_PRIVKEY  the server's X25519 private key, base64 (x25519)
  QUICPORT_DP_CLIENT_PUBKEYS  authorized client public keys, comma separated (x25519)

While it runs, $XDG_STATE_HOME/quicport/dataplanes/dp-<pid>.state (default
~/.local/state) holds its state, connections and bytes; quicport ctl status
shows them.`,
		Example: `  QUICPORT_DP_AUTH_TYPE=psk QUICPORT_DP_PSK="$(cat psk)" quicport data-plane --listen 0.0.0.0:39000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := a.logger(cmd, a.stdio.Out)
			if err != nil {
				return err
			}
			policy, err := a.dataPlanePolicy()
			if err != nil {
				return err
			}
			configDir, err := a.configDir()
			if err != nil {
				return err
			}
			cert, err := tlsid.LoadOrCreate(configDir)
			if err != nil {
				return fmt.Errorf("server identity: %w", err)
			}
			srv, err := server.Listen(server.Config{Listen: listen, Certificate: cert, Auth: policy, Logger: log})
			if err != nil {
				return err
			}
			log.Info("quicport data plane listening", "listen", srv.Addr().String(), "auth", policy.Method().String(),
				"cert_sha256", tlsid.Fingerprint(cert.Certificate[0]), "pid", os.Getpid())
			err = a.serveWithState(cmd.Context(), srv, log)
			log.Info("quicport data plane stopped")
			return err
		},
	}
	cmd.Flags().StringVarP(&listen, "listen", "l", server.DefaultListen, "UDP address to accept QUIC connections on")
	return cmd
}

// dataPlanePolicy reads the QUICPORT_DP_* variables.
func (a *app) dataPlanePolicy() (auth.ServerConfig, error) {
	var p auth.ServerConfig
	switch typ := a.getenv("QUICPORT_DP_AUTH_TYPE"); strings.ToLower(typ) {
	case "psk":
		psk := a.getenv("QUICPORT_DP_PSK")
		if psk == "" {
			return p, usagef("QUICPORT_DP_AUTH_TYPE=psk needs QUICPORT_DP_PSK")
		}
		p.PSK = auth.PSK(psk)
	case "x25519":
		key, err := auth.ParsePrivateKey(a.getenv("QUICPORT_DP_SERVER_PRIVKEY"))
		if err != nil {
			return p, usagef("QUICPORT_DP_SERVER_PRIVKEY: %v", err)
		}
		keys, err := auth.ParseAuthorizedKeys(strings.NewReader(strings.ReplaceAll(a.getenv("QUICPORT_DP_CLIENT_PUBKEYS"), ",", "\n")), "QUICPORT_DP_CLIENT_PUBKEYS")
		if err != nil {
			return p, usagef("%v", err)
		}
		if len(keys) == 0 {
			return p, usagef("QUICPORT_DP_AUTH_TYPE=x25519 needs QUICPORT_DP_CLIENT_PUBKEYS (comma-separated public keys)")
		}
		p.PrivateKey, p.AuthorizedKeys = key, keys
	case "":
		return p, usagef("QUICPORT_DP_AUTH_TYPE is not set: set it to psk (with QUICPORT_DP_PSK) or x25519 (with QUICPORT_DP_SERVER_PRIVKEY and QUICPORT_DP_CLIENT_PUBKEYS)")
	default:
		return p, usagef("QUICPORT_DP_AUTH_TYPE=%q: want psk or x25519", typ)
	}
	return p, nil
}

// serveWithState serves srv until ctx ends while keeping its state file in
// $XDG_STATE_HOME/quicport/dataplanes current.
// A state file that cannot be written is logged, not fatal: serving matters
// more than reporting.
func (a *app) serveWithState(ctx context.Context, srv *server.Server, log *slog.Logger) error {
	stateDir, err := a.xdgDir("XDG_STATE_HOME", ".local/state")
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx) })
	g.Go(func() error {
		err := dataplane.Publish(ctx, dataplane.Dir(stateDir), time.Second, func() dataplane.Status {
			st := srv.Stats()
			state := dataplane.Starting
			if srv.Serving() {
				state = dataplane.Active
			}
			return dataplane.Status{State: state, PID: os.Getpid(), Listen: srv.Addr().String(),
				ActiveConnections: st.ConnectionsActive, BytesSent: st.BytesSent, BytesReceived: st.BytesRecv,
				StartedAt: srv.Started().Unix()}
		})
		if err != nil {
			log.Warn("quicport ctl status will not see this data plane", "err", err)
		}
		return nil
	})
	return g.Wait()
}

func (a *app) ctlCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Inspect running data planes",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show every data plane of this user: state, connections, bytes",
		Long: `Show the data planes whose state files are in $XDG_STATE_HOME/quicport/dataplanes
(default ~/.local/state): every quicport server and quicport data-plane of
this user. A file left by a process that was killed is marked stale.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			stateDir, err := a.xdgDir("XDG_STATE_HOME", ".local/state")
			if err != nil {
				return err
			}
			list, err := dataplane.List(dataplane.Dir(stateDir))
			if err != nil {
				return err
			}
			w := a.stdio.Out
			fmt.Fprintln(w, "Data Planes:")
			fmt.Fprintf(w, "%-10s %-12s %-12s %-15s %s\n", "PID", "State", "Connections", "Bytes Sent", "Bytes Received")
			fmt.Fprintln(w, strings.Repeat("-", 64))
			for _, st := range list {
				state := st.State
				if st.Stale {
					state += " (stale)"
				}
				fmt.Fprintf(w, "%-10d %-12s %-12d %-15d %d\n", st.PID, state, st.ActiveConnections, st.BytesSent, st.BytesReceived)
			}
			if len(list) == 0 {
				fmt.Fprintln(w, "(none running)")
			}
			return nil
		},
	})
	return cmd
}
