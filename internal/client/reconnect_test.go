package client

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/proto"
)

var errDown = errors.New("server down")

// attempts records when loop called once and answers from a script.
type attempts struct {
	at      []time.Time
	results []error // one per call; beyond the end, errDown
	up      []bool
}

func (a *attempts) once(context.Context) (bool, error) {
	n := len(a.at)
	a.at = append(a.at, time.Now())
	if n < len(a.results) {
		return a.up[n], a.results[n]
	}
	return false, errDown
}

func newClient(cfg Config) *client {
	cfg.setDefaults()
	cfg.Logger = slog.New(slog.DiscardHandler)
	return &client{cfg: cfg, log: cfg.Logger}
}

func TestBackoffGrowsToCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClient(Config{Reconnect: true, ReconnectDelay: time.Second, MaxAttempts: 12})
		var a attempts
		err := c.loop(t.Context(), c.log, a.once, nil)
		if err == nil || !strings.Contains(err.Error(), "giving up after 12 reconnection attempts") {
			t.Fatalf("loop error = %v", err)
		}
		if len(a.at) != 13 {
			t.Fatalf("%d attempts, want 1 + 12 retries", len(a.at))
		}
		want := time.Second
		for i := 1; i < len(a.at); i++ {
			gap := a.at[i].Sub(a.at[i-1])
			lo, hi := time.Duration(float64(want)*0.8), time.Duration(float64(want)*1.2)
			if hi > MaxReconnectDelay {
				hi = MaxReconnectDelay
			}
			if gap < lo || gap > hi {
				t.Errorf("wait before attempt %d = %v, want %v..%v", i+1, gap, lo, hi)
			}
			want = min(want*2, MaxReconnectDelay)
		}
	})
}

func TestBackoffResetsAfterSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClient(Config{Reconnect: true, ReconnectDelay: time.Second, MaxAttempts: 4})
		// Three failures (waits ~1, 2, 4 s), then a session that was up
		// and ended, then failures again: the wait starts over at ~1 s.
		a := attempts{
			results: []error{errDown, errDown, errDown, ErrServerClosed},
			up:      []bool{false, false, false, true},
		}
		c.loop(t.Context(), c.log, a.once, nil)
		if gap := a.at[4].Sub(a.at[3]); gap > 1200*time.Millisecond {
			t.Errorf("wait after an established session = %v, want about 1s", gap)
		}
		// 4 attempts up to the session's end, then 4 reconnection attempts.
		if len(a.at) != 4+4 {
			t.Errorf("%d attempts, want the failure count to restart after the session", len(a.at))
		}
	})
}

func TestPermanentErrorsAreNotRetried(t *testing.T) {
	for _, err := range []error{
		&auth.RejectedError{ByServer: true, Reason: "bad key"},
		&ForwardError{Status: proto.StatusPermissionDenied},
		&ForwardError{Status: proto.StatusPortInUse},
		&permanentError{errors.New("untrusted")},
	} {
		synctest.Test(t, func(t *testing.T) {
			c := newClient(Config{Reconnect: true})
			a := attempts{results: []error{err}, up: []bool{false}}
			if got := c.loop(t.Context(), c.log, a.once, nil); got != err || len(a.at) != 1 {
				t.Errorf("%v: loop returned %v after %d attempts, want it at once", err, got, len(a.at))
			}
		})
	}
}

// A port still in use after this client had it (our own old session, not
// yet timed out on the server) is retried; on first use it is not.
func TestPortInUseRetriedOnlyAfterSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inUse := &ForwardError{Status: proto.StatusPortInUse}
		c := newClient(Config{Reconnect: true, MaxAttempts: 3})
		a := attempts{results: []error{ErrServerClosed, inUse, inUse}, up: []bool{true, false, false}}
		err := c.loop(t.Context(), c.log, a.once, nil)
		if len(a.at) != 4 || !strings.Contains(err.Error(), "giving up") {
			t.Errorf("%d attempts, error %v; want port-in-use retried until the attempts run out", len(a.at), err)
		}
	})
}

func TestReconnectOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClient(Config{Reconnect: false})
		a := attempts{results: []error{ErrServerClosed}, up: []bool{true}}
		if err := c.loop(t.Context(), c.log, a.once, nil); !errors.Is(err, ErrServerClosed) || len(a.at) != 1 {
			t.Errorf("loop = %v after %d attempts", err, len(a.at))
		}
	})
}

