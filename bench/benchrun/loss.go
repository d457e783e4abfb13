//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The loss scenario needs what loopback cannot give: a link that loses
// packets the way a wire does. On loopback a TCP segment is up to 64 KB
// (the MTU is 65,536) and quic-go hands the kernel GSO batches of the same
// size, so dropping "1% of packets" would drop whole 64 KB bursts. Here a
// second network namespace plays the server's host, joined to this one by
// a veth pair with a 1,500-byte MTU and no segmentation offload
// (gso_max_segs 1), so every frame that crosses is one wire-sized packet,
// for TCP and QUIC alike; nftables drops a share of them at the ingress of
// each end.
const (
	// This namespace's end and the server host's end of each scenario's
	// link (RFC 2544 benchmarking range).
	nearIP, farIP       = "198.18.213.1", "198.18.213.2"
	wanNearIP, wanFarIP = "198.18.214.1", "198.18.214.2"

	farEcho, farIperf, farQuicport, farQuicportBBR, farQuicportWide, farSSH, farRawQUIC, farSingBox = 7000, 5201, 4433, 4434, 4435, 2222, 4440, 4450

	// wideWindow is the stream window of the "quicport LPF, bbr, 16M window" path
	// (--stream-window): what one transfer needs across a long path.
	wideWindow = "16M"
)

// farHost is the server side of the loss and WAN scenarios: its
// namespace, the link to it (a veth pair, or the wire's TUN devices) and
// the servers running there.
type farHost struct {
	ns   string
	link string // this namespace's end of the link
	// farDev is the far end of the link: the veth pair's other end, or
	// the wire's TUN device.
	farDev string
	table  string // the loss scenario's nftables table
	// nearIP is the link's address here, farIP the far host's.
	nearIP, farIP string
	procs         []*exec.Cmd
	cleanOnce     sync.Once
}

