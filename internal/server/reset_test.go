package server

import (
	"testing"

	"github.com/quicport/quicport/internal/tlsid"
)

// The stateless reset key follows the identity: the same persisted
// identity gives the same key in every run (so a restarted server can
// reset the connections of the run before), and another identity another
// key.
func TestStatelessResetKeyFollowsTheIdentity(t *testing.T) {
	dir := t.TempDir()
	load := func(dir string) [32]byte {
		t.Helper()
		cert, err := tlsid.LoadOrCreate(dir)
		if err != nil {
			t.Fatal(err)
		}
		k := statelessResetKey(Config{Certificate: cert})
		if k == nil {
			t.Fatal("no stateless reset key for a persisted identity")
		}
		return *k
	}
	first, again, other := load(dir), load(dir), load(t.TempDir())
	if first != again {
		t.Error("the same identity gave two keys: a restarted server could not reset the last run's connections")
	}
	if first == other {
		t.Error("two identities gave the same key")
	}
	cert, err := tlsid.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if statelessResetKey(Config{Certificate: cert, NoStatelessResets: true}) != nil {
		t.Error("NoStatelessResets still gave a key")
	}
}
