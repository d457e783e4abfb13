package testutil

import (
	"bytes"
	"testing"
	"time"
)

// A program that outlives its time is killed with its children (which keep
// the output pipe open), and Run returns an error soon after.
func TestCommandTimeout(t *testing.T) {
	cmd := Command(t, 500*time.Millisecond, "sh", "-c", "sleep 30 & sleep 30")
	var out bytes.Buffer
	cmd.Stdout = &out // a pipe, held by the backgrounded sleep too
	start := time.Now()
	if err := cmd.Run(); err == nil {
		t.Fatal("Run succeeded past its timeout")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Run returned after %v; the timeout was 500ms", d)
	}
}
