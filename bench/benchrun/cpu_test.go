//go:build linux

package main

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// processTree finds a child of the roots; cpuTime counts what the threads
// of a process spent, as the kernel's own accounting of it does.
func TestTunnelCPUAccounting(t *testing.T) {
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { child.Process.Kill(); child.Wait() }()
	self := os.Getpid()
	tree := processTree([]int{self})
	if !slices.Contains(tree, self) || !slices.Contains(tree, child.Process.Pid) {
		t.Fatalf("processTree(%d) = %v, want it and its child %d", self, tree, child.Process.Pid)
	}

	rusage := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, ok := cpuTime([]int{self})
	ruBefore := rusage()
	for rusage()-ruBefore < 100*time.Millisecond { // spin until the kernel counts 100 ms more
	}
	after, ok2 := cpuTime([]int{self})
	ruSpent := rusage() - ruBefore
	if !ok || !ok2 {
		t.Fatal("cpuTime could not read this process's threads")
	}
	if got := after - before; got < ruSpent*8/10 || got > ruSpent*12/10+20*time.Millisecond {
		t.Errorf("cpuTime counted %v, getrusage %v", got, ruSpent)
	}
	if _, ok := cpuTime([]int{child.Process.Pid, 1 << 30}); ok {
		t.Error("cpuTime read a process that does not exist")
	}
}
