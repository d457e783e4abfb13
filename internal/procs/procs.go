// Package procs fits the Go scheduler's thread count (GOMAXPROCS) to the
// load of a tunnel end. A tunnel that carries a message now and then does
// best on one thread: every goroutine that a packet wakes (quic-go's
// receive loop, the connection's run loop, its send queue, a relay) then
// runs on the thread that woke it, where with more than one the runtime
// wakes an idle thread for each of them, and that thread finds the work
// taken and sleeps again. A tunnel that moves bulk data needs every core:
// one QUIC connection's run loop is about one core, and the receive loop,
// the relays and other connections want more. So a process starts with
// Go's default, goes to one thread once it has been nearly idle for a
// while, and back to the default as soon as it gets busy
// (docs/BENCHMARKS.md, "Thread hand-offs").
package procs

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"time"
)

// tuning is when the thread count changes.
type tuning struct {
	interval time.Duration // how often the process's CPU time is read
	busy     float64       // share of one core over an interval above which one thread gets Go's default back
	quiet    float64       // share of one core below which, held for settle, the process goes to one thread
	settle   time.Duration
}

// defaults: a tunnel that moves a few messages a second uses well under
// a tenth of a core; connection setups back to back (about 2,000 a second
// on the 2-core machine of docs/BENCHMARKS.md) about half of one on one
// thread, which serves them faster; a bulk transfer fills that thread
// within an interval.
var defaults = tuning{interval: 250 * time.Millisecond, busy: 0.6, quiet: 0.25, settle: 2 * time.Second}

// Adapt adapts the thread count until ctx ends, unless GOMAXPROCS is set
// in the environment (the user chose) or Go's default is one thread.
func Adapt(ctx context.Context, log *slog.Logger) {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) <= 1 {
		return
	}
	if _, ok := cpuTime(); !ok {
		return
	}
	go adapt(ctx, log, defaults)
}

func adapt(ctx context.Context, log *slog.Logger, tu tuning) {
	t := time.NewTicker(tu.interval)
	defer t.Stop()
	lastCPU, _ := cpuTime()
	last := time.Now()
	one := false
	var quietSince time.Time
	for {
		select {
		case <-ctx.Done():
			if one {
				runtime.SetDefaultGOMAXPROCS()
			}
			return
		case <-t.C:
		}
		cpu, _ := cpuTime()
		now := time.Now()
		load := float64(cpu-lastCPU) / float64(now.Sub(last))
		lastCPU, last = cpu, now
		switch {
		case one && load > tu.busy:
			runtime.SetDefaultGOMAXPROCS()
			one = false
			log.Debug("busy: scheduling on every core", "gomaxprocs", runtime.GOMAXPROCS(0), "load", load)
		case !one && load < tu.quiet:
			if quietSince.IsZero() {
				quietSince = now
			}
			if now.Sub(quietSince) >= tu.settle {
				runtime.GOMAXPROCS(1)
				one, quietSince = true, time.Time{}
				log.Debug("quiet: scheduling on one thread", "load", load)
			}
		case !one:
			quietSince = time.Time{}
		}
	}
}
