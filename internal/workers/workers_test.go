package workers

import (
	"sync"
	"testing"
	"time"
)

// waitFor polls cond for up to 10 s: a worker waits again a moment after
// its task returned.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (p *Pool) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

func TestTasksOneAfterAnotherShareOneWorker(t *testing.T) {
	p := New(4)
	defer p.Close()
	for i := range 1000 {
		done := make(chan struct{})
		p.Go(func() { close(done) })
		<-done
		waitFor(t, func() bool { return p.waiting() == 1 }, "the worker to wait again")
		if n := p.live.Load(); n != 1 {
			t.Fatalf("task %d: %d workers, want the one", i, n)
		}
	}
}

func TestIdleWorkersAreBounded(t *testing.T) {
	p := New(8)
	defer p.Close()
	var wg sync.WaitGroup
	release := make(chan struct{})
	var ran sync.Map
	for i := range 100 {
		wg.Add(1)
		p.Go(func() {
			defer wg.Done()
			<-release
			ran.Store(i, true)
		})
	}
	if n := p.live.Load(); n != 100 {
		t.Fatalf("%d workers for 100 blocked tasks, want 100", n)
	}
	close(release)
	wg.Wait()
	for i := range 100 {
		if _, ok := ran.Load(i); !ok {
			t.Fatalf("task %d did not run", i)
		}
	}
	waitFor(t, func() bool { return p.live.Load() == 8 }, "all but 8 workers to end")
	if n := p.waiting(); n != 8 {
		t.Fatalf("%d idle workers, want 8", n)
	}
}

func TestCloseEndsWaitingWorkersAndLaterOnes(t *testing.T) {
	p := New(8)
	release := make(chan struct{})
	for range 4 {
		p.Go(func() { <-release })
	}
	quick := make(chan struct{})
	p.Go(func() { close(quick) })
	<-quick
	waitFor(t, func() bool { return p.waiting() == 1 }, "a worker to wait")
	p.Close()
	p.Close() // idempotent
	waitFor(t, func() bool { return p.live.Load() == 4 }, "the waiting worker to end")
	close(release)
	waitFor(t, func() bool { return p.live.Load() == 0 }, "the running workers to end after their tasks")
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
	waitFor(t, func() bool { return p.live.Load() == 0 }, "a task given after Close to end its goroutine")
}

func TestNilPoolRunsOnNewGoroutines(t *testing.T) {
	var p *Pool
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
	p.Close()
}

// deep uses about 8 KiB of stack, as dialing a destination does.
//
//go:noinline
func deep(n int) byte {
	var b [512]byte
	b[n] = byte(n)
	if n == 0 {
		return b[0]
	}
	return deep(n-1) + b[n]
}

// BenchmarkGo compares a task that needs an 8 KiB stack run by a go
// statement ("go") with the same task on a pool's worker ("pool").
func BenchmarkGo(b *testing.B) {
	done := make(chan struct{})
	task := func() { deep(15); done <- struct{}{} }
	b.Run("go", func(b *testing.B) {
		for b.Loop() {
			go task()
			<-done
		}
	})
	b.Run("pool", func(b *testing.B) {
		p := New(4)
		defer p.Close()
		for b.Loop() {
			p.Go(task)
			<-done
		}
	})
}
