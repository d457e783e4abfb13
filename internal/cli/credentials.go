package cli

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/atomicfile"
	"github.com/quicport/quicport/internal/auth"
)

// credentialFlags are the secrets server and client share: the X25519
// private key and the PSK, each inline or from a file.
type credentialFlags struct {
	privkey, privkeyFile string
	psk, pskFile         string
}

func (c *credentialFlags) register(cmd *cobra.Command, role string) {
	fs := cmd.Flags()
	fs.StringVar(&c.privkey, "privkey", "", "the "+role+"'s X25519 private key, base64 (env QUICPORT_PRIVKEY; visible in the process list, prefer --privkey-file)")
	fs.StringVar(&c.privkeyFile, "privkey-file", "", "file holding the "+role+"'s X25519 private key, mode 0600 (env QUICPORT_PRIVKEY_FILE)")
	fs.StringVar(&c.psk, "psk", "", "pre-shared key (env QUICPORT_PSK; visible in the process list, prefer --psk-file)")
	fs.StringVar(&c.pskFile, "psk-file", "", "file holding the pre-shared key, mode 0600 (env QUICPORT_PSK_FILE)")
}

func (a *app) credentialEnv(cmd *cobra.Command) error {
	return a.fromEnv(cmd.Flags(), map[string]string{
		"privkey": "QUICPORT_PRIVKEY", "privkey-file": "QUICPORT_PRIVKEY_FILE",
		"psk": "QUICPORT_PSK", "psk-file": "QUICPORT_PSK_FILE",
	})
}

// warnArgv warns when a secret was given on the command line, where other
// local users can read it.
func warnArgv(cmd *cobra.Command, log *slog.Logger) {
	for flag, better := range map[string]string{"psk": "QUICPORT_PSK or --psk-file", "privkey": "QUICPORT_PRIVKEY or --privkey-file"} {
		if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
			log.Warn("a secret on the command line is visible to other users in the process list; use " + better + " instead")
		}
	}
}

// warnWeakPSK warns about a PSK too short to resist guessing.
func warnWeakPSK(log *slog.Logger, psk auth.PSK) {
	if psk != nil && len(psk) < 16 {
		log.Warn("the PSK is shorter than 16 bytes and may be guessed; use a random one, e.g. head -c 32 /dev/urandom | base64")
	}
}

// privateKey returns the configured private key, if any.
func (c *credentialFlags) privateKey() (auth.PrivateKey, bool, error) {
	switch {
	case c.privkey != "" && c.privkeyFile != "":
		return auth.PrivateKey{}, false, usagef("use only one of --privkey and --privkey-file (or their QUICPORT_ variables)")
	case c.privkeyFile != "":
		k, err := auth.LoadPrivateKeyFile(c.privkeyFile)
		return k, err == nil, err
	case c.privkey != "":
		k, err := auth.ParsePrivateKey(c.privkey)
		if err != nil {
			return k, false, usagef("--privkey: %v", err)
		}
		return k, true, nil
	}
	return auth.PrivateKey{}, false, nil
}

// presharedKey returns the configured PSK, if any.
func (c *credentialFlags) presharedKey() (auth.PSK, error) {
	switch {
	case c.psk != "" && c.pskFile != "":
		return nil, usagef("use only one of --psk and --psk-file (or their QUICPORT_ variables)")
	case c.pskFile != "":
		b, err := auth.ReadSecretFile(c.pskFile)
		if err != nil {
			return nil, err
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("PSK file %s is empty", c.pskFile)
		}
		return auth.PSK(b), nil
	case c.psk != "":
		return auth.PSK(c.psk), nil
	}
	return nil, nil
}

// pskFileName is the auto-generated PSK inside the config directory.
const pskFileName = "psk"

// loadOrCreatePSK reads the server's auto-generated PSK, creating a random
// 32-byte one (stored base64, mode 0600) on first use.
func loadOrCreatePSK(dir string) (psk auth.PSK, path string, created bool, err error) {
	path = filepath.Join(dir, pskFileName)
	unlock, err := atomicfile.Lock(path)
	if err != nil {
		return nil, path, false, err
	}
	defer unlock()
	b, err := auth.ReadSecretFile(path)
	if err == nil && len(b) > 0 {
		return auth.PSK(b), path, false, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, path, false, err
	}
	var raw [32]byte
	rand.Read(raw[:])
	text := base64.StdEncoding.EncodeToString(raw[:])
	if err := atomicfile.Write(path, []byte(text+"\n"), 0o600); err != nil {
		return nil, path, false, err
	}
	return auth.PSK(text), path, true, nil
}

// readPublicKeyFile reads a key file such as one `quicport pubkey` wrote.
func readPublicKeyFile(path string) (auth.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return auth.PublicKey{}, err
	}
	k, err := auth.ParsePublicKey(string(b))
	if err != nil {
		return k, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}
