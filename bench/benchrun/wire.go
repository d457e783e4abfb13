//go:build linux

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The WAN scenario needs what neither loopback nor the loss scenario's veth
// pair has: a round-trip time. This kernel has no netem, and no fq either
// (whose departure times a BPF program could set), so the link is a pair
// of TUN devices joined by a child process of this program (-serve-wire):
// every IP packet read from one device is written to the other after a
// fixed one-way delay. The far device is moved into the far namespace, so
// traffic between the namespaces crosses it as it would cross a wire with
// that delay and a 1,500-byte MTU, for TCP and QUIC alike.

// wireQueue is the most packets one direction of the wire holds: at 10 ms
// one way that is about 20 Gbit/s of 1,500-byte packets, far more than the
// machines this runs on move through a tunnel. A full queue drops, like a
// router's. Each TUN device's own queue (txqueuelen) is as long: the
// kernel drops there when the wire process has not been scheduled for a
// moment, and the default 500 packets lost 0.4–4% of a bulk transfer on
// a busy 2-core machine — the wire must not lose what the scenario does
// not mean to lose.
const wireQueue = 16384

// wireSlack is how much earlier than its due time the wire may deliver a
// packet: 1% of the default one-way delay.
const wireSlack = 100 * time.Microsecond

// serveWire creates the TUN devices names[0] and names[1], says "ready" on
// stdout and carries packets between them, each after delay, until it is
// killed.
func serveWire(names []string, delay time.Duration) error {
	if len(names) != 2 {
		return fmt.Errorf("-serve-wire wants two device names, got %q", names)
	}
	var devs [2]*os.File
	for i, name := range names {
		f, err := openTUN(name)
		if err != nil {
			return err
		}
		devs[i] = f
	}
	fmt.Println("ready")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); delayLine(devs[0], devs[1], delay) }()
	go func() { defer wg.Done(); delayLine(devs[1], devs[0], delay) }()
	wg.Wait()
	return nil
}

// openTUN creates a TUN device (IP packets, no packet-information header)
// that lives as long as the returned file.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("create TUN device %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// delayLine writes every packet read from src to dst delay after it was
// read, in order, until src fails.
func delayLine(src, dst *os.File, delay time.Duration) {
	type packet struct {
		due time.Time
		buf *[]byte
		n   int
	}
	pool := sync.Pool{New: func() any { b := make([]byte, 2048); return &b }}
	queue := make(chan packet, wireQueue)
	go func() {
		for p := range queue {
			// A packet due within wireSlack goes now: at high packet rates
			// one timer per packet would be the wire's limit.
			if d := time.Until(p.due); d > wireSlack {
				time.Sleep(d)
			}
			// A write fails when the far device is down; the packet is
			// lost, as on a wire.
			_, _ = dst.Write((*p.buf)[:p.n])
			pool.Put(p.buf)
		}
	}()
	defer close(queue)
	for {
		buf := pool.Get().(*[]byte)
		n, err := src.Read(*buf)
		if err != nil {
			pool.Put(buf)
			return
		}
		select {
		case queue <- packet{due: time.Now().Add(delay), buf: buf, n: n}:
		default:
			pool.Put(buf)
		}
	}
}

// newWANHost makes a far host reached through a wire with delay each way
// (see serveWire): a namespace, the wire process and its two TUN devices,
// one of them moved into the namespace.
func newWANHost(delay time.Duration) (*farHost, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pid := os.Getpid()
	f := &farHost{
		ns:     fmt.Sprintf("quicport-bench-wan-%d", pid),
		link:   fmt.Sprintf("qpw%dn", pid),
		table:  fmt.Sprintf("quicport_bench_wan_%d", pid), // --wan-loss
		nearIP: wanNearIP, farIP: wanFarIP,
	}
	farDev := fmt.Sprintf("qpw%df", pid)
	f.farDev = farDev
	if out, err := exec.Command("ip", "netns", "add", f.ns).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add: %v: %s", err, strings.TrimSpace(string(out)))
	}
	wire := helper(self, "-serve-wire", f.link+","+farDev, "-wire-delay", delay.String())
	wire.Stderr = os.Stderr
	stdout, err := wire.StdoutPipe()
	if err != nil {
		f.close()
		return nil, err
	}
	if err := wire.Start(); err != nil {
		f.close()
		return nil, err
	}
	f.procs = append(f.procs, wire)
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		f.close()
		return nil, fmt.Errorf("the wire process did not start (%q, %v)", line, err)
	}
	steps := [][]string{
		{"ip", "link", "set", farDev, "netns", f.ns},
		{"ip", "addr", "add", f.nearIP, "peer", f.farIP, "dev", f.link},
		{"ip", "link", "set", f.link, "txqueuelen", strconv.Itoa(wireQueue), "up"},
		{"ip", "-n", f.ns, "addr", "add", f.farIP, "peer", f.nearIP, "dev", farDev},
		{"ip", "-n", f.ns, "link", "set", farDev, "txqueuelen", strconv.Itoa(wireQueue), "up"},
		{"ip", "-n", f.ns, "link", "set", "lo", "up"},
	}
	if err := runSteps(steps); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// wireDrops counts the packets dropped at the wire's TUN devices: going
// in (tx_dropped: the wire process did not read them in time) and coming
// out (rx_dropped: the kernel did not take what the wire wrote).
func (f *farHost) wireDrops() int {
	total := 0
	for _, stat := range []string{"tx_dropped", "rx_dropped"} {
		for _, argv := range [][]string{
			{"cat", "/sys/class/net/" + f.link + "/statistics/" + stat},
			append(f.prefix(), "cat", "/sys/class/net/"+f.farDev+"/statistics/"+stat),
		} {
			out, err := exec.Command(argv[0], argv[1:]...).Output()
			if err != nil {
				continue
			}
			n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
			total += n
		}
	}
	return total
}
