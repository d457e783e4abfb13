package procs

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// A quiet process goes to one thread, a busy one gets Go's default back,
// and the default is restored when adapting ends.
func TestAdapt(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	if def < 2 {
		t.Skipf("Go's default here is %d thread; there is nothing to adapt", def)
	}
	if _, ok := cpuTime(); !ok {
		t.Fatal("cannot read this process's CPU time")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		adapt(ctx, slog.New(slog.DiscardHandler), tuning{interval: 20 * time.Millisecond, busy: 0.6, quiet: 0.25, settle: 100 * time.Millisecond})
	}()
	waitProcs(t, func(n int) bool { return n == 1 }, "one thread while quiet")

	// Busy: a goroutine spins, a whole core.
	var stop atomic.Bool
	spun := make(chan struct{})
	go func() {
		defer close(spun)
		for !stop.Load() {
		}
	}()
	waitProcs(t, func(n int) bool { return n == def }, "Go's default while busy")
	stop.Store(true)
	<-spun

	waitProcs(t, func(n int) bool { return n == 1 }, "one thread once quiet again")
	cancel()
	<-done
	if n := runtime.GOMAXPROCS(0); n != def {
		t.Errorf("GOMAXPROCS = %d after adapting ended, want the default %d", n, def)
	}
}

func waitProcs(t *testing.T, ok func(int) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(runtime.GOMAXPROCS(0)) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (GOMAXPROCS %d)", what, runtime.GOMAXPROCS(0))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// withMonitor adds the setting to the first GODEBUG, or leaves a
// schedtrace the user set alone.
func TestWithMonitor(t *testing.T) {
	const set = "GODEBUG=schedtrace=2147483647"
	for _, tc := range []struct {
		name    string
		in, out []string
	}{
		{"none", []string{"PATH=/bin"}, []string{"PATH=/bin", set}},
		{"empty", []string{"GODEBUG=", "PATH=/bin"}, []string{set, "PATH=/bin"}},
		{"other settings kept", []string{"GODEBUG=madvdontneed=1,gctrace=1"}, []string{"GODEBUG=madvdontneed=1,gctrace=1,schedtrace=2147483647"}},
		{"the user's schedtrace", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, []string{"GODEBUG=gctrace=1,schedtrace=1000"}},
		{"turned off", []string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}},
		// The runtime reads the first GODEBUG.
		{"the first of two", []string{"GODEBUG=gctrace=1", "GODEBUG=schedtrace=0"}, []string{"GODEBUG=gctrace=1,schedtrace=2147483647", "GODEBUG=schedtrace=0"}},
		{"a look-alike", []string{"GODEBUG=xschedtrace=1"}, []string{"GODEBUG=xschedtrace=1,schedtrace=2147483647"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]string(nil), tc.in...)
			got, added := withMonitor(in)
			if want := !slices.Equal(tc.in, tc.out); !slices.Equal(got, tc.out) || added != want {
				t.Errorf("withMonitor(%q) = %q, %v, want %q, %v", tc.in, got, added, tc.out, want)
			}
			if !slices.Equal(in, tc.in) {
				t.Errorf("withMonitor changed its argument to %q", in)
			}
		})
	}
}
