package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/dataplane"
)

func (a *app) ctlCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ctl",
		Short: "Inspect and manage a running server's data planes",
		Long: `Inspect and manage the data planes of the quicport server of this user.

ctl finds the server through its runtime directory: $QUICPORT_RUNTIME_DIR,
else $XDG_RUNTIME_DIR/quicport, else $XDG_STATE_HOME/quicport/run (default
~/.local/state/quicport/run). Run it as the server's user, with the same
environment.`,
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
	var force bool
	restart := &cobra.Command{
		Use:   "graceful-restart",
		Short: "Start a new data plane and drain the old ones, dropping nothing",
		Long: `Start a new data plane (from the quicport binary on disk, so this is also how
an upgrade takes effect), send new connections to it, and drain the old data
planes: they keep every established connection until it ends (or until
--drain-timeout), and their clients move their forwards to the new data plane
without a refused connection. Same as SIGHUP to quicport server.

Without BPF socket steering (no CAP_BPF, not Linux) this cannot keep
connections: the old data planes close their sessions and clients reconnect.
ctl says so and does nothing without --force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := a.runtimeDir()
			if err != nil {
				return err
			}
			resp, _, err := dataplane.Call(dataplane.ControlSocket(dir), dataplane.Request{Op: dataplane.OpInfo}, 10*time.Second)
			if dataplane.IsNotRunning(err) {
				return fmt.Errorf("%w with runtime directory %s", errNoControlPlane, dir)
			}
			if err != nil {
				return err
			}
			if resp.Info == nil || !resp.Info.Steered {
				fmt.Fprintln(a.stdio.Err, "quicport: this server runs without BPF socket steering (--no-bpf, or no CAP_BPF and CAP_NET_ADMIN on Linux),")
				fmt.Fprintln(a.stdio.Err, "so a restart cannot keep connections: established tunneled connections will be reset and clients reconnect.")
				if !force {
					return usagef("nothing done; run quicport ctl graceful-restart --force to restart anyway")
				}
			}
			return a.ctlCall(dataplane.Request{Op: dataplane.OpGracefulRestart})
		},
	}
	restart.Flags().BoolVar(&force, "force", false, "restart even when established connections will be reset (no BPF steering)")
	cmd.AddCommand(restart)
	var pid int
	drain := &cobra.Command{
		Use:   "drain --pid PID",
		Short: "Drain one data plane (a new one takes over if it was the active one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pid <= 0 {
				return usagef("ctl drain needs --pid: the data plane's process id, from quicport ctl status")
			}
			dir, err := a.runtimeDir()
			if err != nil {
				return err
			}
			err = a.ctlCall(dataplane.Request{Op: dataplane.OpDrainPID, PID: pid})
			if errors.Is(err, errNoControlPlane) {
				// A standalone data plane: ask it directly.
				resp, _, err := dataplane.Call(dataplane.SocketPath(dir, pid), dataplane.Request{Op: dataplane.OpDrain}, 10*time.Second)
				if err != nil {
					return fmt.Errorf("data plane %d: %w (is it running as this user? quicport ctl status lists them)", pid, err)
				}
				fmt.Fprintln(a.stdio.Out, resp.Message)
				return nil
			}
			return err
		},
	}
	drain.Flags().IntVar(&pid, "pid", 0, "process id of the data plane to drain")
	cmd.AddCommand(drain)
	cmd.AddCommand(&cobra.Command{
		Use:   "shutdown",
		Short: "Stop the server and every data plane (clients are told and reconnect later)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := a.ctlCall(dataplane.Request{Op: dataplane.OpShutdown})
			if !errors.Is(err, errNoControlPlane) {
				return err
			}
			dir, derr := a.runtimeDir()
			if derr != nil {
				return derr
			}
			socks, _ := dataplane.Sockets(dir)
			n := 0
			for _, s := range socks {
				if _, _, err := dataplane.Call(s, dataplane.Request{Op: dataplane.OpShutdown}, 5*time.Second); err == nil {
					n++
				}
			}
			fmt.Fprintf(a.stdio.Out, "no control plane runs; asked %d data planes to shut down\n", n)
			return nil
		},
	})
	return cmd
}

var errNoControlPlane = errors.New("no quicport server (control plane) is running")

func (a *app) runtimeDir() (string, error) {
	_, dir, err := a.stateDirs()
	return dir, err
}

// stateDirs returns the quicport state directory and the runtime directory
// of the IPC sockets (created 0700 if missing).
func (a *app) stateDirs() (state, runtime string, err error) {
	if state, err = a.xdgDir("XDG_STATE_HOME", ".local/state"); err != nil {
		return "", "", err
	}
	runtime, err = dataplane.RuntimeDir(a.getenv, state)
	return state, runtime, err
}

// ctlCall sends req to the control plane and prints its answer.
func (a *app) ctlCall(req dataplane.Request) error {
	dir, err := a.runtimeDir()
	if err != nil {
		return err
	}
	path := dataplane.ControlSocket(dir)
	resp, _, err := dataplane.Call(path, req, 2*time.Minute)
	if dataplane.IsNotRunning(err) {
		return fmt.Errorf("%w with runtime directory %s: %w", errNoControlPlane, dir, err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdio.Out, resp.Message)
	return nil
}
