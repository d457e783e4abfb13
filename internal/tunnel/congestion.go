package tunnel

import (
	"fmt"

	"github.com/quic-go/quic-go"

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
	// its window at each loss and grows it back by a packet per round
	// trip. The default.
	NewReno Congestion = "newreno"
	// BBR (version 1, package bbr) paces at the bandwidth it measures and
	// does not slow down for loss: several times NewReno's throughput
	// across a path that drops packets at random, but it can crowd out
	// loss-based flows (TCP's CUBIC) at a bottleneck with a small buffer.
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
	case NewReno, BBR:
		*c = Congestion(s)
		return nil
	}
	return fmt.Errorf("%q is not a congestion controller: use newreno (the default) or bbr", s)
}

// Type names the flag's value in --help.
func (*Congestion) Type() string { return "newreno|bbr" }

// Apply makes qc's connections use the controller.
func (c Congestion) Apply(qc *quic.Config) {
	if c == BBR {
		qc.Congestion = bbr.New
	} else {
		qc.Congestion = nil
	}
}
