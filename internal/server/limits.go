package server

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
)

// Limit defaults. See Config for what each bounds.
const (
	DefaultMaxUnauthenticated = 256
	DefaultAuthFailureBurst   = 10
	DefaultAuthFailureRefill  = 10 * time.Second
	DefaultMaxConnsPerSession = 10000
	DefaultConnRate           = 1000 // new tunneled connections per second per session
	DefaultMaxSessionsPerKey  = 16
	// maxTrackedSources bounds the memory of the failure budget.
	maxTrackedSources = 1 << 16
)

// failureBudget refuses a source address that failed authentication too
// often: each address has a token bucket of AuthFailureBurst failures that
// refills one per AuthFailureRefill. An address with an empty bucket is
// refused before its TLS handshake, which costs the server almost nothing.
type failureBudget struct {
	burst  int
	refill time.Duration

	mu      sync.Mutex
	sources map[netip.Addr]*rate.Limiter
}

func newFailureBudget(burst int, refill time.Duration) *failureBudget {
	return &failureBudget{burst: burst, refill: refill, sources: map[netip.Addr]*rate.Limiter{}}
}

func sourceOf(a net.Addr) netip.Addr {
	if ua, ok := a.(*net.UDPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ua.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// failed charges one failure to addr.
func (b *failureBudget) failed(addr net.Addr) {
	src := sourceOf(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.sources[src]
	if l == nil {
		if len(b.sources) >= maxTrackedSources {
			b.prune()
		}
		l = rate.NewLimiter(rate.Every(b.refill), b.burst)
		b.sources[src] = l
	}
	l.Allow()
}

// refused reports whether addr has used up its budget.
func (b *failureBudget) refused(addr net.Addr) bool {
	src := sourceOf(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.sources[src]
	return l != nil && l.Tokens() < 1
}

// prune forgets sources whose budget is full again (and, if that is not
// enough, all of them: a flood of spoofed sources must not grow memory).
// The caller holds mu.
func (b *failureBudget) prune() {
	for src, l := range b.sources {
		if l.Tokens() >= float64(b.burst) {
			delete(b.sources, src)
		}
	}
	if len(b.sources) >= maxTrackedSources {
		clear(b.sources)
	}
}

// run prunes the budget periodically until ctx ends.
func (b *failureBudget) run(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.mu.Lock()
			b.prune()
			b.mu.Unlock()
		}
	}
}

// keySessions counts concurrent sessions per client key.
type keySessions struct {
	mu sync.Mutex
	n  map[string]int
}

// acquire takes a slot for key unless it already has max sessions.
func (k *keySessions) acquire(key string, max int) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.n == nil {
		k.n = map[string]int{}
	}
	if max > 0 && k.n[key] >= max {
		return false
	}
	k.n[key]++
	return true
}

func (k *keySessions) release(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.n[key]--; k.n[key] <= 0 {
		delete(k.n, key)
	}
}

// limitedConn throttles reads (and so everything relayed from it) to a
// session's bandwidth limiter.
type limitedConn struct {
	net.Conn
	ctx context.Context
	lim *rate.Limiter
}

func (c limitedConn) Read(p []byte) (int, error) {
	if len(p) > c.lim.Burst() {
		p = p[:c.lim.Burst()]
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if werr := c.lim.WaitN(c.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// CloseWrite half-closes the underlying TCP connection.
func (c limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// limitedStream throttles reads from a stream.
type limitedStream struct {
	*quic.Stream
	ctx context.Context
	lim *rate.Limiter
}

func (s limitedStream) Read(p []byte) (int, error) {
	if len(p) > s.lim.Burst() {
		p = p[:s.lim.Burst()]
	}
	n, err := s.Stream.Read(p)
	if n > 0 {
		if werr := s.lim.WaitN(s.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// newBandwidthLimiter returns a limiter for bytesPerSec, or nil for none.
func newBandwidthLimiter(bytesPerSec int64) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := max(int(bytesPerSec/10), 64<<10)
	return rate.NewLimiter(rate.Limit(bytesPerSec), burst)
}
