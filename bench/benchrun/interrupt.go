//go:build linux

package main

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
)

// An interrupted run (Ctrl-C, SIGTERM) must leave nothing behind: no
// helper process — a quicport server stopped by SIGINT stops its data
// planes too, where a SIGKILL would leave them waiting to be adopted — no
// network namespace or drop rules, no work directory.
var interrupt struct {
	sync.Mutex
	cmds []*exec.Cmd // every helper made
	undo []func()    // run last registered first, after the helpers stop
}

// helper is exec.Command for the processes a run keeps going. An interrupt
// stops them; they also die with benchrun when it is killed, instead of
// lingering.
func helper(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	interrupt.Lock()
	interrupt.cmds = append(interrupt.cmds, cmd)
	interrupt.Unlock()
	return cmd
}

// onInterrupt registers f to undo something if the run is interrupted. f
// must be safe to run after the normal cleanup has run too.
func onInterrupt(f func()) {
	interrupt.Lock()
	interrupt.undo = append(interrupt.undo, f)
	interrupt.Unlock()
}

// catchInterrupts makes SIGINT and SIGTERM stop every helper, undo what was
// registered, and exit with status 130.
func catchInterrupts() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		progress("interrupted: stopping helpers and cleaning up")
		// The lock stays held: nothing new starts from here on.
		interrupt.Lock()
		var wg sync.WaitGroup
		for _, c := range interrupt.cmds {
			if c.Process != nil {
				wg.Go(func() { stop(c) })
			}
		}
		wg.Wait()
		for i := len(interrupt.undo) - 1; i >= 0; i-- {
			interrupt.undo[i]()
		}
		os.Exit(130)
	}()
}
