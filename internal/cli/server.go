package cli

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/api"
	"github.com/quicport/quicport/internal/audit"
	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/control"
	"github.com/quicport/quicport/internal/dataplane"
	"github.com/quicport/quicport/internal/permit"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/tlsid"
)

func (a *app) serverCommand() *cobra.Command {
	var (
		listen         string
		creds          credentialFlags
		clientKeys     string
		clientKeysFile string
		qf             quicFlags
		udp            udpFlags
		permitListen   string
		permitOpen     string
		auditLog       string
		tf             tlsFlags
		apiListen      string
		noAPI          bool
		noBPF          bool
		drainTimeout   = dataplane.DefaultDrainTimeout
		adoptTimeout   = dataplane.DefaultAdoptTimeout
		limits         = server.Config{
			MaxUnauthenticated: server.DefaultMaxUnauthenticated,
			AuthFailureBurst:   server.DefaultAuthFailureBurst,
			MaxConnsPerSession: server.DefaultMaxConnsPerSession,
			ConnRate:           server.DefaultConnRate,
			MaxSessionsPerKey:  server.DefaultMaxSessionsPerKey,
		}
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
			// The control plane has said everything about the
			// configuration already; its data planes keep quiet about it.
			startLog := log
			if a.launch != nil {
				startLog = slog.New(slog.DiscardHandler)
			}
			if err := a.fromEnv(cmd.Flags(), map[string]string{
				"client-pubkeys": "QUICPORT_CLIENT_PUBKEYS", "client-pubkeys-file": "QUICPORT_CLIENT_PUBKEYS_FILE",
			}); err != nil {
				return err
			}
			if err := a.credentialEnv(cmd); err != nil {
				return err
			}
			warnArgv(cmd, startLog)
			configDir, err := a.configDir()
			if err != nil {
				return err
			}
			policy, err := serverPolicy(creds, clientKeys, clientKeysFile)
			if err != nil {
				return err
			}
			warnWeakPSK(startLog, policy.PSK)
			clientCAs, err := tf.pool()
			if err != nil {
				return err
			}
			if tf.names != "" && clientCAs == nil {
				return usagef("--client-allowed-names needs --client-ca")
			}
			if policy.PSK == nil && policy.PrivateKey.IsZero() && clientCAs == nil {
				psk, path, created, err := loadOrCreatePSK(configDir)
				if err != nil {
					return fmt.Errorf("auto-generated PSK: %w", err)
				}
				policy.PSK = psk
				if created {
					startLog.Info("no authentication configured: created a random PSK; give clients a copy of this file (--psk-file) or its content (QUICPORT_PSK)", "psk_file", path)
				} else {
					startLog.Info("no authentication configured: using the PSK from file", "psk_file", path)
				}
			}
			for name, v := range map[string]float64{"max-unauthenticated": float64(limits.MaxUnauthenticated), "max-auth-failures": float64(limits.AuthFailureBurst),
				"max-conns-per-session": float64(limits.MaxConnsPerSession), "conn-rate": limits.ConnRate, "udp-max-flows": float64(udp.maxFlows)} {
				if v <= 0 {
					return usagef("--%s must be positive", name)
				}
			}
			cfg := limits
			cfg.Listen, cfg.Auth, cfg.Logger = listen, policy, log
			cfg.UDPIdleTimeout, cfg.UDPMaxFlows = udp.idle, udp.maxFlows
			qf.applyTo(&cfg)
			if permitListen != "" {
				if cfg.PermitListen, err = permit.ParsePorts(permitListen); err != nil {
					return usagef("--permit-listen: %v", err)
				}
			}
			if permitOpen != "" {
				if cfg.PermitOpen, err = permit.ParseDests(permitOpen); err != nil {
					return usagef("--permit-open: %v", err)
				}
			}
			if auditLog != "" {
				if cfg.Audit, err = audit.Open(auditLog); err != nil {
					return err
				}
				defer cfg.Audit.Close()
			}
			cfg.ClientCAs, cfg.AllowedNames = clientCAs, tf.allowedNames()
			own, err := tf.keyPair()
			if err != nil {
				return err
			}
			if own != nil {
				cfg.Certificate = *own
			} else if cfg.Certificate, err = tlsid.LoadOrCreate(configDir); err != nil {
				return fmt.Errorf("server identity: %w", err)
			}
			cert := cfg.Certificate
			method := policy.Method().String()
			if clientCAs != nil && policy.Method() != 0 {
				method = "mtls+" + method
			} else if clientCAs != nil {
				method = "mtls"
			}
			attrs := append([]any{"auth", method, "cert_sha256", tlsid.Fingerprint(cert.Certificate[0])}, qf.attrs()...)
			if policy.Method() == auth.MethodX25519 {
				attrs = append(attrs, "pubkey", policy.PrivateKey.Public().String(), "authorized_keys", len(policy.AuthorizedKeys))
			}
			stateDir, runDir, err := a.stateDirs()
			if err != nil {
				return err
			}
			if a.launch != nil {
				// A data plane this server's control plane started.
				return a.runDataPlane(cmd.Context(), cfg, dataplane.Options{
					Conn: a.launch.conn, Control: a.launch.control, Launch: a.launch.msg, Steering: a.launch.steering,
					RuntimeDir: runDir, StateDir: stateDir, DrainTimeout: drainTimeout, AdoptTimeout: adoptTimeout, Log: log,
				}, attrs)
			}
			return a.runControlPlane(cmd.Context(), control.Config{Listen: listen, Args: a.args, RuntimeDir: runDir, Audit: cfg.Audit, Log: log, NoBPF: noBPF},
				apiListen, noAPI, attrs)
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&listen, "listen", "l", server.DefaultListen, "UDP address to accept QUIC connections on")
	creds.register(cmd, "server")
	fs.StringVar(&clientKeys, "client-pubkeys", "", "authorized client public keys, comma separated (env QUICPORT_CLIENT_PUBKEYS)")
	fs.StringVar(&clientKeysFile, "client-pubkeys-file", "", "file of authorized client public keys, one per line, # comments (env QUICPORT_CLIENT_PUBKEYS_FILE)")
	fs.StringVar(&permitListen, "permit-listen", "", "ports remote forwards may open, e.g. 9000-9100,2222 (default: 1024 and up; ports below 1024 only when listed)")
	fs.StringVar(&permitOpen, "permit-open", "", "destinations local forwards may reach, e.g. 127.0.0.1:22,10.0.0.0/8:5432,db.internal:5432 (default: any)")
	fs.IntVar(&limits.MaxUnauthenticated, "max-unauthenticated", limits.MaxUnauthenticated, "most connections still authenticating; more are refused at once")
	fs.IntVar(&limits.AuthFailureBurst, "max-auth-failures", limits.AuthFailureBurst, "failed authentications per source address before it is refused (one more allowed every 10 s)")
	fs.IntVar(&limits.MaxConnsPerSession, "max-conns-per-session", limits.MaxConnsPerSession, "most concurrent tunneled connections per session")
	fs.Float64Var(&limits.ConnRate, "conn-rate", limits.ConnRate, "most new tunneled connections per second per session (bursts of twice that)")
	fs.Var(byteRate{&limits.BandwidthLimit}, "bandwidth-limit", "bytes per second per session in each direction, e.g. 50M (default: unlimited)")
	fs.IntVar(&limits.MaxSessionsPerKey, "max-sessions-per-key", limits.MaxSessionsPerKey, "most concurrent sessions per X25519 client key; -1 = unlimited")
	tf.registerServer(cmd)
	fs.StringVar(&apiListen, "api-listen", api.DefaultListen, "HTTP API address: /healthcheck, /metrics (Prometheus), /api/v1/status")
	fs.BoolVar(&noAPI, "no-api", false, "do not start the HTTP API")
	fs.BoolVar(&noBPF, "no-bpf", false, "do not steer packets with BPF; a graceful restart then closes sessions (clients reconnect)")
	fs.Var(seconds{&adoptTimeout}, "adopt-timeout", "seconds data planes keep serving after the control plane stopped (SIGTERM), waiting for a new one to adopt them")
	fs.Var(seconds{&drainTimeout}, "drain-timeout", "seconds a draining data plane waits for its connections to end before closing them")
	fs.StringVar(&auditLog, "audit-log", "", "append hash-chained JSON audit records to this file (mode 0600); check it with quicport audit verify")
	qf.register(cmd)
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
