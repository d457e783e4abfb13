package tunnel

import (
	"strings"
	"testing"

	"github.com/quic-go/quic-go"

	"github.com/quicport/quicport/internal/bbr"
)

func TestCongestionFlag(t *testing.T) {
	var c Congestion
	if c.String() != "newreno" {
		t.Errorf("zero value reads %q, want newreno", c)
	}
	for _, name := range []string{"bbr", "newreno"} {
		if err := c.Set(name); err != nil || c.String() != name {
			t.Errorf("Set(%q) = %v, reads %q", name, err, c)
		}
	}
	err := c.Set("cubic")
	if err == nil || !strings.Contains(err.Error(), "newreno") || !strings.Contains(err.Error(), "bbr") {
		t.Errorf("Set(cubic) = %v, want an error naming the choices", err)
	}
	if c != NewReno {
		t.Errorf("a refused name changed the value to %q", c)
	}
}

func TestCongestionApply(t *testing.T) {
	qc := &quic.Config{}
	BBR.Apply(qc)
	if qc.Congestion == nil {
		t.Fatal("BBR left quic-go's own controller in place")
	}
	if _, ok := qc.Congestion(nil, 1200).(*bbr.Sender); !ok {
		t.Errorf("BBR's factory makes a %T, want *bbr.Sender", qc.Congestion(nil, 1200))
	}
	NewReno.Apply(qc)
	if qc.Congestion != nil {
		t.Error("NewReno kept a custom controller")
	}
}
