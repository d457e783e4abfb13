// Package cli is quicport's command line: one file per subcommand, flags and
// QUICPORT_* environment variables, wired to the packages that do the work.
// Commands take their stdio and environment as arguments so tests can drive
// them; only cmd/quicport calls os.Exit.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Stdio is a command's standard streams.
type Stdio struct {
	In       io.Reader
	Out, Err io.Writer
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks errors in how the command was invoked.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// env is the process environment as a lookup function.
type env func(string) string

// app carries what every subcommand needs.
type app struct {
	args      []string  // the command line, for data planes to parse
	launch    *launched // set in a data plane started by a control plane
	ctx       context.Context
	stdio     Stdio
	getenv    env
	logFormat string
	logLevel  string
	cpuProf   string
}

// Run runs the quicport command line with args (without the program name)
// and returns the process exit code.
func Run(ctx context.Context, args []string, stdio Stdio, getenv func(string) string) int {
	a := &app{args: args, ctx: ctx, stdio: stdio, getenv: getenv}
	return a.run(args)
}

// CarriesTraffic reports whether args (without the program name) run a
// command that carries tunnel traffic for as long as it runs: quicport
// client or data-plane (a server's data planes run that command too).
// cmd/quicport gives those the runtime setting of procs.KeepMonitorAwake.
func CarriesTraffic(args []string) bool {
	a := &app{ctx: context.Background(), stdio: Stdio{In: strings.NewReader(""), Out: io.Discard, Err: io.Discard}, getenv: func(string) string { return "" }}
	cmd, _, err := a.rootCommand().Find(args)
	if err != nil {
		return false
	}
	switch cmd.Name() {
	case "client", "data-plane":
		return true
	}
	return false
}

// run executes args with a's root command and returns the exit code.
func (a *app) run(args []string) int {
	stdio, ctx := a.stdio, a.ctx
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stdio.Err, "quicport: %v\n", err)
	var ue *usageError
	if errors.As(err, &ue) || isFlagError(err) {
		return exitUsage
	}
	return exitError
}

// isFlagError recognises cobra's and pflag's own parse errors, which have no
// type of their own.
func isFlagError(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown flag", "unknown shorthand", "flag needs an argument", "invalid argument", "unknown command", "accepts ", "required flag", "if any flags in the group"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "quicport",
		Short: "Forward TCP and UDP ports over QUIC, authenticated and encrypted",
		Long: `quicport forwards TCP and UDP ports through a QUIC tunnel.

Remote forwarding (-r/-l) exposes a service behind NAT on the server's port;
local forwarding (-L/-R) reaches a service behind the server from a local
port. Clients authenticate with a pre-shared key, WireGuard-style X25519
keys or a TLS client certificate (mTLS), bound to the TLS session so a man
in the middle learns nothing.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&a.logFormat, "log-format", "console", "log format: console or json (env QUICPORT_LOG_FORMAT)")
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", "info", "log level: debug, info, warn or error (env QUICPORT_LOG_LEVEL)")
	root.PersistentFlags().StringVar(&a.cpuProf, "cpuprofile", "", "write a CPU profile to this file until exit (for go tool pprof); a server's data planes write FILE.dp-PID")
	_ = root.PersistentFlags().MarkHidden("cpuprofile")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if a.cpuProf == "" {
			return nil
		}
		path := a.cpuProf
		if a.launch != nil {
			// Where the traffic is; the control plane has the file.
			path = fmt.Sprintf("%s.dp-%d", path, os.Getpid())
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return nil
	}
	root.PersistentPostRun = func(*cobra.Command, []string) {
		if a.cpuProf != "" {
			pprof.StopCPUProfile()
		}
	}
	root.AddCommand(a.serverCommand(), a.clientCommand(), a.sshProxyCommand(), a.dataPlaneCommand(), a.ctlCommand(), a.auditCommand(), a.keygenCommand(), a.pubkeyCommand(), a.versionCommand())
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })
	return root
}

// fromEnv sets each flag that was not given on the command line from its
// environment variable, when that is set. Flags win over the environment.
func (a *app) fromEnv(fs *pflag.FlagSet, pairs map[string]string) error {
	for flag, name := range pairs {
		f := fs.Lookup(flag)
		if f == nil || f.Changed {
			continue
		}
		if v := a.getenv(name); v != "" {
			if err := f.Value.Set(v); err != nil {
				return usagef("%s=%q: %v", name, v, err)
			}
		}
	}
	return nil
}

// logger builds the logger from --log-format and --log-level (or their
// environment variables), writing to w.
func (a *app) logger(cmd *cobra.Command, w io.Writer) (*slog.Logger, error) {
	if err := a.fromEnv(cmd.Flags(), map[string]string{"log-format": "QUICPORT_LOG_FORMAT", "log-level": "QUICPORT_LOG_LEVEL"}); err != nil {
		return nil, err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(a.logLevel)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", a.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(a.logFormat) {
	case "console", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want console or json", a.logFormat)
}

// xdgDir returns $VAR/quicport, or ~/fallback/quicport when VAR is unset.
func (a *app) xdgDir(envVar, fallback string) (string, error) {
	if d := a.getenv(envVar); d != "" {
		return filepath.Join(d, "quicport"), nil
	}
	home := a.getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("neither %s nor HOME is set; set one of them", envVar)
		}
		home = h
	}
	return filepath.Join(home, fallback, "quicport"), nil
}

func (a *app) configDir() (string, error) { return a.xdgDir("XDG_CONFIG_HOME", ".config") }
func (a *app) dataDir() (string, error)   { return a.xdgDir("XDG_DATA_HOME", ".local/share") }
