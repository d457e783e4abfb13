package procs

import (
	"os"
	"strings"
)

// The Go runtime's monitor thread (sysmon) sleeps deeply while every
// scheduler thread is idle, and the next system call any goroutine makes
// wakes it again (a futex wake, and the monitor's own run of 20 µs naps
// until the process is idle once more). A tunnel end that is idle
// between messages pays that once per message: on the machine of
// docs/BENCHMARKS.md about 2 of its 4.5 context switches and 10–25% of
// its CPU time per round trip ("The runtime's monitor thread"). The only
// switch the runtime has that keeps the monitor out of deep sleep is the
// scheduler trace: with GODEBUG=schedtrace=N (N > 0) it naps, at most
// 10 ms at a time, instead, and prints the trace every N ms. The largest
// N, 2147483647 ms, is 24.8 days: counted from the host's boot, so a
// host up longer than that gets one line starting "SCHED" on standard
// error when the process starts and one every 24.8 days after.
const monitorSetting = "schedtrace=2147483647"

// withMonitor returns env (KEY=VALUE pairs) with the GODEBUG setting that
// keeps the runtime's monitor thread out of deep sleep added, and true;
// or env itself and false when GODEBUG already sets schedtrace (the user
// chose; that includes GODEBUG=schedtrace=0, which turns this off).
func withMonitor(env []string) ([]string, bool) {
	at := -1 // the first GODEBUG, the one the runtime reads
	for i, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			for _, setting := range strings.Split(v, ",") {
				if strings.HasPrefix(setting, "schedtrace=") {
					return env, false
				}
			}
			at = i
			break
		}
	}
	out := append([]string(nil), env...)
	switch {
	case at < 0:
		out = append(out, "GODEBUG="+monitorSetting)
	case out[at] == "GODEBUG=":
		out[at] += monitorSetting
	default:
		out[at] += "," + monitorSetting
	}
	return out, true
}

// KeepMonitorAwake runs this program again, in this process (same pid,
// name, open files and arguments), with withMonitor's setting, unless its
// environment sets schedtrace already. It returns only when it did not:
// then the process goes on as it was, which costs latency, not
// correctness. Call it first thing in main, for the commands that carry
// traffic for a long time (quicport client, a data plane).
func KeepMonitorAwake() error {
	env, added := withMonitor(os.Environ())
	if !added {
		return nil
	}
	return reexec(os.Args, env)
}
