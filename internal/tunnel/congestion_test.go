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
	for _, name := range []string{"bbr", "cubic", "newreno"} {
		if err := c.Set(name); err != nil || c.String() != name {
			t.Errorf("Set(%q) = %v, reads %q", name, err, c)
		}
	}
	err := c.Set("vegas")
	if err == nil || !strings.Contains(err.Error(), "newreno") || !strings.Contains(err.Error(), "cubic") || !strings.Contains(err.Error(), "bbr") {
		t.Errorf("Set(vegas) = %v, want an error naming the choices", err)
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
	Cubic.Apply(qc)
	if qc.Congestion == nil {
		t.Fatal("Cubic left quic-go's own controller (NewReno) in place")
	}
	if s := qc.Congestion(nil, 1200); s == nil || s.GetCongestionWindow() == 0 {
		t.Errorf("Cubic's factory makes %v", s)
	} else if _, ok := s.(*bbr.Sender); ok {
		t.Error("Cubic's factory makes a BBR sender")
	}
	NewReno.Apply(qc)
	if qc.Congestion != nil {
		t.Error("NewReno kept a custom controller")
	}
}
