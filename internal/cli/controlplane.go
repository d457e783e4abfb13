package cli

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/quicport/quicport/internal/api"
	"github.com/quicport/quicport/internal/control"
	"github.com/quicport/quicport/internal/metrics"
)

// runControlPlane runs quicport server: data planes, the control socket,
// the API, and the signals. SIGINT stops everything; SIGTERM stops only
// the control plane, so a new one adopts the running data planes; SIGHUP
// is a graceful restart.
func (a *app) runControlPlane(ctx context.Context, cfg control.Config, apiListen string, noAPI bool, attrs []any) error {
	log := cfg.Log
	// Before anything starts: SIGHUP's default action would end the server.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	exe, err := executable()
	if err != nil {
		return err
	}
	cfg.Exe, cfg.Stdout, cfg.Stderr = exe, a.stdio.Out, a.stdio.Err
	p, err := control.Start(cfg)
	if err != nil {
		return err
	}
	var apiSrv *api.Server
	if !noAPI {
		if apiSrv, err = api.Listen(apiListen, p, metrics.Registry(p), log); err != nil {
			p.Stop(true)
			return err
		}
		attrs = append(attrs, "api", apiSrv.Addr().String())
	}
	attrs = append([]any{"listen", p.Addr().String()}, attrs...)
	attrs = append(attrs, "graceful_restart", map[bool]string{true: "bpf", false: "unavailable"}[p.Steered()])
	log.Info("quicport server listening", attrs...)
	notify("READY=1")

	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopRun := context.WithCancel(gctx)
	defer stopRun()
	if apiSrv != nil {
		g.Go(func() error { return apiSrv.Serve(runCtx) })
	}
	shutdown := false
	g.Go(func() error {
		defer stopRun()
		for {
			select {
			case <-hup:
				notify("RELOADING=1")
				if msg, err := p.Restart(); err != nil {
					log.Error("graceful restart failed", "err", err)
				} else {
					log.Info("graceful restart", "result", msg)
				}
				notify("READY=1")
			case <-p.ShutdownRequested():
				shutdown = true
				return nil
			case <-runCtx.Done():
				return nil
			}
		}
	})
	err = g.Wait()
	notify("STOPPING=1")
	stopAll := shutdown || !stoppedBy(ctx, syscall.SIGTERM)
	p.Stop(stopAll)
	log.Info("quicport server stopped", "data_planes_stopped", stopAll)
	return err
}

// executable returns the path data planes are started from: the path this
// process was started by, so an upgraded binary there is what a graceful
// restart runs (/proc/self/exe would name the old, deleted one).
func executable() (string, error) {
	if p, err := exec.LookPath(os.Args[0]); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, nil
		}
	}
	return os.Executable()
}
