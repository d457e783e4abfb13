package tunnel

import (
	"fmt"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/congestion"

	"github.com/quicport/quicport/internal/bbr"
)

// Congestion names the congestion controller of the QUIC connections an
// endpoint sends on. It is a flag value (--congestion): each side picks
// the controller for the data it sends, so a download follows the
// server's choice and an upload the client's.
type Congestion string

// The congestion controllers quicport offers.
const (
	// NewReno is quic-go's own controller (RFC 9002): it takes 0.7 of
	// its window at each loss and grows it back by one packet per round
	// trip. The default.
	NewReno Congestion = "newreno"
	// Cubic is quic-go's CUBIC (RFC 9438), the controller of Linux TCP:
	// the same cut at a loss, but it grows back in seconds where NewReno
	// takes minutes on a long, fast path, so beside TCP flows it takes
	// its share instead of a sliver of it.
	Cubic Congestion = "cubic"
	// BBR (version 1, package bbr) paces at the bandwidth it measures and
	// does not slow down for loss: several times NewReno's throughput
	// across a path that drops packets at random, but more than its fair
	// share beside loss-based flows on a shallow-buffered bottleneck.
	BBR Congestion = "bbr"
)

// String returns the name, "newreno" for the zero value.
func (c Congestion) String() string {
	if c == "" {
		return string(NewReno)
	}
	return string(c)
}

// Set parses a name, for the flag.
func (c *Congestion) Set(s string) error {
	switch Congestion(s) {
	case NewReno, Cubic, BBR:
		*c = Congestion(s)
		return nil
	}
	return fmt.Errorf("%q is not a congestion controller: use newreno (the default), cubic or bbr", s)
}

// Type names the flag's value in --help.
func (*Congestion) Type() string { return "newreno|cubic|bbr" }

// Apply makes qc's connections use the controller.
func (c Congestion) Apply(qc *quic.Config) {
	switch c {
	case BBR:
		qc.Congestion = bbr.New
	case Cubic:
		qc.Congestion = congestion.NewCubic
	default:
		qc.Congestion = nil
	}
}
