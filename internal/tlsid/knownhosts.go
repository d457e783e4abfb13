package tlsid

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/quicport/quicport/internal/atomicfile"
)

const knownHostsHeader = "# quicport known_hosts file\n# Format: host:port SHA256-fingerprint\n"

// maxKnownHosts bounds the known_hosts file read into memory.
const maxKnownHosts = 16 << 20

// KnownHosts is a known_hosts file: one `host:port FINGERPRINT` per line.
type KnownHosts struct {
	Path string
}

// Lookup returns the fingerprint recorded for host (host:port) and its line
// number, or found=false.
func (k KnownHosts) Lookup(host string) (fp string, line int, found bool, err error) {
	b, err := k.read()
	if err != nil {
		return "", 0, false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && !strings.HasPrefix(fields[0], "#") && fields[0] == host {
			return fields[1], n, true, nil
		}
	}
	return "", 0, false, sc.Err()
}

func (k KnownHosts) read() ([]byte, error) {
	f, err := os.Open(k.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKnownHosts+1))
	if err != nil {
		return nil, fmt.Errorf("read known hosts %s: %w", k.Path, err)
	}
	if len(b) > maxKnownHosts {
		return nil, fmt.Errorf("known hosts %s is larger than %d bytes", k.Path, maxKnownHosts)
	}
	return b, nil
}

// Set records fp for host, replacing an existing entry, and returns the line
// it is on. The file is rewritten atomically under a lock.
func (k KnownHosts) Set(host, fp string) (line int, err error) {
	unlock, err := atomicfile.Lock(k.Path)
	if err != nil {
		return 0, err
	}
	defer unlock()
	b, err := k.read()
	if err != nil {
		return 0, err
	}
	if len(b) == 0 {
		b = []byte(knownHostsHeader)
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 1 && fields[0] == host {
			continue
		}
		out.WriteString(sc.Text())
		out.WriteByte('\n')
		n++
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	fmt.Fprintf(&out, "%s %s\n", host, fp)
	if err := atomicfile.Write(k.Path, out.Bytes(), 0o600); err != nil {
		return 0, err
	}
	return n + 1, nil
}

// ErrUnknownHost and ErrHostChanged are returned by TOFU.Check when it refuses
// a server.
var (
	ErrUnknownHost = errors.New("unknown host")
	ErrHostChanged = errors.New("host certificate changed")
)

// TOFU decides whether to trust a server certificate the way SSH does.
type TOFU struct {
	KnownHosts KnownHosts
	// Prompt asks the user a yes/no question on a terminal. nil means there
	// is no terminal: unknown hosts are refused unless AcceptNew or a
	// pinned key vouches for them, changed hosts always.
	Prompt func(question string) (bool, error)
	// AcceptNew records unknown hosts without asking (OpenSSH's accept-new).
	AcceptNew bool
	// Out receives the notices and warnings (normally stderr).
	Out io.Writer
}

// Check looks up the server certificate der for host (host:port). It
// returns nil when the host is trusted. When the host is unknown and
// keyPinned is true, it returns a non-nil record function: the caller calls
// it once the server has proved the pinned key, which then vouches for the
// certificate.
func (t TOFU) Check(host string, der []byte, keyPinned bool) (record func() error, err error) {
	fp := Fingerprint(der)
	known, line, found, err := t.KnownHosts.Lookup(host)
	if err != nil {
		return nil, err
	}
	if found && known == fp {
		return nil, nil
	}
	add := func() error {
		n, err := t.KnownHosts.Set(host, fp)
		if err != nil {
			return err
		}
		fmt.Fprintf(t.Out, "Warning: Permanently added '%s' to the list of known hosts\n         (%s:%d).\n", host, t.KnownHosts.Path, n)
		return nil
	}
	if found {
		fmt.Fprintf(t.Out, `@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that the server's certificate has just been changed.
The SHA256 fingerprint of the certificate sent by '%s' is:
  %s
The recorded fingerprint (%s:%d) is:
  %s
`, host, fp, t.KnownHosts.Path, line, known)
		if t.Prompt == nil {
			return nil, fmt.Errorf("%w: the certificate of %s does not match %s:%d; if the server's identity was changed on purpose, delete that line and connect again", ErrHostChanged, host, t.KnownHosts.Path, line)
		}
		ok, err := t.Prompt("Are you sure you want to continue connecting and replace the recorded fingerprint? [y/N]: ")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: not confirmed by the user", ErrHostChanged)
		}
		return nil, add()
	}
	if t.Prompt != nil {
		fmt.Fprintf(t.Out, "The authenticity of host '%s' can't be established.\nCertificate details:\n  SHA256 Fingerprint: %s\n", host, fp)
		if c, err := x509.ParseCertificate(der); err == nil {
			fmt.Fprintf(t.Out, "  Subject: %s\n  Issuer: %s\n  Valid from: %s\n  Valid until: %s\n", c.Subject, c.Issuer, c.NotBefore.UTC().Format("Jan _2 15:04:05 2006 MST"), c.NotAfter.UTC().Format("Jan _2 15:04:05 2006 MST"))
		}
		ok, err := t.Prompt("Are you sure you want to continue connecting? [y/N]: ")
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s not confirmed by the user", ErrUnknownHost, host)
		}
		return nil, add()
	}
	if t.AcceptNew {
		return nil, add()
	}
	if keyPinned {
		return add, nil
	}
	return nil, fmt.Errorf("%w: %s (certificate SHA256 %s) is not in %s and there is no terminal to confirm it; "+
		"connect once from a terminal, pass --accept-new-host to record it, or pin the server with --server-pubkey", ErrUnknownHost, host, fp, t.KnownHosts.Path)
}
