//go:build linux

package main

import (
	"fmt"
	"strings"
	"time"
)

// wanTable measures the tunnels across a link with a round-trip time (the
// wire, see serveWire): 64-byte round trips, connection setup, and bulk
// throughput (iperf3, 1 connection up). On loopback the round trip is a
// few microseconds and every measure is CPU work; across a real path the
// round trips a protocol spends dominate: ssh -L waits one for the
// channel to open before a byte moves, a quicport stream carries its
// header and the first bytes at once, and a direct connection pays TCP's
// handshake. Throughput shows whether the flow-control windows cover the
// path's bandwidth-delay product.
//
// Without root or ip the scenario is skipped and says why; any other
// failure is an error, so that the smoke run in CI notices a broken
// scenario.
func (e *env) wanTable(o options) (string, error) {
	// At tens of milliseconds per round trip the loopback counts would take
	// minutes per path; these still give a p99 of something.
	pings, setupsN := min(o.pings, 300), min(o.setups, 100)
	lossy := ""
	if o.wanLoss > 0 {
		lossy = fmt.Sprintf(", %g%% random loss each way", o.wanLoss)
	}
	title := fmt.Sprintf("### Across a WAN-like link (%v each way%s, MTU 1500; ping µs, 64 bytes, %d per run; setup µs, %d sequential connect + 1-byte echo; iperf3 1 conn up, Gbit/s)\n\n", o.wanDelay, lossy, pings, setupsN)
	var table string
	skip, err := e.withFarHost(farScenario{
		name: "wan", tools: []string{"ip"}, install: "iproute2",
		rootFor: "network namespaces and TUN devices", creates: "the WAN scenario creates a network namespace and TUN devices",
		host: func() (*farHost, error) { return newWANHost(o.wanDelay) },
	}, func(far *farHost, paths []*path) error {
		if o.wanLoss > 0 {
			if err := far.setLoss(o.wanLoss); err != nil {
				return err
			}
		}
		table = wanRows(o, far, oneFlow(paths), pings, setupsN)
		return nil
	})
	if skip != "" {
		return title + skip, nil
	}
	if err != nil {
		return "", err
	}
	return title + table, nil
}

// wanRows measures paths through far and returns the table's rows.
func wanRows(o options, far *farHost, paths []*path, pings, setupsN int) string {
	type row struct{ rtt50, rtt99, set50, set99, gbps float64 }
	rows := map[string]row{}
	type runs struct{ rtt50, rtt99, set50, set99, gbps []float64 }
	rs := make([]runs, len(paths))
	roundThePaths(o.runs, paths, "WAN", func(i int, p *path) {
		what, r := p.name+" across the WAN link", &rs[i]
		if rtts, err := pingPong(p.echo, pings); err == nil {
			r.rtt50, r.rtt99 = append(r.rtt50, micros(pct(rtts, 0.5))), append(r.rtt99, micros(pct(rtts, 0.99)))
		} else {
			progress("%s ping: %v", what, err)
		}
		if ds, err := setups(p.echo, setupsN); err == nil {
			r.set50, r.set99 = append(r.set50, micros(pct(ds, 0.5))), append(r.set99, micros(pct(ds, 0.99)))
		} else {
			progress("%s setup: %v", what, err)
		}
		if bps, err := iperf3(p.iperf, o.duration); err == nil {
			r.gbps = append(r.gbps, bps/1e9)
		} else {
			progress("%s iperf3: %v", what, err)
		}
	})
	for i, p := range paths {
		r := rs[i]
		rows[p.name] = row{median(r.rtt50), median(r.rtt99), median(r.set50), median(r.set99), median(r.gbps)}
		progress("%s across the WAN link: %+v", p.name, rows[p.name])
	}
	var b strings.Builder
	b.WriteString("| path | rtt p50 | rtt p99 | setup p50 (ratio to ssh -L) | setup p99 | bulk Gbit/s (ratio to ssh -L) |\n|---|---|---|---|---|---|\n")
	ssh := rows["ssh -L"]
	for _, p := range paths {
		r := rows[p.name]
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f (%s) | %.0f | %.2f (%s) |\n", p.name, r.rtt50, r.rtt99, r.set50, ratio(r.set50, ssh.set50), r.set99, r.gbps, ratio(r.gbps, ssh.gbps))
	}
	fmt.Fprintf(&b, "\nThe link's own round trip is %v; it dropped %d packets (at its TUN devices, either way).\n\n", 2*o.wanDelay, far.wireDrops())
	return b.String()
}

// wanDelayDefault is the WAN scenario's one-way delay: 20 ms round trip,
// a path within a continent.
const wanDelayDefault = 10 * time.Millisecond
