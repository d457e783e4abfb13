package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/quicport/quicport/internal/proto"
)

// MaxReconnectDelay caps the wait between reconnection attempts.
const MaxReconnectDelay = 60 * time.Second

// loop calls once until ctx ends, a session ends without error, the failure
// is permanent, or reconnecting is off or out of attempts. The wait between
// attempts grows exponentially (with jitter) from ReconnectDelay to
// MaxReconnectDelay and starts over after a session that was established.
func (c *client) loop(ctx context.Context, once func(context.Context) (bool, error)) error {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     c.cfg.ReconnectDelay,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         MaxReconnectDelay,
	}
	b.Reset()
	failures := 0
	wasUp := false
	for {
		established, err := once(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			return nil
		case errors.Is(err, errMigrate):
			// Make before break: the new session at once, no backoff.
			b.Reset()
			failures, wasUp = 0, true
			continue
		case IsPermanent(err) && !(wasUp && portInUse(err)):
			// A remote port still in use after we had it is most likely
			// held by our own previous session, which the server drops
			// within its idle timeout: that one is worth retrying.
			return err
		case !c.cfg.Reconnect:
			return err
		}
		if established {
			wasUp = true
			b.Reset()
			failures = 0
		}
		failures++
		if c.cfg.MaxAttempts > 0 && failures > c.cfg.MaxAttempts {
			return fmt.Errorf("giving up after %d reconnection attempts: %w", c.cfg.MaxAttempts, err)
		}
		delay := min(b.NextBackOff(), MaxReconnectDelay)
		c.log.Warn("tunnel down; reconnecting", "in", delay.Round(time.Millisecond).String(), "attempt", failures, "err", err.Error())
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil
		}
	}
}

func portInUse(err error) bool {
	var fe *ForwardError
	return errors.As(err, &fe) && fe.Status == proto.StatusPortInUse
}
