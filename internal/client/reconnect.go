package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/quicport/quicport/internal/proto"
)

// MaxReconnectDelay caps the wait between reconnection attempts.
const MaxReconnectDelay = 60 * time.Second

// networkSettle is how long the client waits after this machine gains an
// address or a route before it tries again: a network that comes up
// announces itself in a burst (link, addresses, then routes).
// networkQuiet is how long after one early attempt network changes are
// ignored, so that a host whose routes change all the time (containers
// coming and going) does not turn the backoff into a retry every second.
const (
	networkSettle = time.Second
	networkQuiet  = 10 * time.Second
)

// loop calls once until ctx ends, a session ends without error, the failure
// is permanent, or reconnecting is off or out of attempts. The wait between
// attempts grows exponentially (with jitter) from ReconnectDelay to
// MaxReconnectDelay and starts over after a session that was established.
// A report on changed (watchNetwork: an address or a route added) ends the
// wait early, after networkSettle, and starts the backoff over: the client
// comes back as soon as the laptop is online again, not up to a minute
// later. Within networkQuiet of such an early attempt, changes are ignored.
// log says what is happening.
func (c *client) loop(ctx context.Context, log *slog.Logger, once func(context.Context) (bool, error), changed <-chan struct{}) error {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     c.cfg.ReconnectDelay,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         MaxReconnectDelay,
	}
	b.Reset()
	failures := 0
	wasUp := false
	var lastEarly time.Time // when a network change last cut a wait short
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
		log.Warn("tunnel down; reconnecting", "in", delay.Round(time.Millisecond).String(), "attempt", failures, "err", err.Error())
		watch := changed
		if time.Since(lastEarly) < networkQuiet {
			watch = nil
		}
		early, ok := c.wait(ctx, log, delay, watch)
		if !ok {
			return nil
		}
		if early {
			b.Reset()
			lastEarly = time.Now()
		}
	}
}

// wait waits delay, or networkSettle after a report on changed if that is
// sooner. It reports whether a change cut the wait short, and false in ok
// if ctx ended first. Only changes during the wait count: one from before
// it came before the attempt that just failed.
func (c *client) wait(ctx context.Context, log *slog.Logger, delay time.Duration, changed <-chan struct{}) (early, ok bool) {
	select {
	case <-changed:
	default:
	}
	deadline := time.Now().Add(delay)
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
			return early, true
		case <-changed:
			changed = nil // the rest of the burst changes nothing
			if time.Until(deadline) > networkSettle {
				log.Info("the network changed; reconnecting", "in", networkSettle.String())
				timer.Reset(networkSettle)
				early = true
			}
		case <-ctx.Done():
			return false, false
		}
	}
}

// signal sends on c unless a report is already waiting there: one report
// waiting is as good as two.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func portInUse(err error) bool {
	var fe *ForwardError
	return errors.As(err, &fe) && fe.Status == proto.StatusPortInUse
}
