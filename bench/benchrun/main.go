//go:build linux

// Command benchrun measures quicport against a direct connection, OpenSSH
// port forwarding, a bare quic-go forwarder and sing-box's QUIC tunnels
// (Hysteria 2, TUIC), all on loopback in one invocation, and prints the
// results as markdown with ratios to the direct baseline and to `ssh -L`.
// bench/run is its entry point.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	runs     int
	duration time.Duration
	pings    int
	setups   int
	quiet    time.Duration // pause before idle measurements
	scale    int
	sessions int
	loss     float64
	wanDelay time.Duration
	wanLoss  float64
	// fairRate is the fairness scenario's bottleneck (a tc rate, such
	// as 300mbit); fairBuffers the queue limits it runs with.
	fairRate    string
	fairBuffers []string
	udpRates    []string
	singBox     string
	out         string
	only        map[string]bool
}

func main() {
	var o options
	smoke := flag.Bool("smoke", false, "smallest configuration (seconds): proves the harness works, measures nothing useful")
	only := flag.String("only", "", "comma-separated scenarios: bulk,latency,setup,loss,wan,fairness,slow,udp,scale (default all)")
	flag.IntVar(&o.runs, "runs", 3, "runs per measurement; the table shows medians")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "duration of each throughput run")
	flag.IntVar(&o.pings, "pings", 2000, "ping-pongs per latency run")
	flag.IntVar(&o.setups, "setups", 1000, "sequential connections per setup run")
	flag.DurationVar(&o.quiet, "quiet", 3*time.Second, "pause before idle pings and setups, so that they meet a quiet tunnel (a quiet quicport end goes to one scheduler thread after 2s)")
	flag.IntVar(&o.scale, "scale", 10000, "concurrent idle connections in the scale scenario")
	flag.IntVar(&o.sessions, "sessions", 500, "client sessions in the scale scenario")
	flag.Float64Var(&o.loss, "loss", 1, "percent of packets the loss scenario's link drops in each direction (needs root, ip and nft)")
	flag.DurationVar(&o.wanDelay, "wan-delay", wanDelayDefault, "one-way delay of the WAN scenario's link (needs root, ip and /dev/net/tun)")
	flag.Float64Var(&o.wanLoss, "wan-loss", 0, "percent of packets the WAN scenario's link drops at random in each direction, such as 0.05 (needs nft)")
	flag.StringVar(&o.fairRate, "fair-rate", "300mbit", "the fairness scenario's bottleneck rate (tc tbf; needs root, ip and tc)")
	fairBuffers := flag.String("fair-buffers", "100kb,1mb", "comma-separated queue limits of the fairness scenario's bottleneck, one table row per path and limit")
	rates := flag.String("udp-rates", "100M,500M,1G", "UDP offered rates (iperf3 -b)")
	serveEcho := flag.String("serve-echo", "", "internal: run a TCP echo server on this address (a child process for the scale scenario, with its own fd limit)")
	flag.StringVar(&o.singBox, "sing-box", "", "sing-box binary for the other QUIC tunnel's rows (default: build "+singBoxModule+" once into the user cache; \"none\" leaves the rows out)")
	serveWireDevs := flag.String("serve-wire", "", "internal: create these two TUN devices (comma-separated) and carry packets between them after -wire-delay (the WAN scenario's link)")
	wireDelay := flag.Duration("wire-delay", wanDelayDefault, "internal: the one-way delay of -serve-wire")
	flag.StringVar(&o.out, "out", "", "also write the markdown to this file")
	flag.Parse()
	if *serveWireDevs != "" {
		if err := serveWire(strings.Split(*serveWireDevs, ","), *wireDelay); err != nil {
			fmt.Fprintln(os.Stderr, "benchrun:", err)
			os.Exit(1)
		}
		return
	}
	if *serveEcho != "" {
		raiseFDLimit()
		ln, err := net.Listen("tcp", *serveEcho)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchrun:", err)
			os.Exit(1)
		}
		serveEchoOn(ln)
		return
	}
	if *smoke {
		o.runs, o.duration, o.pings, o.setups, o.scale, o.sessions, o.quiet = 1, time.Second, 50, 20, 200, 10, 0
		*rates = "50M"
		*fairBuffers, _, _ = strings.Cut(*fairBuffers, ",")
	}
	if o.wanLoss < 0 || o.wanLoss > 100 || o.loss < 0 || o.loss > 100 {
		fmt.Fprintln(os.Stderr, "benchrun: -loss and -wan-loss are percentages from 0 to 100")
		os.Exit(2)
	}
	if o.wanDelay < 0 {
		fmt.Fprintln(os.Stderr, "benchrun: -wan-delay must not be negative (it is the one-way delay, for example 10ms)")
		os.Exit(2)
	}
	o.udpRates = strings.Split(*rates, ",")
	o.fairBuffers = strings.Split(*fairBuffers, ",")
	if *only != "" {
		o.only = map[string]bool{}
		for _, s := range strings.Split(*only, ",") {
			o.only[s] = true
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

func (o options) want(s string) bool { return o.only == nil || o.only[s] }

func run(o options) error {
	raiseFDLimit()
	catchInterrupts()
	env, err := newEnv()
	if err != nil {
		return err
	}
	defer env.close()
	if o.singBox != "none" {
		if err := env.findSingBox(o.singBox); err != nil {
			// Under CI a missing peer is a failure, never a silent skip.
			if os.Getenv("CI") == "true" {
				return err
			}
			progress("sing-box rows left out: %v", err)
		}
	}

	var md section
	fmt.Fprintf(&md, "Run %s on %s: %d CPUs, kernel %s, %s. Medians of %d runs; %s per throughput run.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), hostname(), runtime.NumCPU(), kernel(), runtime.Version(), o.runs, o.duration)

	iperf, err := env.iperfServer()
	if err != nil {
		return err
	}
	echo, err := echoServer()
	if err != nil {
		return err
	}
	defer echo.Close()
	echoAddr := echo.Addr().String()

	paths := []*path{
		direct(),
		env.quicportPath(quicportRows[0], env.qpServer, false),
		env.quicportPath(quicportRows[1], env.qpServer, true),
		env.twoConnections(env.qpServer, false),
		env.twoConnections(env.qpServer, true),
		env.ssh("ssh -L", "-L", "", "127.0.0.1", env.sshPort),
		env.ssh("ssh -L aes128-gcm", "-L", "aes128-gcm@openssh.com", "127.0.0.1", env.sshPort),
		env.ssh("ssh -R", "-R", "", "127.0.0.1", env.sshPort),
		env.rawQUIC(nil, "127.0.0.1", 0),
	}
	paths = append(paths, env.singBoxPaths(nil, "127.0.0.1", 0)...)
	for _, p := range paths {
		progress("setting up %s", p.name)
		if p.iperf, err = p.setup(iperf); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
		if p.echo, err = p.setup(echoAddr); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	defer func() {
		for _, p := range paths {
			p.close()
		}
	}()

	md.flush()
	if o.want("bulk") {
		md.add(bulkTable(o, paths))
	}
	if o.want("latency") || o.want("setup") {
		md.add(latencyTable(o, paths))
	}
	if o.want("loss") {
		t, err := env.lossTable(o)
		if err != nil {
			return err
		}
		md.add(t)
	}
	if o.want("wan") {
		t, err := env.wanTable(o)
		if err != nil {
			return err
		}
		md.add(t)
	}
	if o.want("fairness") {
		t, err := env.fairnessTable(o)
		if err != nil {
			return err
		}
		md.add(t)
	}
	if o.want("slow") {
		md.add(slowConsumer(o, paths[1]))
	}
	if o.want("udp") {
		t, err := env.udpTable(o, iperf)
		if err != nil {
			return err
		}
		md.add(t)
	}
	if o.want("scale") {
		t, err := env.scaleTable(o)
		if err != nil {
			return err
		}
		md.add(t)
	}
	if o.out != "" {
		return os.WriteFile(o.out, []byte(md.String()), 0o644)
	}
	return nil
}

// quicportRows are the loopback table's quicport paths, which the lines
// under the bulk and latency tables compare with the other QUIC tunnels.
var quicportRows = []string{"quicport LPF", "quicport RPF", "quicport LPF, 2 QUIC connections", "quicport RPF, 2 QUIC connections"}

// section collects the markdown and prints each table as soon as it is
// done, so a long run that fails late still shows what it measured.
type section struct {
	strings.Builder
	printed int
}

func (s *section) add(t string) { s.WriteString(t); s.flush() }

func (s *section) flush() {
	fmt.Print(s.String()[s.printed:])
	s.printed = s.Len()
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchrun: "+format+"\n", args...)
}

// path is one way from an entry address to a destination.
type path struct {
	name        string
	setup       func(dest string) (entry string, err error)
	iperf, echo string
	procs       []*exec.Cmd
	// shared are the far ends this path shares with others of its kind
	// (the quicport server, sshd): their processes count in what a round
	// trip costs (tunnelPIDs).
	shared  []int
	closers []func()
	// manyConns marks a path that differs from another only where several
	// connections share the tunnel (--quic-connections): scenarios that
	// measure one flow at a time leave it out (oneFlow).
	manyConns bool
}

// oneFlow returns paths without those that differ only when several
// connections share the tunnel.
func oneFlow(paths []*path) []*path {
	return slices.DeleteFunc(slices.Clone(paths), func(p *path) bool { return p.manyConns })
}

func (p *path) close() {
	for _, c := range p.closers {
		c()
	}
	for _, c := range p.procs {
		stop(c)
	}
}

func direct() *path {
	return &path{name: "direct", setup: func(dest string) (string, error) { return dest, nil }}
}

// iperf3 runs one iperf3 client test and returns the received bit rate.
// The iperf3 server takes one test at a time and may still be finishing
// the previous one: its "busy" is retried, up to five times a second
// apart, saying so. Through a tunnel that refusal can arrive as a reset
// of the control connection instead (the server closes with the client's
// first bytes unread, and the tunnel's far end passes the reset on),
// which is retried the same way.
func iperf3(entry string, d time.Duration, args ...string) (float64, error) {
	for try := 0; ; try++ {
		bps, err := iperf3Once(entry, d, args...)
		if err == nil || try == 5 || !serverBusy(err) {
			return bps, err
		}
		progress("%v; again in 1s", err)
		time.Sleep(time.Second)
	}
}

func serverBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "busy") || strings.Contains(msg, "control message: Connection reset by peer")
}

func iperf3Once(entry string, d time.Duration, args ...string) (float64, error) {
	host, port, _ := net.SplitHostPort(entry)
	a := append([]string{"-c", host, "-p", port, "-t", fmt.Sprint(d.Seconds()), "-J"}, args...)
	out, err := exec.Command("iperf3", a...).Output()
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return 0, fmt.Errorf("iperf3 %v: %v (%v)", a, err, jerr)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("iperf3 %v: %s", a, r.Error)
	}
	return r.End.SumReceived.BitsPerSecond, nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// roundThePaths calls measure for run 1 of every path, then run 2, and so
// on, runs times, so that a machine that slows down or speeds up during
// the invocation moves every path's median alike and the ratios stay
// fair. what names the runs in the progress lines ("latency run 2 of 3").
func roundThePaths(runs int, paths []*path, what string, measure func(i int, p *path)) {
	for run := range runs {
		progress("%s run %d of %d", what, run+1, runs)
		for i, p := range paths {
			measure(i, p)
		}
	}
}

func bulkTable(o options, paths []*path) string {
	cases := []struct {
		name string
		args []string
	}{{"1 conn, up", nil}, {"1 conn, down", []string{"-R"}}, {"8 conns, up", []string{"-P", "8"}}}
	xs := make([][][]float64, len(paths)) // path, case -> Gbit/s per run
	for i := range paths {
		xs[i] = make([][]float64, len(cases))
	}
	roundThePaths(o.runs, paths, "throughput", func(i int, p *path) {
		for j, c := range cases {
			bps, err := iperf3(p.iperf, o.duration, c.args...)
			if err != nil {
				progress("%s %s: %v", p.name, c.name, err)
				continue
			}
			xs[i][j] = append(xs[i][j], bps/1e9)
		}
	})
	res := map[string][]float64{} // path -> median Gbit/s per case
	for i, p := range paths {
		for j, c := range cases {
			res[p.name] = append(res[p.name], median(xs[i][j]))
			progress("%s, %s: %.2f Gbit/s", p.name, c.name, median(xs[i][j]))
		}
	}
	var b strings.Builder
	b.WriteString("### Throughput (iperf3, Gbit/s; ratio to direct / to ssh -L)\n\n| path |")
	for _, c := range cases {
		fmt.Fprintf(&b, " %s |", c.name)
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(cases)) + "\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "| %s |", p.name)
		for i := range cases {
			v := res[p.name][i]
			fmt.Fprintf(&b, " %.2f (%s / %s) |", v, ratio(v, res["direct"][i]), ratio(v, res["ssh -L"][i]))
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	// The bulk target compares quicport with the QUIC tunnels, not ssh.
	best := make([]float64, len(cases)) // the other QUIC tunnels' best per case
	for _, p := range paths {
		if strings.HasPrefix(p.name, "sing-box") {
			for i := range cases {
				best[i] = max(best[i], res[p.name][i])
			}
		}
	}
	for _, qp := range quicportRows {
		fmt.Fprintf(&b, "%s against raw quic-go / the best other QUIC tunnel:", qp)
		for i, c := range cases {
			fmt.Fprintf(&b, " %s %s / %s;", c.name, ratio(res[qp][i], res["raw quic-go"][i]), ratio(res[qp][i], best[i]))
		}
		b.WriteString("\n\n")
	}
	return b.String()
}

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// pingPong measures n round trips of 64 bytes on one connection.
func pingPong(entry string, n int) ([]time.Duration, error) {
	c, err := net.DialTimeout("tcp", entry, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.(*net.TCPConn).SetNoDelay(true)
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	msg, buf := make([]byte, 64), make([]byte, 64)
	rtts := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		rtts = append(rtts, time.Since(start))
	}
	return rtts, nil
}

// setups measures n sequential connections: connect, one byte out, its echo back.
func setups(entry string, n int) ([]time.Duration, error) {
	var out []time.Duration
	b := make([]byte, 1)
	for range n {
		start := time.Now()
		c, err := net.DialTimeout("tcp", entry, 10*time.Second)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(b); err != nil {
			c.Close()
			return nil, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			c.Close()
			return nil, err
		}
		out = append(out, time.Since(start))
		c.Close()
	}
	return out, nil
}

func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// bulkLoad pushes data through entry (an echo path) and discards the echo
// until ctx ends.
func bulkLoad(ctx context.Context, entry string) {
	c, err := net.Dial("tcp", entry)
	if err != nil {
		return
	}
	defer c.Close()
	go io.Copy(io.Discard, c)
	buf := make([]byte, 64<<10)
	go func() { <-ctx.Done(); c.Close() }()
	for ctx.Err() == nil {
		if _, err := c.Write(buf); err != nil {
			return
		}
	}
}

// rttRuns collects round-trip percentiles (µs) over runs, idle and while a
// bulk transfer shares the path.
type rttRuns struct {
	idle50, idle99, bulk50, bulk99 []float64
	// cpu is the CPU time (µs) the tunnel's processes spent per idle
	// round trip, both ends, user and system; only where idle is given
	// them.
	cpu []float64
}

// add measures one run through entry: pings idle (after quiet), then
// pings while bulkLoad pushes data through the same path. what names the
// path in progress messages.
func (r *rttRuns) add(entry string, pings int, what string, quiet time.Duration) {
	r.idle(entry, pings, what, quiet, nil)
	r.underBulk(entry, pings, what)
}

// idle measures pings through entry after the path has been quiet for
// quiet: a tunnel end that has just carried a bulk transfer schedules on
// every core for a while (internal/procs), and idle means idle. With
// pids, it also takes the CPU time their processes spent per round trip.
func (r *rttRuns) idle(entry string, pings int, what string, quiet time.Duration, pids []int) {
	time.Sleep(quiet)
	spent := cpuPer(pids)
	rtts, err := pingPong(entry, pings)
	if err != nil {
		progress("%s ping: %v", what, err)
		return
	}
	r.idle50, r.idle99 = append(r.idle50, micros(pct(rtts, 0.5))), append(r.idle99, micros(pct(rtts, 0.99)))
	if c, ok := spent(pings); ok {
		r.cpu = append(r.cpu, c)
	}
}

// underBulk measures pings through entry while bulkLoad pushes data
// through the same path.
func (r *rttRuns) underBulk(entry string, pings int, what string) {
	ctx, cancel := context.WithCancel(context.Background())
	go bulkLoad(ctx, entry)
	time.Sleep(200 * time.Millisecond)
	rtts, err := pingPong(entry, pings)
	cancel()
	if err == nil {
		r.bulk50, r.bulk99 = append(r.bulk50, micros(pct(rtts, 0.5))), append(r.bulk99, micros(pct(rtts, 0.99)))
	} else {
		progress("%s ping under load: %v", what, err)
	}
	time.Sleep(200 * time.Millisecond)
}

// runList formats one value per run: "301, 318, 335".
func runList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return strings.Join(parts, ", ")
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// pathRuns is one path's latency measures, one entry per run.
type pathRuns struct {
	rttRuns
	set50, set99 []float64 // setup percentiles (µs) per run
	// setCPU is the CPU time (µs) the tunnel's processes spent per
	// setup, both ends, user and system.
	setCPU []float64
}

// pairedLine compares each quicport row with ssh -L run by run: the ratio
// of quicport's setup p50 to ssh -L's in the same run, and of their idle
// overheads (p50 round trip minus direct's in that run). A slow or fast
// spell of the machine moves both sides of such a ratio, so their median
// and the count of runs below 1.00x say more than a ratio of medians
// when the two are close.
func pairedLine(paths []*path, runs []pathRuns) string {
	index := func(name string) int {
		return slices.IndexFunc(paths, func(p *path) bool { return p.name == name })
	}
	d, ssh := index("direct"), index("ssh -L")
	if d < 0 || ssh < 0 {
		return ""
	}
	paired := func(q pathRuns, value func(r pathRuns, run int) float64) string {
		// A run that failed on one path leaves its lists short, and
		// the runs no longer line up.
		n := len(runs[d].idle50)
		for _, l := range []int{len(q.set50), len(q.idle50), len(runs[ssh].set50), len(runs[ssh].idle50)} {
			if l != n {
				return "n/a (a run failed)"
			}
		}
		num, den := make([]float64, n), make([]float64, n)
		for run := range n {
			num[run], den[run] = value(q, run), value(runs[ssh], run)
		}
		rs := runRatios(num, den)
		below := 0
		for _, r := range rs {
			if r < 1 {
				below++
			}
		}
		if len(rs) == 0 {
			return "n/a"
		}
		return fmt.Sprintf("%.2fx (%.2fx–%.2fx, below 1.00x in %d of %d)", median(rs), slices.Min(rs), slices.Max(rs), below, len(rs))
	}
	setup := func(r pathRuns, run int) float64 { return r.set50[run] }
	overhead := func(r pathRuns, run int) float64 { return r.idle50[run] - runs[d].idle50[run] }
	var b strings.Builder
	b.WriteString("Paired with ssh -L run by run (median of the per-run ratios, their range, and the runs where quicport was ahead):")
	for i, p := range paths {
		if !slices.Contains(quicportRows, p.name) {
			continue
		}
		fmt.Fprintf(&b, " %s setup p50 %s, idle overhead %s;", p.name, paired(runs[i], setup), paired(runs[i], overhead))
	}
	b.WriteString("\n\n")
	return b.String()
}

// runRatios is num over den run by run, leaving out the runs where den is
// not positive.
func runRatios(num, den []float64) []float64 {
	var rs []float64
	for run, d := range den {
		if d > 0 {
			rs = append(rs, num[run]/d)
		}
	}
	return rs
}

// cpuLine says what an idle round trip or a setup (what, and the runs'
// values) costs each path's tunnel processes in CPU time, both ends
// together (the median of the runs), and for the quicport rows their
// ratio to ssh -L's run by run. On a small machine the processes of a
// round trip mostly run one after another, so this is much of the round
// trip's overhead, and it moves less than the round trip does with how
// fast the machine wakes a sleeping thread.
func cpuLine(paths []*path, runs []pathRuns, what string, values func(pathRuns) []float64) string {
	ssh := slices.IndexFunc(paths, func(p *path) bool { return p.name == "ssh -L" })
	var b strings.Builder
	fmt.Fprintf(&b, "CPU time of the tunnel's processes per %s (µs, both ends, user and system; median of the runs):", what)
	measured := false
	for i, p := range paths {
		v := values(runs[i])
		if len(v) == 0 {
			continue
		}
		measured = true
		fmt.Fprintf(&b, " %s %.0f", p.name, median(v))
		if ssh >= 0 && ssh != i && slices.Contains(quicportRows, p.name) && len(values(runs[ssh])) == len(v) {
			if rs := runRatios(v, values(runs[ssh])); len(rs) > 0 {
				fmt.Fprintf(&b, " (%.2fx of ssh -L's, run by run %.2fx–%.2fx)", median(rs), slices.Min(rs), slices.Max(rs))
			}
		}
		b.WriteString(";")
	}
	if !measured {
		return ""
	}
	b.WriteString("\n\n")
	return b.String()
}

func latencyTable(o options, paths []*path) string {
	type row struct{ idle50, idle99, bulk50, bulk99, set50, set99 float64 }
	runs := make([]pathRuns, len(paths))
	// A warm-up, not counted: run 1 came out slower than the rest on
	// most paths, quicport's and ssh's (docs/BENCHMARKS.md, 14:07 on
	// 2026-11-24), whatever a path that has carried nothing yet is
	// still short of.
	for _, p := range paths {
		pingPong(p.echo, min(o.pings, 200))
		setups(p.echo, min(o.setups, 100))
	}
	roundThePaths(o.runs, paths, "latency", func(i int, p *path) {
		// Idle pings and setups on a quiet tunnel, then pings beside a
		// bulk transfer.
		r := &runs[i]
		pids := p.tunnelPIDs()
		r.idle(p.echo, o.pings, p.name, o.quiet, pids)
		spent := cpuPer(pids)
		if ds, err := setups(p.echo, o.setups); err == nil {
			r.set50, r.set99 = append(r.set50, micros(pct(ds, 0.5))), append(r.set99, micros(pct(ds, 0.99)))
			if c, ok := spent(o.setups); ok {
				r.setCPU = append(r.setCPU, c)
			}
		} else {
			progress("%s setup: %v", p.name, err)
		}
		r.underBulk(p.echo, o.pings, p.name)
	})
	rows := map[string]row{}
	for i, p := range paths {
		r := runs[i]
		rows[p.name] = row{median(r.idle50), median(r.idle99), median(r.bulk50), median(r.bulk99), median(r.set50), median(r.set99)}
		progress("%s latency: %+v", p.name, rows[p.name])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "### Latency (µs): 64-byte round trip (%d per run), idle and with a bulk transfer on the same tunnel; connection setup (%d sequential connect + 1-byte echo)\n\n", o.pings, o.setups)
	b.WriteString("Ratios (in brackets) are to ssh -L, for the three measures the targets compare with it.\n\n")
	b.WriteString("| path | rtt p50 | rtt p99 | p50 overhead vs direct (ratio) | rtt p50 under bulk | rtt p99 under bulk (ratio) | setup p50 (ratio) | setup p99 |\n|---|---|---|---|---|---|---|---|\n")
	d, ssh := rows["direct"], rows["ssh -L"]
	for _, p := range paths {
		r := rows[p.name]
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %+.0f (%s) | %.0f | %.0f (%s) | %.0f (%s) | %.0f |\n", p.name, r.idle50, r.idle99,
			r.idle50-d.idle50, ratio(r.idle50-d.idle50, ssh.idle50-d.idle50), r.bulk50, r.bulk99, ratio(r.bulk99, ssh.bulk99), r.set50, ratio(r.set50, ssh.set50), r.set99)
	}
	b.WriteString("\n")
	// The medians hide how far runs spread on a busy machine; the setup
	// p50 and idle round trip of each run, in order, show it.
	b.WriteString("Per run (µs, in the order they ran), setup p50 / idle rtt p50:")
	for i, p := range paths {
		fmt.Fprintf(&b, " %s %s / %s;", p.name, runList(runs[i].set50), runList(runs[i].idle50))
	}
	b.WriteString("\n\n")
	b.WriteString(cpuLine(paths, runs, "idle round trip", func(r pathRuns) []float64 { return r.cpu }))
	b.WriteString(cpuLine(paths, runs, "setup", func(r pathRuns) []float64 { return r.setCPU }))
	b.WriteString(pairedLine(paths, runs))
	// The same three measures against the best (lowest) of the other QUIC
	// tunnels; below 1.00x quicport is ahead.
	var best row
	found := false
	for _, p := range paths {
		if !strings.HasPrefix(p.name, "sing-box") {
			continue
		}
		r := rows[p.name]
		if !found {
			best, found = r, true
		}
		best.idle50, best.bulk99, best.set50 = min(best.idle50, r.idle50), min(best.bulk99, r.bulk99), min(best.set50, r.set50)
	}
	if !found {
		return b.String()
	}
	for _, qp := range quicportRows {
		r := rows[qp]
		fmt.Fprintf(&b, "%s against the best other QUIC tunnel: p50 overhead %s, p99 under bulk %s, setup p50 %s.\n\n", qp,
			ratio(r.idle50-d.idle50, best.idle50-d.idle50), ratio(r.bulk99, best.bulk99), ratio(r.set50, best.set50))
	}
	return b.String()
}

// stalledConns is how many connections of the tunnel stop reading in the
// slow-consumer scenario.
const stalledConns = 3

// slowConsumer measures echo throughput on one connection of a quicport
// tunnel, alone and while other connections of the same tunnel have
// readers that stopped reading. Each round closes its stalled connections
// with their echo unread, so the next round also runs beside relays that
// still owe bytes to an echo server that has stopped reading.
func slowConsumer(o options, p *path) string {
	measure := func() float64 {
		const size = 64 << 20
		c, err := net.Dial("tcp", p.echo)
		if err != nil {
			return 0
		}
		defer c.Close()
		start := time.Now()
		go func() {
			buf := make([]byte, 64<<10)
			for sent := 0; sent < size; sent += len(buf) {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		}()
		if _, err := io.CopyN(io.Discard, c, size); err != nil {
			return 0
		}
		return size * 8 / time.Since(start).Seconds() / 1e9
	}
	var alone, stalled []float64
	for range o.runs {
		alone = append(alone, measure())
		// Connections that write and never read their echo: the echo
		// server blocks, and each stream's flow-control window fills.
		var conns []net.Conn
		for range stalledConns {
			s, err := net.Dial("tcp", p.echo)
			if err != nil {
				continue
			}
			conns = append(conns, s)
			s.SetWriteDeadline(time.Now().Add(o.duration))
			go func() {
				buf := make([]byte, 64<<10)
				for {
					if _, err := s.Write(buf); err != nil {
						return
					}
				}
			}()
		}
		time.Sleep(500 * time.Millisecond)
		stalled = append(stalled, measure())
		for _, s := range conns {
			s.Close()
		}
	}
	a, s := median(alone), median(stalled)
	progress("slow consumers: alone %.2f, beside %d stalled connections %.2f Gbit/s", a, stalledConns, s)
	return fmt.Sprintf("### Slow consumers (%s, echo of 64 MiB, Gbit/s)\n\n| alone | beside %d stalled connections on the same tunnel | ratio |\n|---|---|---|\n| %.2f | %.2f | %s |\n\n", p.name, stalledConns, a, s, ratio(s, a))
}

func raiseFDLimit() {
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) == nil {
		r.Cur = max(r.Cur, min(r.Max, 1<<20))
		if os.Geteuid() == 0 && r.Max < 1<<20 {
			r.Max, r.Cur = 1<<20, 1<<20
		}
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
	}
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

// rssKiB returns the resident set size of a process.
func rssKiB(pid int) int {
	b, err := os.ReadFile(filepath.Join("/proc", fmt.Sprint(pid), "status"))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb int
			fmt.Sscanf(strings.TrimPrefix(l, "VmRSS:"), "%d", &kb)
			return kb
		}
	}
	return 0
}
