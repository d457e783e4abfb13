//go:build !linux

package client

import (
	"context"
	"log/slog"
)

// watchNetwork reports nothing here: the reconnect loop's backoff alone
// decides when to try again.
func watchNetwork(ctx context.Context, log *slog.Logger) <-chan struct{} { return nil }