// A network change during the wait (an address or route added) brings the
// next attempt forward to networkSettle after it, and the backoff starts
// over; a change from before the wait does not count.
func TestNetworkChangeEndsTheWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClient(Config{Reconnect: true, ReconnectDelay: 30 * time.Second, MaxAttempts: 2})
		changed := make(chan struct{}, 1)
		changed <- struct{}{} // before the first wait: stale
		var a attempts
		go func() {
			time.Sleep(40 * time.Second) // within the second wait (~60 s)
			changed <- struct{}{}
		}()
		c.loop(t.Context(), c.log, a.once, changed)
		if len(a.at) != 3 {
			t.Fatalf("%d attempts, want 1 + 2 retries", len(a.at))
		}
		if gap := a.at[1].Sub(a.at[0]); gap < 24*time.Second || gap > 36*time.Second {
			t.Errorf("first wait = %v, want about 30s: a change from before the wait must not end it", gap)
		}
		if got, want := a.at[2], a.at[0].Add(40*time.Second+networkSettle); !got.Equal(want) {
			t.Errorf("second retry at %v after the start, want %v: networkSettle after the change", got.Sub(a.at[0]), want.Sub(a.at[0]))
		}
	})
}

// After a change cuts a wait short, the backoff starts over from
// ReconnectDelay.
func TestNetworkChangeResetsTheBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClient(Config{Reconnect: true, ReconnectDelay: 10 * time.Second, MaxAttempts: 5})
		changed := make(chan struct{}, 1)
		var a attempts
		go func() {
			// Waits of ~10, 20, 40 s: the change falls in the third.
			time.Sleep(45 * time.Second)
			changed <- struct{}{}
		}()
		c.loop(t.Context(), c.log, a.once, changed)
		if len(a.at) != 6 {
			t.Fatalf("%d attempts, want 1 + 5 retries", len(a.at))
		}
		if gap := a.at[4].Sub(a.at[3]); gap < 8*time.Second || gap > 12*time.Second {
			t.Errorf("wait after the early attempt = %v, want about 10s (the backoff started over)", gap)
		}
	})
}

// Within networkQuiet of an early attempt, network changes are ignored: a
// host whose routes keep changing does not retry every second.
func TestNetworkChangesAreIgnoredRightAfterAnEarlyAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newClient(Config{Reconnect: true, ReconnectDelay: 30 * time.Second, MaxAttempts: 2})
		changed := make(chan struct{}, 1)
		var a attempts
		go func() {
			time.Sleep(5 * time.Second) // in the first wait: attempt at 6 s
			changed <- struct{}{}
			time.Sleep(3 * time.Second) // 2 s into the second wait: ignored
			changed <- struct{}{}
		}()
		c.loop(t.Context(), c.log, a.once, changed)
		if len(a.at) != 3 {
			t.Fatalf("%d attempts, want 1 + 2 retries", len(a.at))
		}
		if gap := a.at[1].Sub(a.at[0]); gap != 5*time.Second+networkSettle {
			t.Errorf("first wait = %v, want %v", gap, 5*time.Second+networkSettle)
		}
		if gap := a.at[2].Sub(a.at[1]); gap < 24*time.Second {
			t.Errorf("second wait = %v, want the backoff's ~30s: a change right after an early attempt must not cut it short", gap)
		}
	})
}

// Every session's loop hears of a network change, and a burst of changes
// never blocks the watcher.
func TestFanOutReachesEverySession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		changed := make(chan struct{})
		outs := fanOut(t.Context(), changed, 3)
		for range 5 { // a burst: more than each buffer holds
			changed <- struct{}{}
		}
		synctest.Wait()
		for i, o := range outs {
			select {
			case <-o:
			default:
				t.Errorf("session %d did not hear of the change", i+1)
			}
			select {
			case <-o:
				t.Errorf("session %d heard of one burst twice", i+1)
			default:
			}
		}
		if got := fanOut(t.Context(), nil, 2); got[0] != nil || got[1] != nil {
			t.Error("a client that does not watch the network got channels to wait on")
		}
	})
}
