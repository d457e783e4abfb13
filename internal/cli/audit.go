package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/quicport/quicport/internal/audit"
)

func (a *app) auditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Work with the server's audit log",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "verify FILE",
		Short: "Check an audit log's hash chain and report the first broken line",
		Long: `Check that no line of an audit log (quicport server --audit-log) was edited,
removed or reordered: each line carries the SHA-256 of the line before it.

The hash of the last line is printed: keep it elsewhere (or compare it with a
copy) to detect an edit or removal of the final lines too.`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			n, last, err := audit.Verify(f)
			if err != nil {
				if errors.Is(err, audit.ErrBroken) {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				return fmt.Errorf("read %s: %w", args[0], err)
			}
			_, err = fmt.Fprintf(a.stdio.Out, "%s: %d lines, hash chain intact\nlast line sha256 %s\n", args[0], n, last)
			return err
		},
	})
	return cmd
}
