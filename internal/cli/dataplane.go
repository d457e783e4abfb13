package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/dataplane"
	"github.com/quicport/quicport/internal/procs"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/tlsid"
)

// launched is what a data plane started by a control plane inherits: its
// UDP socket (fd 3), its control channel (fd 4) and the launch message.
type launched struct {
	msg      dataplane.Launch
	conn     *net.UDPConn
	control  net.Conn
	steering []*os.File
}

func (a *app) dataPlaneCommand() *cobra.Command {
	var (
		listen       string
		supervised   bool
		drainTimeout = dataplane.DefaultDrainTimeout
		qf           quicFlags
	)
	cmd := &cobra.Command{
		Use:   "data-plane",
		Short: "Run a data plane: terminate QUIC, authenticate, relay (configured by QUICPORT_DP_* variables)",
		Long: `Run one data plane: the part of the server that terminates QUIC, authenticates
clients and relays their forwards. quicport server starts and supervises its
data planes itself; data-plane runs one standalone, configured by the
environment so no secret is in argv:

  QUICPORT_DP_AUTH_TYPE       psk or x25519
  QUICPORT_DP_PSK             the pre-shared key (psk)
  QUICPORT_DP_SERVER_PRIVKEY  the server's X25519 private key, base64 (x25519)
  QUICPORT_DP_CLIENT_PUBKEYS  authorized client public keys, comma separated (x25519)

While it runs, $XDG_STATE_HOME/quicport/dataplanes/dp-<pid>.state (default
~/.local/state) holds its state, connections and bytes; quicport ctl status
shows them, and quicport ctl drain --pid drains it. SIGINT or SIGTERM closes
every session (clients are told, and reconnect).`,
		Example: `  QUICPORT_DP_AUTH_TYPE=psk QUICPORT_DP_PSK="$(cat psk)" quicport data-plane --listen 0.0.0.0:39000`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if supervised {
				return a.supervisedDataPlane(cmd.Context())
			}
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
			stateDir, runDir, err := a.stateDirs()
			if err != nil {
				return err
			}
			cfg := server.Config{Listen: listen, Certificate: cert, Auth: policy, Logger: log}
			qf.applyTo(&cfg)
			return a.runDataPlane(cmd.Context(), cfg,
				dataplane.Options{RuntimeDir: runDir, StateDir: stateDir, DrainTimeout: drainTimeout, Log: log},
				append([]any{"auth", policy.Method().String(), "cert_sha256", tlsid.Fingerprint(cert.Certificate[0])}, qf.attrs()...))
		},
	}
	fs := cmd.Flags()
	fs.StringVarP(&listen, "listen", "l", server.DefaultListen, "UDP address to accept QUIC connections on")
	fs.Var(seconds{&drainTimeout}, "drain-timeout", "seconds a draining data plane waits for its connections to end before closing them")
	fs.BoolVar(&supervised, "supervised", false, "run as a data plane of quicport server (inherits its socket and control channel)")
	_ = fs.MarkHidden("supervised")
	qf.register(cmd)
	return cmd
}

// supervisedDataPlane reads the launch message from the inherited control
// channel and runs the server command line it carries as a data plane.
func (a *app) supervisedDataPlane(ctx context.Context) error {
	// Only sockets are taken: anything else at fd 3 or 4 is not ours to
	// close (the Go runtime's poller, say, when run by hand).
	for _, fd := range []int{3, 4} {
		if link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err != nil || !strings.HasPrefix(link, "socket:") {
			return errors.New("data-plane --supervised is started by quicport server, which passes its UDP socket (fd 3) and a control channel (fd 4); to run a data plane by hand, leave out --supervised")
		}
	}
	ctlFile, sockFile := os.NewFile(4, "control"), os.NewFile(3, "socket")
	ctl, err := net.FileConn(ctlFile)
	ctlFile.Close()
	if err != nil {
		return fmt.Errorf("control channel: %w", err)
	}
	pc, err := net.FilePacketConn(sockFile)
	sockFile.Close()
	if err != nil {
		return fmt.Errorf("inherited socket: %w", err)
	}
	msg, err := dataplane.ReadLaunch(ctl)
	if err != nil {
		return err
	}
	steering := inheritedSteering()
	// The control plane decides when a data plane stops; a signal to the
	// process group must not stop this one behind its back. SIGTERM sent
	// to this process alone still shuts it down.
	signal.Ignore(syscall.SIGINT)
	b := &app{args: msg.Args, ctx: ctx, stdio: a.stdio, getenv: a.getenv,
		launch: &launched{msg: msg, conn: pc.(*net.UDPConn), control: ctl, steering: steering}}
	if code := b.run(msg.Args); code != exitOK {
		return fmt.Errorf("data plane exited with status %d", code)
	}
	return nil
}

// inheritedSteering returns fds 5, 6 and 7 when the control plane passed its
// steering program and maps there. A control plane without BPF passes
// nothing, and those numbers then hold whatever this process opened itself
// (the Go runtime's poller, the control channel), so they are taken only
// when they are a BPF program and two BPF maps.
func inheritedSteering() []*os.File {
	for i, kind := range []string{"bpf-prog", "bpf-map", "bpf-map"} {
		if link, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", 5+i)); err != nil || link != "anon_inode:"+kind {
			return nil
		}
	}
	var steering []*os.File
	for fd := 5; fd <= 7; fd++ {
		unix.CloseOnExec(fd)
		steering = append(steering, os.NewFile(uintptr(fd), "steering"))
	}
	return steering
}

// runDataPlane runs one data plane until it is shut down or has drained.
func (a *app) runDataPlane(ctx context.Context, cfg server.Config, opt dataplane.Options, attrs []any) error {
	log := opt.Log.With("dp", os.Getpid())
	cfg.Logger = log
	opt.Server, opt.Log = cfg, log
	procs.Adapt(ctx, log)
	opt.OnListening = func(srv *server.Server) {
		log.Info("quicport data plane listening", append([]any{"listen", srv.Addr().String(), "pid", os.Getpid()}, attrs...)...)
	}
	err := dataplane.Run(ctx, opt)
	log.Info("quicport data plane stopped")
	return err
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
