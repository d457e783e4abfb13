package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	k := mustKey(t)
	k2, err := ParsePrivateKey(k.Encode() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if k2.Public() != k.Public() {
		t.Fatal("parsed key has a different public key")
	}
	p, err := ParsePublicKey(k.Public().String())
	if err != nil || p != k.Public() {
		t.Fatalf("ParsePublicKey = %v, %v", p, err)
	}
}

// A fixed vector: private key bytes 1..32, public key as printed by wireguard-tools.
func TestPublicKeyVector(t *testing.T) {
	// Generated with: printf 'AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=' | wg pubkey
	k, err := ParsePrivateKey("AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := k.Public().String(), "B6N8vBQgk8i3VdwbEOhstCY3StFqqFPtC9/AsrhtHHw="; got != want {
		t.Errorf("public key = %s, want %s", got, want)
	}
}

func TestParseKeyErrors(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("!", 44), "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"} {
		if _, err := ParsePrivateKey(s); err == nil {
			t.Errorf("ParsePrivateKey(%q) succeeded", s)
		} else if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q repeats the secret input", err)
		}
	}
}

func TestReadSecretFileMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	k := mustKey(t)
	if err := os.WriteFile(p, []byte(k.Encode()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadPrivateKeyFile(p)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+p) {
		t.Fatalf("LoadPrivateKeyFile of a 0644 file: error = %v, want the chmod fix", err)
	}
	os.Chmod(p, 0o600)
	k2, err := LoadPrivateKeyFile(p)
	if err != nil || k2.Public() != k.Public() {
		t.Fatalf("LoadPrivateKeyFile = %v, %v", k2.Public(), err)
	}
}

func TestParseAuthorizedKeys(t *testing.T) {
	a, b := mustKey(t).Public(), mustKey(t).Public()
	in := "# quicport clients\n\n" + a.String() + " alice laptop\n  " + b.String() + "\n"
	keys, err := ParseAuthorizedKeys(strings.NewReader(in), "authorized_keys")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Key != a || keys[0].Comment != "alice laptop" || keys[1].Key != b {
		t.Fatalf("keys = %+v", keys)
	}
	_, err = ParseAuthorizedKeys(strings.NewReader("# x\nnot-a-key\n"), "authorized_keys")
	if err == nil || !strings.Contains(err.Error(), "authorized_keys:2") {
		t.Fatalf("error = %v, want one naming line 2", err)
	}
}

func TestAuthorizedKeyOptions(t *testing.T) {
	a, b := mustKey(t).Public(), mustKey(t).Public()
	in := `permitlisten="9022" permitopen="127.0.0.1:22" ` + a.String() + " alice\n" +
		`permitlisten="9000-9100",permitopen="10.0.0.0/8:5432",permitopen="db.internal:5432" ` + b.String() + "\n"
	keys, err := ParseAuthorizedKeys(strings.NewReader(in), "keys")
	if err != nil {
		t.Fatal(err)
	}
	if k := keys[0]; k.Key != a || k.PermitListen != "9022" || k.PermitOpen != "127.0.0.1:22" || k.Comment != "alice" {
		t.Errorf("first = %+v", k)
	}
	if k := keys[1]; k.Key != b || k.PermitListen != "9000-9100" || k.PermitOpen != "10.0.0.0/8:5432,db.internal:5432" {
		t.Errorf("second = %+v", k)
	}
	for _, bad := range []string{
		`command="rm -rf /" ` + a.String(),
		`permitlisten=9022 ` + a.String(),
		`permitlisten="9022 ` + a.String(),
		`permitlisten="9022"`,
	} {
		if _, err := ParseAuthorizedKeys(strings.NewReader(bad), "keys"); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseAuthorizedKeys(f *testing.F) {
	f.Add(`permitlisten="9022" permitopen="127.0.0.1:22" AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA= c`)
	f.Add("# comment\nAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=\n")
	f.Add(`a="b,c",d="e" x`)
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseAuthorizedKeys(strings.NewReader(s), "fuzz")
		if err != nil {
			return
		}
		for _, k := range keys {
			if strings.ContainsAny(k.PermitListen+k.PermitOpen, "\"") {
				t.Fatalf("quote left in option values: %+v", k)
			}
		}
	})
}

// Found by FuzzParseAuthorizedKeys: 44 base64 characters without padding
// decode to 33 bytes and used to overflow the 32-byte key.
func TestParseKeyUnpadded44(t *testing.T) {
	s := strings.Repeat("A", 44)
	if _, err := ParsePublicKey(s); err == nil {
		t.Fatal("accepted 44 characters that decode to 33 bytes")
	}
	if _, err := ParsePrivateKey(s); err == nil {
		t.Fatal("accepted 44 characters that decode to 33 bytes")
	}
}
