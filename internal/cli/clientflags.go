package cli

import (
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/tlsid"
	"github.com/quicport/quicport/internal/tunnel"
)

// clientFlags are the options `client` and `ssh-proxy` share: the server,
// credentials, server trust, reconnecting and QUIC liveness.
type clientFlags struct {
	server                         string
	creds                          credentialFlags
	serverPubkey, serverPubkeyFile string
	tls                            tlsFlags
	insecure, acceptNew            bool
	reconnect                      bool
	maxAttempts                    int
	reconnectDelay                 time.Duration
	quic                           quicFlags
}

func (f *clientFlags) register(cmd *cobra.Command) {
	f.reconnectDelay = time.Second
	fs := cmd.Flags()
	fs.StringVarP(&f.server, "server", "s", "", "server address, host:port (required)")
	f.creds.register(cmd, "client")
	fs.StringVar(&f.serverPubkey, "server-pubkey", "", "the server's X25519 public key, base64 (env QUICPORT_SERVER_PUBKEY)")
	fs.StringVar(&f.serverPubkeyFile, "server-pubkey-file", "", "file holding the server's X25519 public key (env QUICPORT_SERVER_PUBKEY_FILE)")
	f.tls.registerClient(cmd)
	fs.BoolVar(&f.insecure, "insecure", false, "do not check the server certificate against known_hosts (testing only)")
	fs.BoolVar(&f.acceptNew, "accept-new-host", false, "record an unknown server's certificate without asking (a changed one is still refused)")
	fs.BoolVar(&f.reconnect, "reconnect", true, "reconnect after a lost session or a failed attempt (never after refused credentials or forwards)")
	fs.IntVar(&f.maxAttempts, "reconnect-max-attempts", 0, "give up after this many reconnection attempts in a row; 0 = never")
	fs.Var(seconds{&f.reconnectDelay}, "reconnect-delay", "first wait before reconnecting, in seconds; doubles (with jitter) up to 60, and starts over when the network changes")
	f.quic.register(cmd)
}

// requireServer refuses a missing --server, showing example.
func (f *clientFlags) requireServer(example string) error {
	if f.server == "" {
		return usagef("--server/-s is required: the server's host:port, such as %s", example)
	}
	return nil
}

// quicFlags are the QUIC tuning flags client and server share.
type quicFlags struct {
	keepAlive, idleTimeout time.Duration
	congestion             tunnel.Congestion
	streamWindow           int64
}

func (q *quicFlags) register(cmd *cobra.Command) {
	q.keepAlive, q.idleTimeout, q.congestion, q.streamWindow = tunnel.DefaultKeepAlive, tunnel.DefaultIdleTimeout, tunnel.NewReno, tunnel.StreamWindow
	fs := cmd.Flags()
	fs.Var(seconds{&q.keepAlive}, "quic-keep-alive", "QUIC keep-alive interval, in seconds")
	fs.Var(seconds{&q.idleTimeout}, "quic-idle-timeout", "close the QUIC connection after this many seconds without a packet from the peer")
	fs.Var(&q.congestion, "congestion", "congestion control for what this side sends: newreno (backs off at every lost packet) or bbr (keeps its rate across a long or lossy path, but can crowd out TCP flows at a bottleneck with a small buffer)")
	fs.Var(byteSize{&q.streamWindow, tunnel.MinStreamWindow, tunnel.MaxStreamWindow}, "stream-window",
		"most data one tunneled connection may have in flight towards this side (K, M = KiB, MiB; 64K to 64M); one transfer moves at most this much per round trip, and a session may make this side hold eight of them for readers that stopped")
}

// applyTo sets a server's (or data plane's) QUIC settings from the flags.
func (q *quicFlags) applyTo(cfg *server.Config) {
	cfg.KeepAlive, cfg.IdleTimeout, cfg.Congestion, cfg.StreamWindow = q.keepAlive, q.idleTimeout, q.congestion, q.streamWindow
}

// attrs are the settings a start-up line shows.
func (q *quicFlags) attrs() []any {
	return []any{"congestion", q.congestion.String(), "stream_window", q.streamWindow}
}

// clientConfig validates the shared flags (and their QUICPORT_ variables)
// and returns the client configuration without its forward. example shows
// a --server value in the error when it is missing; prompt asks about
// unknown servers (nil: never ask).
func (a *app) clientConfig(cmd *cobra.Command, f *clientFlags, example string, prompt func(string) (bool, error)) (client.Config, error) {
	var cfg client.Config
	if err := a.fromEnv(cmd.Flags(), map[string]string{
		"server-pubkey": "QUICPORT_SERVER_PUBKEY", "server-pubkey-file": "QUICPORT_SERVER_PUBKEY_FILE",
	}); err != nil {
		return cfg, err
	}
	if err := a.credentialEnv(cmd); err != nil {
		return cfg, err
	}
	if err := f.requireServer(example); err != nil {
		return cfg, err
	}
	if f.maxAttempts < 0 {
		return cfg, usagef("--reconnect-max-attempts %d: want 0 (unlimited) or more", f.maxAttempts)
	}
	clientCert, err := f.tls.keyPair()
	if err != nil {
		return cfg, err
	}
	serverCA, err := f.tls.pool()
	if err != nil {
		return cfg, err
	}
	cc, err := clientCredentials(f.creds, f.serverPubkey, f.serverPubkeyFile, clientCert != nil)
	if err != nil {
		return cfg, err
	}
	dataDir, err := a.dataDir()
	if err != nil {
		return cfg, err
	}
	return client.Config{
		Server:     f.server,
		Auth:       cc,
		Insecure:   f.insecure,
		ClientCert: clientCert,
		ServerCA:   serverCA,
		TOFU: tlsid.TOFU{
			KnownHosts: tlsid.KnownHosts{Path: filepath.Join(dataDir, "known_hosts")},
			AcceptNew:  f.acceptNew,
			Out:        a.stdio.Err,
			Prompt:     prompt,
		},
		Reconnect:      f.reconnect,
		MaxAttempts:    f.maxAttempts,
		ReconnectDelay: f.reconnectDelay,
		KeepAlive:      f.quic.keepAlive,
		IdleTimeout:    f.quic.idleTimeout,
		Congestion:     f.quic.congestion,
		StreamWindow:   f.quic.streamWindow,
	}, nil
}
