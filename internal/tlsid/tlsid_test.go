package tlsid

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadOrCreatePersists(t *testing.T) {
	dir := t.TempDir()
	c1, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c1.Certificate[0], c2.Certificate[0]) {
		t.Fatal("second load created a new certificate")
	}
	fi, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, want 0600", fi.Mode().Perm())
	}
	os.Chmod(filepath.Join(dir, KeyFile), 0o644)
	if _, err := LoadOrCreate(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("loading a 0644 key: error = %v, want the chmod fix", err)
	}
}

func TestTOFU(t *testing.T) {
	dir := t.TempDir()
	kh := KnownHosts{Path: filepath.Join(dir, "known_hosts")}
	certA, certB := []byte("certificate A"), []byte("certificate B")
	var out bytes.Buffer
	noTTY := TOFU{KnownHosts: kh, Out: &out}

	// Unknown host, no terminal: refused with the fixes named.
	_, err := noTTY.Check("example:1", certA, false)
	if !errors.Is(err, ErrUnknownHost) || !strings.Contains(err.Error(), "--accept-new-host") {
		t.Fatalf("unknown host: error = %v", err)
	}
	// A pinned key defers: nothing recorded until the caller says so.
	record, err := noTTY.Check("example:1", certA, true)
	if err != nil || record == nil {
		t.Fatalf("pinned key: record=%v err=%v", record != nil, err)
	}
	if _, _, found, _ := kh.Lookup("example:1"); found {
		t.Fatal("deferred check recorded the host before the key was proved")
	}
	if err := record(); err != nil {
		t.Fatal(err)
	}
	// Same certificate passes.
	if r, err := noTTY.Check("example:1", certA, false); err != nil || r != nil {
		t.Fatalf("known host: record=%v err=%v", r != nil, err)
	}
	// Changed certificate without a terminal: refused even with a pinned key.
	out.Reset()
	_, err = noTTY.Check("example:1", certB, true)
	if !errors.Is(err, ErrHostChanged) || !strings.Contains(out.String(), "REMOTE HOST IDENTIFICATION HAS CHANGED") {
		t.Fatalf("changed host: error = %v, output %q", err, out.String())
	}
	// accept-new records unknown hosts only.
	acceptNew := TOFU{KnownHosts: kh, Out: &out, AcceptNew: true}
	if _, err := acceptNew.Check("other:2", certB, false); err != nil {
		t.Fatal(err)
	}
	if _, err := acceptNew.Check("example:1", certB, false); !errors.Is(err, ErrHostChanged) {
		t.Fatalf("accept-new on a changed host: error = %v", err)
	}
	// A terminal user says yes to the change.
	var asked []string
	yes := TOFU{KnownHosts: kh, Out: &out, Prompt: func(q string) (bool, error) { asked = append(asked, q); return true, nil }}
	if _, err := yes.Check("example:1", certB, false); err != nil || len(asked) != 1 {
		t.Fatalf("confirmed change: err=%v asked=%q", err, asked)
	}
	fp, _, _, _ := kh.Lookup("example:1")
	if fp != Fingerprint(certB) {
		t.Errorf("recorded %s, want %s", fp, Fingerprint(certB))
	}
	// And no to a new host.
	no := TOFU{KnownHosts: kh, Out: &out, Prompt: func(string) (bool, error) { return false, nil }}
	if _, err := no.Check("third:3", certA, false); !errors.Is(err, ErrUnknownHost) {
		t.Fatalf("declined: error = %v", err)
	}
	b, _ := os.ReadFile(kh.Path)
	if got := strings.Count(string(b), "\n"); got != 4 { // two header lines and two hosts
		t.Errorf("known_hosts has %d lines:\n%s", got, b)
	}
}

func TestFingerprint(t *testing.T) {
	// sha256("abc")
	want := "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
	if got := Fingerprint([]byte("abc")); got != want {
		t.Errorf("Fingerprint = %s", got)
	}
}
