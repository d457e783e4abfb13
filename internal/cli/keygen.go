package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/auth"
)

func (a *app) keygenCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "keygen",
		Short: "Print a new X25519 private key (like wg genkey)",
		Long: `Print a new X25519 private key in base64, in WireGuard's format: keys from
` + "`wg genkey`" + ` work with quicport and the other way round.`,
		Example: `  umask 077; quicport keygen > client.key
  quicport pubkey < client.key > client.pub`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			k, err := auth.GenerateKey()
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdio.Out, k.Encode())
			return err
		},
	}
}

func (a *app) pubkeyCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "pubkey",
		Short:   "Read a private key on stdin and print its public key (like wg pubkey)",
		Example: `  quicport pubkey < client.key`,
		Args:    cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b, err := io.ReadAll(io.LimitReader(a.stdio.In, 1024))
			if err != nil {
				return fmt.Errorf("read stdin: %w", err)
			}
			k, err := auth.ParsePrivateKey(strings.TrimSpace(string(b)))
			if err != nil {
				return fmt.Errorf("stdin: %w", err)
			}
			_, err = fmt.Fprintln(a.stdio.Out, k.Public())
			return err
		},
	}
}
