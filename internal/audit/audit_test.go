package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func writeLog(t *testing.T, n int) (path string, lines []string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Record(Event{Type: "auth_success", Fields: map[string]any{"n": i, "remote": "127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	b, _ := os.ReadFile(path)
	return path, strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
}

func verify(t *testing.T, content string) (int, error) {
	t.Helper()
	n, _, err := Verify(strings.NewReader(content))
	return n, err
}

func TestChain(t *testing.T) {
	path, lines := writeLog(t, 5)
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
	}
	if n, err := verify(t, strings.Join(lines, "")); err != nil || n != 5 {
		t.Fatalf("intact log: %d lines, %v", n, err)
	}
	// Reopening continues the chain.
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l.Record(Event{Type: "shutdown"})
	l.Close()
	b, _ := os.ReadFile(path)
	if n, err := verify(t, string(b)); err != nil || n != 6 {
		t.Fatalf("after reopen: %d lines, %v", n, err)
	}

	tests := []struct {
		name     string
		mutate   func([]string) []string
		wantLine string
	}{
		{"edited", func(l []string) []string { l[2] = strings.Replace(l[2], "127.0.0.1", "10.0.0.1", 1); return l }, "line 4"},
		{"removed", func(l []string) []string { return append(l[:2], l[3:]...) }, "line 3"},
		{"reordered", func(l []string) []string { l[1], l[2] = l[2], l[1]; return l }, "line 2"},
		{"first removed", func(l []string) []string { return l[1:] }, "line 1"},
		{"garbage", func(l []string) []string { l[3] = "hello\n"; return l }, "line 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mutated := tt.mutate(append([]string(nil), lines...))
			_, err := verify(t, strings.Join(mutated, ""))
			if !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), tt.wantLine+":") {
				t.Fatalf("error = %v, want the chain broken at %s", err, tt.wantLine)
			}
		})
	}
}

func TestConcurrentRecordsKeepTheChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.Record(Event{Type: "forward_open", Fields: map[string]any{"conn_id": i, "pad": strings.Repeat("x", 5000)}})
		}()
	}
	wg.Wait()
	l.Close()
	b, _ := os.ReadFile(path)
	if n, err := verify(t, string(b)); err != nil || n != 50 {
		t.Fatalf("%d lines, %v", n, err)
	}
}

func TestOpenRefusesReadableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(path, nil, 0o644)
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("error = %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(fmt.Sprintf(`{"prev":%q,"event":"x"}`+"\n", Genesis))
	f.Add("{}\n")
	f.Add("not json\n")
	f.Fuzz(func(t *testing.T, s string) {
		Verify(strings.NewReader(s))
	})
}

// Writers in several processes (a control plane and its data planes) keep
// one chain: here two Logs on one file, each with its own descriptor and
// flock, append concurrently.
func TestTwoWritersKeepOneChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var logs []*Log
	for range 2 {
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		logs = append(logs, l)
	}
	var wg sync.WaitGroup
	for w, l := range logs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if err := l.Record(Event{Type: "forward_open", Fields: map[string]any{"writer": w, "n": i}}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(path)
	if n, err := verify(t, string(b)); err != nil || n != 400 {
		t.Fatalf("Verify = %d lines, %v; want 400 lines in one chain", n, err)
	}
}
