//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// processTree returns the PIDs of roots and of every process below them
// (a quicport server's data planes, sshd's session processes), as they are
// now.
func processTree(roots []int) []int {
	var out []int
	seen := map[int]bool{}
	var walk func(pid int)
	walk = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		out = append(out, pid)
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "children"))
		for _, t := range tasks {
			b, _ := os.ReadFile(t)
			for _, f := range strings.Fields(string(b)) {
				if child, err := strconv.Atoi(f); err == nil {
					walk(child)
				}
			}
		}
	}
	for _, r := range roots {
		walk(r)
	}
	return out
}

// cpuTime is the CPU time (user and system) the threads of pids have used
// so far, from each thread's schedstat, which counts in nanoseconds where
// /proc/PID/stat counts in clock ticks of 10 ms. ok is false if any of
// them could not be read (a process that ended).
func cpuTime(pids []int) (total time.Duration, ok bool) {
	for _, pid := range pids {
		stats, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(pid), "task", "*", "schedstat"))
		if len(stats) == 0 {
			return 0, false
		}
		for _, s := range stats {
			b, err := os.ReadFile(s)
			if err != nil {
				return 0, false
			}
			f := strings.Fields(string(b))
			if len(f) == 0 {
				return 0, false
			}
			ns, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, false
			}
			total += time.Duration(ns)
		}
	}
	return total, true
}

// cpuPer starts counting the CPU time of pids; the func it returns gives
// the time (µs) they spent since, per each of n operations, and false
// when there are no pids or one of them could not be read.
func cpuPer(pids []int) func(n int) (float64, bool) {
	before, ok := cpuTime(pids)
	return func(n int) (float64, bool) {
		after, ok2 := cpuTime(pids)
		if len(pids) == 0 || !ok || !ok2 {
			return 0, false
		}
		return micros(after-before) / float64(n), true
	}
}

// tunnelPIDs is every process that carries p's traffic: its own (a
// client, ssh, a forwarder's two ends) and the far ends it shares with
// other paths, with whatever runs below them. Empty for direct.
func (p *path) tunnelPIDs() []int {
	var roots []int
	for _, c := range p.procs {
		if c.Process != nil {
			roots = append(roots, c.Process.Pid)
		}
	}
	return processTree(append(roots, p.shared...))
}
