// Package auth owns quicport's application-layer authentication: WireGuard
// format X25519 keys, the pre-shared key, and the PSK and X25519 handshakes
// that run on a session's first stream, bound to the TLS session through a
// TLS exporter value.
//
// It must never log, format or return secret material: PrivateKey and PSK
// redact themselves when printed.
package auth

import (
	"bufio"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
)

// KeySize is the size of an X25519 key.
const KeySize = 32

// PublicKey is an X25519 public key. Its text form is WireGuard's: standard
// base64 of the 32 bytes.
type PublicKey [KeySize]byte

// String returns the base64 form, as `wg pubkey` prints it.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// Fingerprint returns a short, loggable identifier for the key: the first 8
// bytes of its SHA-256, as hex.
func (k PublicKey) Fingerprint() string {
	s := sha256.Sum256(k[:])
	return fmt.Sprintf("%x", s[:8])
}

// PrivateKey is an X25519 private key. It never prints its value.
type PrivateKey struct {
	k *ecdh.PrivateKey
}

// String redacts the key so it cannot reach a log line by accident.
func (PrivateKey) String() string { return "[private key redacted]" }

// LogValue redacts the key in slog output.
func (PrivateKey) LogValue() slog.Value { return slog.StringValue("[private key redacted]") }

// IsZero reports whether no key is set.
func (p PrivateKey) IsZero() bool { return p.k == nil }

// Public returns the key's public half.
func (p PrivateKey) Public() PublicKey {
	var pk PublicKey
	copy(pk[:], p.k.PublicKey().Bytes())
	return pk
}

// Encode returns the base64 form of the private key, for writing key files
// and for `quicport keygen`. Callers must not log it.
func (p PrivateKey) Encode() string { return base64.StdEncoding.EncodeToString(p.k.Bytes()) }

// dh computes X25519(p, peer).
func (p PrivateKey) dh(peer PublicKey) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return nil, err
	}
	return p.k.ECDH(pub)
}

// GenerateKey returns a fresh private key, clamped as `wg genkey` does.
func GenerateKey() (PrivateKey, error) {
	var b [KeySize]byte
	if _, err := rand.Read(b[:]); err != nil {
		return PrivateKey{}, err
	}
	b[0] &= 248
	b[31] = (b[31] & 127) | 64
	k, err := ecdh.X25519().NewPrivateKey(b[:])
	return PrivateKey{k: k}, err
}

// ParsePrivateKey parses a base64 private key as printed by `quicport keygen`
// or `wg genkey`. The error never contains the input.
func ParsePrivateKey(s string) (PrivateKey, error) {
	b, err := decodeKey(s)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("private key: %w", err)
	}
	k, err := ecdh.X25519().NewPrivateKey(b[:])
	if err != nil {
		return PrivateKey{}, fmt.Errorf("private key: %w", err)
	}
	return PrivateKey{k: k}, nil
}

// ParsePublicKey parses a base64 public key as printed by `quicport pubkey`
// or `wg pubkey`.
func ParsePublicKey(s string) (PublicKey, error) {
	b, err := decodeKey(s)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key %.12q: %w", strings.TrimSpace(s), err)
	}
	return PublicKey(b), nil
}

func decodeKey(s string) ([KeySize]byte, error) {
	var k [KeySize]byte
	s = strings.TrimSpace(s)
	if len(s) != base64.StdEncoding.EncodedLen(KeySize) {
		return k, fmt.Errorf("want 44 characters of base64 (32 bytes, as `quicport keygen` or `wg genkey` print), got %d characters", len(s))
	}
	// 44 characters without padding decode to 33 bytes: decode into a
	// buffer sized for the input, then insist on exactly 32.
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(buf, []byte(s))
	copy(k[:], buf)
	if err != nil || n != KeySize {
		return k, fmt.Errorf("not valid base64 of 32 bytes (as `quicport keygen` or `wg genkey` print)")
	}
	return k, nil
}

