package dataplane

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func TestPublishAndList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dataplanes")
	var conns atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Publish(ctx, dir, 10*time.Millisecond, func() Status {
			return Status{State: Active, PID: os.Getpid(), ActiveConnections: conns.Load(), StartedAt: 1}
		}, nil)
	}()
	conns.Store(3)
	deadline := time.Now().Add(5 * time.Second)
	for {
		list, err := List(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 && list[0].ActiveConnections == 3 {
			if list[0].Stale || list[0].State != Active {
				t.Fatalf("status = %+v", list[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("state file never showed 3 connections: %+v", list)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if list, _ := List(dir); len(list) != 0 {
		t.Fatalf("state file left after exit: %+v", list)
	}
}

func TestListMarksStale(t *testing.T) {
	dir := t.TempDir()
	// PID 0x7ffffff0 does not exist.
	os.WriteFile(filepath.Join(dir, "dp-2147483632.state"), []byte(`{"state":"ACTIVE","pid":2147483632}`), 0o644)
	list, err := List(dir)
	if err != nil || len(list) != 1 || !list[0].Stale {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

// An unchanged status is not written again (every write is a new file,
// renamed into place); a change is, at the next tick.
func TestPublishWritesOnlyChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "dataplanes")
		path := filepath.Join(dir, fileName(os.Getpid()))
		var conns atomic.Int64
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Publish(ctx, dir, time.Second, func() Status {
				return Status{State: Active, PID: os.Getpid(), ActiveConnections: conns.Load(), StartedAt: 1}
			}, nil)
		}()
		defer func() { cancel(); <-done }()
		inode := func() uint64 {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			return fi.Sys().(*syscall.Stat_t).Ino
		}
		synctest.Wait() // the first write
		first := inode()
		time.Sleep(10 * time.Second) // ten ticks
		synctest.Wait()
		if inode() != first {
			t.Fatal("the state file was rewritten although nothing changed")
		}
		conns.Store(1)
		time.Sleep(time.Second)
		synctest.Wait()
		if inode() == first {
			t.Fatal("a changed status was not written at the next tick")
		}
	})
}
