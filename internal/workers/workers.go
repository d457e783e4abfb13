// Package workers runs the goroutines of tunneled connections on workers
// that outlive them.
//
// A new goroutine starts with a small stack (2 to 8 KiB, from the average
// the runtime last saw) and grows it by copying it to one twice the size
// whenever a call goes deeper. A tunneled connection's goroutines go deep
// at once: dialing the destination runs a dozen frames of package net,
// and the first write into quic-go runs its stream and framer code. In
// BenchmarkConnectionSetup that was 4 stack copies per connection. A
// worker keeps the stack it grew for the next task, which took 3–5% off
// the CPU a new connection costs (docs/BENCHMARKS.md, "Goroutines that
// keep their stacks").
package workers

import (
	"sync"
	"sync/atomic"
)

// DefaultIdle is how many workers a server or client keeps waiting: more
// than a burst of new connections needs on a small machine, and a waiting
// worker holds little more than its stack, which the garbage collector
// shrinks while it waits.
const DefaultIdle = 64

// Pool runs tasks on its workers. A nil *Pool runs each task on a new
// goroutine.
type Pool struct {
	mu      sync.Mutex
	idle    []chan func() // one per waiting worker, the latest to finish last
	maxIdle int
	closed  bool
	live    atomic.Int32 // workers running a task or waiting for one
}

// New returns a pool that keeps up to maxIdle workers waiting for tasks;
// more run at once when more tasks do.
func New(maxIdle int) *Pool { return &Pool{maxIdle: maxIdle} }

// Go runs f on the worker that finished last and waits, or on a new one
// when none waits. Like a go statement, it does not wait for f.
func (p *Pool) Go(f func()) {
	if p == nil {
		go f()
		return
	}
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w <- f // buffered, and the worker waits for nothing else
		return
	}
	p.mu.Unlock()
	p.live.Add(1)
	go p.work(f)
}

func (p *Pool) work(f func()) {
	defer p.live.Add(-1)
	next := make(chan func(), 1)
	for {
		f()
		f = nil // let the task's closure go while waiting
		p.mu.Lock()
		if p.closed || len(p.idle) >= p.maxIdle {
			p.mu.Unlock()
			return
		}
		p.idle = append(p.idle, next)
		p.mu.Unlock()
		if f = <-next; f == nil {
			return // Close
		}
	}
}

// Close ends the waiting workers, and each running one when its task
// returns. Tasks given to Go after Close still run, each on a goroutine
// of its own. Close does not wait for running tasks.
func (p *Pool) Close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, w := range p.idle {
		w <- nil
	}
	p.idle = nil
}