func newFarHost() (*farHost, error) {
	pid := os.Getpid()
	f := &farHost{ns: fmt.Sprintf("quicport-bench-%d", pid), link: fmt.Sprintf("qpb%d", pid), table: fmt.Sprintf("quicport_bench_%d", pid),
		nearIP: nearIP, farIP: farIP}
	peer := f.link + "f"
	f.farDev = peer
	steps := [][]string{
		{"ip", "netns", "add", f.ns},
		{"ip", "link", "add", f.link, "gso_max_segs", "1", "type", "veth", "peer", "name", peer, "gso_max_segs", "1", "netns", f.ns},
		{"ip", "addr", "add", f.nearIP + "/30", "dev", f.link},
		{"ip", "link", "set", f.link, "up"},
		{"ip", "-n", f.ns, "addr", "add", f.farIP + "/30", "dev", peer},
		{"ip", "-n", f.ns, "link", "set", peer, "up"},
		{"ip", "-n", f.ns, "link", "set", "lo", "up"},
	}
	if err := runSteps(steps); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// runSteps runs setup commands in order and stops at the first that fails,
// naming it and quoting its output.
func runSteps(steps [][]string) error {
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// prefix runs a command in the far namespace.
func (f *farHost) prefix() []string { return []string{"ip", "netns", "exec", f.ns} }

// start runs a server in the far namespace; it ends with the scenario.
// Its errors go to stderr, its chatter (iperf3's reports) nowhere.
func (f *farHost) start(env []string, args ...string) error {
	argv := slices.Concat(f.prefix(), args)
	cmd := helper(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	f.procs = append(f.procs, cmd)
	return nil
}

// setLoss makes each end of the link drop percent of the IP packets
// arriving on it. Packets are dropped at ingress, after the sender's
// segmentation: one decision per wire-sized packet, and silent to the
// sender (a drop at the output hook would fail its sendmsg instead).
func (f *farHost) setLoss(percent float64) error {
	per100k := int(percent*1000 + 0.5) // down to 0.001%
	table := func(dev string) string {
		return fmt.Sprintf("table netdev %s\ndelete table netdev %s\ntable netdev %s {\n\tchain in {\n\t\ttype filter hook ingress device %q priority 0; policy accept;\n\t\tmeta protocol ip numgen random mod 100000 < %d drop\n\t}\n}\n",
			f.table, f.table, f.table, dev, per100k)
	}
	for _, side := range []struct {
		argv   []string
		script string
	}{
		{[]string{"nft", "-f", "-"}, table(f.link)},
		{append(f.prefix(), "nft", "-f", "-"), table(f.farDev)},
	} {
		cmd := exec.Command(side.argv[0], side.argv[1:]...)
		cmd.Stdin = strings.NewReader(side.script)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft: %v: %s", err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// close stops the far servers (and the wire, whose TUN devices go with
// it) and removes the namespace, the veth pair and the drop rules. It may
// run twice (the deferred call, then an interrupt).
func (f *farHost) close() {
	f.cleanOnce.Do(func() {
		// Last started, first stopped: the wire (the first) carries the
		// servers' goodbyes.
		for _, c := range slices.Backward(f.procs) {
			stop(c)
		}
		if f.table != "" {
			_ = exec.Command("nft", "delete", "table", "netdev", f.table).Run()
		}
		_ = exec.Command("ip", "netns", "del", f.ns).Run()
		_ = exec.Command("ip", "link", "del", f.link).Run()
	})
}

// lossTable measures the tunnels across the lossy link, without loss and
// with o.loss percent: 64-byte round trips idle and under a bulk transfer
// on the same tunnel — where TCP's head-of-line blocking shows: a lost
// segment of the bulk transfer holds up every channel of the ssh
// connection until it is repaired, while a QUIC stream waits only for its
// own packets — and the bulk throughput itself (iperf3, 1 connection up).
//
// Without root, ip or nft the scenario is skipped and says why; any other
// failure is an error, so that the smoke run in CI notices a broken
// scenario.
func (e *env) lossTable(o options) (string, error) {
	title := fmt.Sprintf("### Across a lossy link (veth pair, MTU 1500, no offload; ping µs, 64 bytes, %d per run; iperf3 1 conn up, Gbit/s)\n\n", o.pings)
	var table string
	skip, err := e.withFarHost(farScenario{
		name: "loss", tools: []string{"ip", "nft"}, install: "iproute2 nftables",
		rootFor: "network namespaces", creates: "the loss scenario creates a network namespace",
		host: newFarHost,
	}, func(far *farHost, paths []*path) (err error) {
		table, err = lossRows(o, far, paths)
		return err
	})
	if skip != "" {
		return title + skip, nil
	}
	if err != nil {
		return "", err
	}
	return title + table, nil
}

// farScenario describes a scenario whose servers run on a far host: what
// it needs here and how its host is made.
type farScenario struct {
	name    string   // in messages: "loss", "wan"
	tools   []string // commands it needs
	install string   // the Debian packages that have them
	rootFor string   // what it needs root for
	creates string   // the same, said in the table
	host    func() (*farHost, error)
}

// withFarHost runs measure with the scenario's far host and the paths to
// it, and removes both afterwards — and on an interrupt, so that no
// namespace or rule outlives the run. Without the scenario's tools or
// root it returns, as skip, the table's text saying why (and tells the
// terminal); any other failure is an error, so that the smoke run in CI
// notices a broken scenario.
func (e *env) withFarHost(s farScenario, measure func(*farHost, []*path) error) (skip string, err error) {
	for _, need := range s.tools {
		if _, err := exec.LookPath(need); err != nil {
			progress("%s: skipped, %s not found (apt-get install %s)", s.name, need, s.install)
			return fmt.Sprintf("Skipped: %s not found (apt-get install %s).\n\n", need, s.install), nil
		}
	}
	if os.Geteuid() != 0 {
		progress("%s: skipped, needs root for %s", s.name, s.rootFor)
		return fmt.Sprintf("Skipped: %s and needs root.\n\n", s.creates), nil
	}
	far, err := s.host()
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.name, err)
	}
	onInterrupt(far.close)
	defer far.close()
	paths, err := e.farPaths(far)
	defer func() {
		for _, p := range paths {
			p.close()
		}
	}()
	if err == nil {
		err = measure(far, paths)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", s.name, err)
	}
	return "", nil
}

// lossRows measures paths through far without loss and with o.loss
// percent, and returns the table's rows.
func lossRows(o options, far *farHost, paths []*path) (string, error) {
	type row struct{ idle50, idle99, bulk50, bulk99, gbps float64 }
	rows := map[string]row{}
	key := func(name string, loss float64) string { return fmt.Sprintf("%s@%g", name, loss) }
	levels := []float64{0, o.loss}
	for _, loss := range levels {
		if err := far.setLoss(loss); err != nil {
			return "", err
		}
		rts := make([]rttRuns, len(paths))
		gbps := make([][]float64, len(paths))
		roundThePaths(o.runs, paths, fmt.Sprintf("%g%% loss", loss), func(i int, p *path) {
			what := fmt.Sprintf("%s, %g%% loss", p.name, loss)
			rts[i].add(p.echo, o.pings, what, o.quiet)
			if bps, err := iperf3(p.iperf, o.duration); err == nil {
				gbps[i] = append(gbps[i], bps/1e9)
			} else {
				progress("%s iperf3: %v", what, err)
			}
		})
		for i, p := range paths {
			rt := rts[i]
			rows[key(p.name, loss)] = row{median(rt.idle50), median(rt.idle99), median(rt.bulk50), median(rt.bulk99), median(gbps[i])}
			progress("%s, %g%% loss: %+v", p.name, loss, rows[key(p.name, loss)])
		}
	}
	var b strings.Builder
	b.WriteString("| path | loss | rtt p50 | rtt p99 | rtt p50 under bulk | rtt p99 under bulk (ratio to ssh -L) | bulk Gbit/s (ratio to ssh -L) |\n|---|---|---|---|---|---|---|\n")
	for _, loss := range levels {
		ssh := rows[key("ssh -L", loss)]
		for _, p := range paths {
			r := rows[key(p.name, loss)]
			fmt.Fprintf(&b, "| %s | %g%% | %.0f | %.0f | %.0f | %.0f (%s) | %.2f (%s) |\n", p.name, loss, r.idle50, r.idle99, r.bulk50, r.bulk99, ratio(r.bulk99, ssh.bulk99), r.gbps, ratio(r.gbps, ssh.gbps))
		}
	}
	b.WriteString("\n")
	return b.String(), nil
}

// farPaths starts the far host's servers (echo, iperf3, quicport, sshd and
// raw quic-go's server) and the near ends of each path to its echo and
// iperf3 servers.
func (e *env) farPaths(far *farHost) ([]*path, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	echo := net.JoinHostPort(far.farIP, strconv.Itoa(farEcho))
	iperf := net.JoinHostPort(far.farIP, strconv.Itoa(farIperf))
	qpServer := net.JoinHostPort(far.farIP, strconv.Itoa(farQuicport))
	farDir := filepath.Join(e.dir, far.ns)
	if err := far.start(os.Environ(), self, "-serve-echo", echo); err != nil {
		return nil, err
	}
	if err := far.start(os.Environ(), "iperf3", "-s", "-B", far.farIP, "-p", strconv.Itoa(farIperf)); err != nil {
		return nil, err
	}
	if err := far.start(quicportEnvIn(farDir), e.quicport, "--log-level", "warn", "server", "--no-api", "--listen", qpServer, "--psk-file", e.psk); err != nil {
		return nil, err
	}
	// The same tunnel with BBR on both ends (--congestion bbr): each end's
	// controller governs what it sends.
	qpServerBBR := net.JoinHostPort(far.farIP, strconv.Itoa(farQuicportBBR))
	if err := far.start(quicportEnvIn(farDir+"-bbr"), e.quicport, "--log-level", "warn", "server", "--no-api", "--listen", qpServerBBR, "--psk-file", e.psk, "--congestion", "bbr"); err != nil {
		return nil, err
	}
	// BBR again with a wider stream window on both ends: each end's
	// window bounds what it receives.
	qpServerWide := net.JoinHostPort(far.farIP, strconv.Itoa(farQuicportWide))
	if err := far.start(quicportEnvIn(farDir+"-wide"), e.quicport, "--log-level", "warn", "server", "--no-api", "--listen", qpServerWide, "--psk-file", e.psk, "--congestion", "bbr", "--stream-window", wideWindow); err != nil {
		return nil, err
	}
	sshd, err := e.runSSHD(far.prefix(), far.farIP, farSSH)
	if sshd != nil {
		far.procs = append(far.procs, sshd)
	}
	if err != nil {
		return nil, err
	}
	for _, addr := range []string{echo, iperf} {
		if err := waitTCP(addr); err != nil {
			return nil, err
		}
	}
	paths := []*path{
		direct(),
		e.quicportPath("quicport LPF", qpServer, false),
		e.twoConnections(qpServer, false),
		e.quicportPath("quicport LPF, bbr", qpServerBBR, false, "--congestion", "bbr"),
		e.quicportPath("quicport LPF, bbr, "+wideWindow+" window", qpServerWide, false, "--congestion", "bbr", "--stream-window", wideWindow),
		e.ssh("ssh -L", "-L", "", far.farIP, farSSH),
		e.rawQUIC(far.prefix(), far.farIP, farRawQUIC),
	}
	paths = append(paths, e.singBoxPaths(far.prefix(), far.farIP, farSingBox)...)
	for _, p := range paths {
		progress("%s: setting up %s", far.ns, p.name)
		if p.iperf, err = p.setup(iperf); err != nil {
			return paths, fmt.Errorf("%s: %w", p.name, err)
		}
		if p.echo, err = p.setup(echo); err != nil {
			return paths, fmt.Errorf("%s: %w", p.name, err)
		}
		// The quicport client listens before its tunnel is up: a first
		// round trip proves the path works end to end.
		if _, err := pingPong(p.echo, 1); err != nil {
			return paths, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return paths, nil
}