// LoadPrivateKeyFile reads a private key file. Like OpenSSH, it refuses a
// file that other users can read, naming the chmod that fixes it.
func LoadPrivateKeyFile(path string) (PrivateKey, error) {
	b, err := ReadSecretFile(path)
	if err != nil {
		return PrivateKey{}, err
	}
	k, err := ParsePrivateKey(string(b))
	if err != nil {
		return PrivateKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// maxSecretFile bounds the size of key and PSK files read into memory.
const maxSecretFile = 64 << 10

// ReadSecretFile reads a file holding a secret (private key or PSK),
// refusing one that is readable by group or others and one larger than
// 64 KiB. Surrounding whitespace is trimmed.
func ReadSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		return nil, fmt.Errorf("secret file %s has mode %04o and is readable by other users; run: chmod 600 %s", path, mode, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", path, err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("secret file %s is larger than %d bytes; it is not a key file", path, maxSecretFile)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

// AuthorizedKey is one entry of an authorized-keys list.
type AuthorizedKey struct {
	Key     PublicKey
	Comment string
	// PermitListen and PermitOpen are the key's own permitlisten and
	// permitopen options ("" = not set), in --permit-listen and
	// --permit-open syntax. They narrow the server-wide rules.
	PermitListen string
	PermitOpen   string
}

// maxAuthorizedLine bounds one line of an authorized-keys file.
const maxAuthorizedLine = 8 << 10

// ParseAuthorizedKeys reads an authorized-keys list, one key per line in
// OpenSSH's authorized_keys style:
//
//	[permitlisten="9022"] [permitopen="127.0.0.1:22"] KEY [comment]
//
// Options may also be joined with commas. Blank lines and lines starting
// with '#' are ignored. name is used in errors (a path or a flag name).
func ParseAuthorizedKeys(r io.Reader, name string) ([]AuthorizedKey, error) {
	var keys []AuthorizedKey
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxAuthorizedLine)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		ak, err := parseAuthorizedLine(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		keys = append(keys, ak)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return keys, nil
}

func parseAuthorizedLine(text string) (AuthorizedKey, error) {
	var ak AuthorizedKey
	var listen, open []string
	rest := text
	for {
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			return ak, fmt.Errorf("no public key on the line")
		}
		tok, after, err := nextToken(rest)
		if err != nil {
			return ak, err
		}
		if !strings.Contains(tok, "=\"") {
			// Not an option (name="value"): it must be the key.
			k, err := ParsePublicKey(tok)
			if err != nil {
				return ak, err
			}
			ak.Key, ak.Comment = k, strings.TrimSpace(after)
			ak.PermitListen, ak.PermitOpen = strings.Join(listen, ","), strings.Join(open, ",")
			return ak, nil
		}
		opts, err := splitOptions(tok)
		if err != nil {
			return ak, err
		}
		for _, o := range opts {
			name, value, _ := strings.Cut(o, "=")
			if len(value) < 2 || value[0] != '"' || value[len(value)-1] != '"' {
				return ak, fmt.Errorf("option %s: the value must be in double quotes, as %s=\"...\"", name, name)
			}
			value = value[1 : len(value)-1]
			if strings.Contains(value, "\"") {
				return ak, fmt.Errorf("option %s: stray double quote in the value", name)
			}
			switch strings.ToLower(name) {
			case "permitlisten":
				listen = append(listen, value)
			case "permitopen":
				open = append(open, value)
			default:
				return ak, fmt.Errorf("unknown option %q; quicport understands permitlisten and permitopen", name)
			}
		}
		rest = after
	}
}

// nextToken returns the text up to the first space or tab outside double
// quotes, and the rest.
func nextToken(s string) (tok, rest string, err error) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			inQuote = !inQuote
		case (c == ' ' || c == '\t') && !inQuote:
			return s[:i], s[i:], nil
		}
	}
	if inQuote {
		return "", "", fmt.Errorf("unterminated double quote")
	}
	return s, "", nil
}

// splitOptions splits name="value",name="value" on commas outside quotes.
func splitOptions(tok string) ([]string, error) {
	var out []string
	inQuote, start := false, 0
	for i := 0; i < len(tok); i++ {
		switch tok[i] {
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				out = append(out, tok[start:i])
				start = i + 1
			}
		}
	}
	return append(out, tok[start:]), nil
}

// PSK is a pre-shared key. It never prints its value.
type PSK []byte

// String redacts the key.
func (PSK) String() string { return "[psk redacted]" }

// LogValue redacts the key in slog output.
func (PSK) LogValue() slog.Value { return slog.StringValue("[psk redacted]") }
