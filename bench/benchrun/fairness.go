//go:build linux

package main

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// farIperfRival is the far host's second iperf3 server: the fairness
// scenario's direct TCP flow, which runs beside each path's.
const farIperfRival = 5202

// fairnessTable measures how each path shares a bottleneck with one direct
// TCP flow with CUBIC (Linux's default controller): both run at once
// through a token bucket (tc tbf) of o.fairRate at the far end of the
// link, once with each buffer in o.fairBuffers, across the loss scenario's
// veth pair (no round trip to speak of) and across the WAN scenario's wire
// (o.wanDelay each way). A path that takes what it should gets half; the
// direct row (two TCP flows) shows what this link gives two equals.
//
// Without root, ip or tc the scenario is skipped and says why; any other
// failure is an error, so that the smoke run in CI notices a broken
// scenario.
func (e *env) fairnessTable(o options) (string, error) {
	d := 2 * o.duration
	var b strings.Builder
	for _, link := range []struct {
		name, about string
		host        func() (*farHost, error)
	}{
		{"veth", "veth pair, no delay", newFarHost},
		{"wan", fmt.Sprintf("the WAN scenario's wire, %v each way", o.wanDelay), func() (*farHost, error) { return newWANHost(o.wanDelay) }},
	} {
		fmt.Fprintf(&b, "### Sharing a %s bottleneck with one direct TCP flow, CUBIC (%s; iperf3 1 conn up beside iperf3 1 conn up, %v, Mbit/s)\n\n", o.fairRate, link.about, d)
		var table string
		skip, err := e.withFarHost(farScenario{
			name: "fairness", tools: []string{"ip", "tc"}, install: "iproute2",
			rootFor: "network namespaces and a qdisc", creates: "the fairness scenario creates a network namespace and a qdisc",
			host: link.host,
		}, func(far *farHost, paths []*path) (err error) {
			table, err = fairnessRows(o, far, oneFlow(paths), d)
			return err
		})
		if err != nil {
			return "", err
		}
		b.WriteString(skip + table)
	}
	return b.String(), nil
}

// fairnessRows runs, for each buffer and path, the path's bulk flow and
// the direct one at the same time, and returns the table's rows: each
// the run with the median share.
func fairnessRows(o options, far *farHost, paths []*path, d time.Duration) (string, error) {
	rival := net.JoinHostPort(far.farIP, strconv.Itoa(farIperfRival))
	if err := far.start(os.Environ(), "iperf3", "-s", "-B", far.farIP, "-p", strconv.Itoa(farIperfRival)); err != nil {
		return "", err
	}
	if err := waitTCP(rival); err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| path | buffer | path's Mbit/s | direct TCP's Mbit/s | path's share |\n|---|---|---|---|---|\n")
	// The bottleneck is a token bucket (tc tbf) on the far host's side of
	// the link, where traffic arriving from here goes through an ifb
	// device. On this side, in the senders' own host, it would not be a
	// fair test: the kernel holds a TCP socket's packets back while they
	// wait in a local queue (TCP small queues) and reads a drop there as
	// congestion at once, while a UDP sender only loses the packet. A burst
	// of 32 KB lets the bucket pass a few packets at once, as a router's
	// interface would. Only the bulk flows' direction (up) is limited.
	ifb := far.farDev + "i"
	if err := runSteps([][]string{
		{"ip", "-n", far.ns, "link", "add", ifb, "type", "ifb"},
		{"ip", "-n", far.ns, "link", "set", ifb, "up"},
		{"tc", "-n", far.ns, "qdisc", "add", "dev", far.farDev, "handle", "ffff:", "ingress"},
		{"tc", "-n", far.ns, "filter", "add", "dev", far.farDev, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb},
	}); err != nil {
		return "", err
	}
	// raw quic-go runs quic-go's NewReno, as the quicport LPF row does.
	paths = slices.DeleteFunc(slices.Clone(paths), func(p *path) bool { return p.name == "raw quic-go" })
	type result struct{ mine, theirs float64 }
	share := func(r result) float64 { return r.mine / max(r.mine+r.theirs, 1) }
	for _, buffer := range o.fairBuffers {
		if err := runSteps([][]string{{"tc", "-n", far.ns, "qdisc", "replace", "dev", ifb, "root", "tbf", "rate", o.fairRate, "burst", "32kb", "limit", buffer}}); err != nil {
			return "", err
		}
		rs := make([][]result, len(paths))
		roundThePaths(o.runs, paths, "fairness ("+buffer+" buffer)", func(i int, p *path) {
			a, c, err := sideBySide(p.iperf, rival, d)
			if err != nil {
				progress("%s beside TCP, %s buffer: %v", p.name, buffer, err)
				return
			}
			rs[i] = append(rs[i], result{a / 1e6, c / 1e6})
		})
		for i, p := range paths {
			// The run with the median share, so that a row's two rates
			// come from one run.
			slices.SortFunc(rs[i], func(x, y result) int { return cmp.Compare(share(x), share(y)) })
			var r result
			if len(rs[i]) > 0 {
				r = rs[i][len(rs[i])/2]
			}
			progress("%s beside TCP, %s buffer: %.0f / %.0f Mbit/s, share %.2f", p.name, buffer, r.mine, r.theirs, share(r))
			fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %.2f |\n", p.name, buffer, r.mine, r.theirs, share(r))
		}
	}
	b.WriteString("\n")
	return b.String(), nil
}

// sideBySide runs iperf3 through entry and directly to rival at the same
// time, and returns both received bit rates. Both iperf3 clients' TCP is
// CUBIC, Linux's default, whatever this machine's default is (bbr on some):
// for the direct flows that is the controller under test; through a
// tunnel it only carries the bytes to the tunnel's entrance. (ssh -L's TCP
// connection is ssh's own and runs this machine's default.)
func sideBySide(entry, rival string, d time.Duration) (path, direct float64, err error) {
	var wg sync.WaitGroup
	var pathErr error
	wg.Go(func() { path, pathErr = iperf3(entry, d, "-C", "cubic") })
	direct, err = iperf3(rival, d, "-C", "cubic")
	wg.Wait()
	if pathErr != nil {
		return 0, 0, pathErr
	}
	return path, direct, err
}
