// Package control is quicport's control plane: the part of `quicport
// server` that owns the UDP port, starts and supervises `quicport
// data-plane` processes, restarts them gracefully, adopts those of a
// previous control plane, and answers `quicport ctl` and the HTTP API.
//
// The data planes serve clients. The control plane opens one SO_REUSEPORT
// socket per data plane and passes it as an inherited descriptor; package
// steer's BPF program sends each datagram to the data plane that issued its
// connection ID, and new connections to the newest ACTIVE one. A graceful
// restart starts a new data plane, makes it current, and drains the old
// ones: nothing established is dropped. Where BPF cannot be loaded there is
// one socket, handed from data plane to data plane, and a restart closes
// sessions (clients reconnect) — Restart says so before doing anything.
package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/audit"
	"github.com/quicport/quicport/internal/dataplane"
	"github.com/quicport/quicport/internal/metrics"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/steer"
)

// Config configures a control plane.
type Config struct {
	// Listen is the QUIC UDP address.
	Listen string
	// Exe is the quicport executable data planes run, by path, so that a
	// graceful restart after an upgrade runs the new binary.
	Exe string
	// Args is the command line (without the program name) the data planes
	// parse into their server configuration; it reaches them over the
	// control channel, never through argv.
	Args []string
	// Env is the data planes' environment (nil: this process's).
	Env        []string
	RuntimeDir string
	// Stdout and Stderr receive the data planes' output.
	Stdout, Stderr io.Writer
	Log            *slog.Logger
	Audit          *audit.Log
	// NoBPF runs without socket steering even where it could load.
	NoBPF bool
}

// Plane is a running control plane.
type Plane struct {
	cfg     Config
	log     *slog.Logger
	started time.Time
	steer   *steer.Steering // nil without BPF
	salt    steer.Salt
	shared  *heldSocket  // the one socket, without BPF
	addr    *net.UDPAddr // the QUIC address, port resolved
	ctlLn   *net.UnixListener

	mu      sync.Mutex
	planes  map[int]*child // by pid
	retired server.Stats   // counters of data planes that exited
	hsRet   metrics.Histogram
	closing bool

	restartMu sync.Mutex // one restart at a time
	wg        sync.WaitGroup

	shutdownOnce sync.Once
	shutdownC    chan struct{} // closed by Shutdown
}

// child is one data plane, started by this control plane or adopted.
type child struct {
	pid     int
	id      uint8
	state   string
	started time.Time
	last    dataplane.Snapshot // last snapshot seen, for counters after it exits
	ctl     net.Conn           // control channel (nil when adopted)
	exited  chan struct{}
	retired bool
}

// ErrNoBPF prefixes what Restart reports without BPF steering.
var ErrNoBPF = errors.New("BPF socket steering is not available")

// Start adopts the data planes a previous control plane left running on
// the same address, or starts one, and opens the control socket. It
// returns once a data plane is ACTIVE.
func Start(cfg Config) (*Plane, error) {
	p := &Plane{cfg: cfg, log: cfg.Log, started: time.Now(), planes: map[int]*child{}, shutdownC: make(chan struct{})}
	ctlLn, err := dataplane.Listen(dataplane.ControlSocket(cfg.RuntimeDir))
	if err != nil {
		return nil, fmt.Errorf("another quicport server seems to run with runtime directory %s (%v); stop it, or give this one its own QUIC port and state directory (XDG_STATE_HOME or QUICPORT_RUNTIME_DIR)", cfg.RuntimeDir, err)
	}
	p.ctlLn = ctlLn
	ok := false
	defer func() {
		if !ok {
			p.release()
		}
	}()
	if orphans := p.findOrphans(); len(orphans) > 0 {
		// A previous control plane's data planes: take over its steering
		// program and maps from them, so the port never loses its way.
		if err := p.adoptAll(orphans); err != nil {
			return nil, fmt.Errorf("data planes of a previous quicport server still serve %s, but cannot be adopted: %w; stop them with quicport ctl shutdown, or wait for them to exit", cfg.Listen, err)
		}
	} else if cfg.NoBPF {
		p.log.Warn("BPF socket steering is off (--no-bpf): a graceful restart will close sessions and clients reconnect")
	} else {
		p.salt = steer.NewSalt()
		if p.steer, err = steer.New(p.salt); err != nil {
			p.steer = nil
			p.log.Warn("no BPF socket steering, so a graceful restart cannot keep connections: it will close sessions and clients reconnect; run as root or grant CAP_BPF and CAP_NET_ADMIN", "err", err)
		}
	}
	if p.addr == nil {
		if p.addr, err = net.ResolveUDPAddr("udp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
		}
	}
	if cur := p.newestActive(); cur != nil {
		if p.steer != nil {
			if err := p.steer.SetCurrent(cur.id); err != nil {
				return nil, err
			}
		}
	} else if _, err := p.spawn(); err != nil {
		return nil, err
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		dataplane.Serve(ctlLn, p.handle, p.log) // until release closes ctlLn
	}()
	ok = true
	return p, nil
}

// orphan is a data plane found running with no control plane.
type orphan struct {
	path string
	info dataplane.Info
}

// findOrphans lists the supervised data planes on our address in the
// runtime directory, removing sockets nobody answers on.
func (p *Plane) findOrphans() []orphan {
	want, _ := net.ResolveUDPAddr("udp", p.cfg.Listen)
	socks, _ := dataplane.Sockets(p.cfg.RuntimeDir)
	var out []orphan
	for _, path := range socks {
		resp, _, err := dataplane.Call(path, dataplane.Request{Op: dataplane.OpInfo}, 2*time.Second)
		if err != nil {
			if dataplane.IsNotRunning(err) {
				os.Remove(path)
			}
			continue
		}
		in := resp.Info
		// Draining ones too: they share the steering, and the new
		// control plane must not replace it under their connections.
		if in == nil || !in.Supervised || want == nil || want.Port == 0 {
			continue
		}
		if got, err := net.ResolveUDPAddr("udp", in.Listen); err != nil || got.Port != want.Port || !got.IP.Equal(want.IP) {
			continue
		}
		if len(out) > 0 && in.Salt != out[0].info.Salt {
			continue
		}
		out = append(out, orphan{path: path, info: *in})
	}
	return out
}

// adoptAll takes the steering program and maps from the first orphan and
// supervision of them all.
func (p *Plane) adoptAll(orphans []orphan) error {
	_, files, err := dataplane.Call(orphans[0].path, dataplane.Request{Op: dataplane.OpSteering}, 5*time.Second)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) == 0 {
		// Their server ran without BPF steering: supervise them as they
		// are; a graceful restart then closes sessions, as it did there.
		// Hold their one socket, as their server did, so that a data
		// plane replacing them serves on it.
		p.shared = p.adoptSocket(orphans[0])
		if p.cfg.NoBPF {
			p.log.Warn("BPF socket steering is off (--no-bpf): a graceful restart will close sessions and clients reconnect")
		} else {
			p.log.Warn("the running data planes have no BPF socket steering (their server ran with --no-bpf or without BPF rights): a graceful restart will close sessions; to turn steering on, stop them with quicport ctl shutdown and start the server again")
		}
	} else {
		p.salt = orphans[0].info.Salt
		if p.steer, err = steer.Open(files, p.salt); err != nil {
			return err
		}
	}
	for _, o := range orphans {
		resp, _, err := dataplane.Call(o.path, dataplane.Request{Op: dataplane.OpAdopt}, 5*time.Second)
		if err != nil || resp.Info == nil {
			return fmt.Errorf("data plane %d: %v", o.info.PID, err)
		}
		if p.addr == nil {
			p.addr, _ = net.ResolveUDPAddr("udp", o.info.Listen)
		}
		c := &child{pid: o.info.PID, id: o.info.ID, state: resp.Info.State, started: time.Unix(0, o.info.StartedAt), exited: make(chan struct{})}
		p.mu.Lock()
		p.planes[c.pid] = c
		p.mu.Unlock()
		p.log.Info("adopted a running data plane", "pid", c.pid, "state", c.state)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.watchAdopted(c)
		}()
	}
	return nil
}

// adoptSocket takes a copy of the QUIC socket of an orphan that runs
// without BPF steering. Without it (a data plane of an older quicport),
// a replacement binds the port anew once the orphan is gone.
func (p *Plane) adoptSocket(o orphan) *heldSocket {
	_, files, err := dataplane.Call(o.path, dataplane.Request{Op: dataplane.OpSocket}, 5*time.Second)
	if err == nil && len(files) != 1 {
		err = fmt.Errorf("%d descriptors instead of one", len(files))
	}
	var h *heldSocket
	if err == nil {
		var pc net.PacketConn
		if pc, err = net.FilePacketConn(files[0]); err == nil {
			if l, ok := pc.(*net.UDPConn); ok {
				h, err = holdSocket(l)
			} else {
				pc.Close()
				err = fmt.Errorf("a %T, not a UDP socket", pc)
			}
		}
	}
	for _, f := range files {
		f.Close()
	}
	if err != nil {
		p.log.Warn("cannot hold the adopted data plane's socket: a data plane replacing it will bind the port anew", "pid", o.info.PID, "err", err)
		return nil
	}
	return h
}

// watchAdopted notices an adopted data plane's exit (it is not our child,
// so there is no Wait): its socket stops answering.
func (p *Plane) watchAdopted(c *child) {
	path := dataplane.SocketPath(p.cfg.RuntimeDir, c.pid)
	for {
		time.Sleep(500 * time.Millisecond)
		if p.isClosing() {
			return
		}
		resp, _, err := dataplane.Call(path, dataplane.Request{Op: dataplane.OpStats}, 2*time.Second)
		if err == nil && resp.Snapshot != nil {
			p.mu.Lock()
			c.last, c.state = *resp.Snapshot, resp.Snapshot.Info.State
			p.mu.Unlock()
			continue
		}
		if err := unix.Kill(c.pid, 0); err == nil {
			continue // alive, just slow
		}
		p.exited(c, nil)
		return
	}
}

func (p *Plane) isClosing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closing
}

// freeID returns a steering id no live data plane uses.
func (p *Plane) freeID() (uint8, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	used := map[uint8]bool{}
	for _, c := range p.planes {
		used[c.id] = true
	}
	for id := 1; id <= steer.MaxID; id++ {
		if !used[uint8(id)] {
			return uint8(id), nil
		}
	}
	return 0, errors.New("too many data planes")
}

// heldSocket is the one QUIC socket of a server without BPF steering, as
// the control plane keeps it between data planes: open, so that the port
// stays bound and a replacement data plane takes it over, but never read,
// and so kept as a bare descriptor outside Go's netpoller. A socket
// registered there wakes its process at every datagram that arrives, and
// every datagram of every session arrives on this one: the control plane
// burned about a tenth of a core at 2 Gbit/s doing nothing with them.
type heldSocket struct {
	fd   int
	addr *net.UDPAddr
}

// holdSocket takes l's socket out of the netpoller: it keeps a duplicate
// of the descriptor and closes l.
func holdSocket(l *net.UDPConn) (*heldSocket, error) {
	defer l.Close()
	fd, err := dataplane.DupSocket(l)
	if err != nil {
		return nil, err
	}
	return &heldSocket{fd: fd, addr: l.LocalAddr().(*net.UDPAddr)}, nil
}

// file returns a duplicate of the socket to hand to a data plane; the
// caller closes it once the data plane has started.
func (h *heldSocket) file() (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(h.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fd), "quic-socket"), nil
}

func (h *heldSocket) Close() error { return unix.Close(h.fd) }

// spawn starts a data plane and waits until it is ACTIVE; with steering it
// becomes current.
func (p *Plane) spawn() (*child, error) {
	id, err := p.freeID()
	if err != nil {
		return nil, err
	}
	var pc *net.UDPConn
	if p.steer != nil {
		if pc, err = p.steer.Listen(p.addr.String(), id); err != nil {
			return nil, fmt.Errorf("listen on %s/udp: %w", p.addr, err)
		}
		defer pc.Close() // the data plane holds its own copy
	} else if p.shared == nil {
		l, err := net.ListenUDP("udp", p.addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s/udp: %w", p.addr, err)
		}
		if p.shared, err = holdSocket(l); err != nil {
			return nil, fmt.Errorf("listen on %s/udp: %w", p.addr, err)
		}
	}
	var (
		sockFile *os.File
		local    *net.UDPAddr
	)
	if pc != nil {
		local = pc.LocalAddr().(*net.UDPAddr)
		sockFile, err = pc.File()
	} else {
		local = p.shared.addr
		sockFile, err = p.shared.file()
	}
	if err != nil {
		return nil, err
	}
	defer sockFile.Close()
	if p.addr.Port == 0 {
		p.addr = local
	}
	fds, err := socketpair()
	if err != nil {
		return nil, err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control")
	defer theirs.Close()
	ctl, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(p.cfg.Exe, "data-plane", "--supervised")
	cmd.ExtraFiles = []*os.File{sockFile, theirs} // fd 3 and 4
	if p.steer != nil {
		// fd 5, 6, 7: the steering program and maps, for safekeeping.
		files, err := p.steer.Files()
		if err != nil {
			ctl.Close()
			return nil, err
		}
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		cmd.ExtraFiles = append(cmd.ExtraFiles, files...)
	}
	cmd.Stdout, cmd.Stderr, cmd.Env = p.cfg.Stdout, p.cfg.Stderr, p.cfg.Env
	// Its own process group: a terminal's Ctrl-C reaches the control
	// plane, which decides what the data planes do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ctl.Close()
		return nil, fmt.Errorf("start data plane %s: %w", p.cfg.Exe, err)
	}
	c := &child{pid: cmd.Process.Pid, id: id, state: dataplane.Starting, started: time.Now(), ctl: ctl, exited: make(chan struct{})}
	p.mu.Lock()
	p.planes[c.pid] = c
	p.mu.Unlock()
	launch, _ := json.Marshal(dataplane.Launch{ID: id, Salt: p.salt, Args: p.cfg.Args})
	_ = ctl.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = ctl.Write(append(launch, '\n'))
	ready, events := make(chan struct{}), make(chan struct{})
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		defer close(events)
		p.readEvents(c, ready)
	}()
	go func() {
		defer p.wg.Done()
		err := cmd.Wait()
		// Its last words (the final snapshot) come before EOF on the
		// channel: read them, so its counters are the final ones.
		select {
		case <-events:
		case <-time.After(time.Second):
		}
		p.exited(c, err)
	}()
	select {
	case <-ready:
	case <-c.exited:
		return nil, fmt.Errorf("data plane %d exited while starting; its output above says why", c.pid)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("data plane %d did not become ready within 30s", c.pid)
	}
	if p.steer != nil {
		if err := p.steer.SetCurrent(id); err != nil {
			return nil, err
		}
	}
	p.log.Info("data plane active", "pid", c.pid, "id", id)
	p.cfg.Audit.Record(audit.Event{Type: "dataplane_start", Fields: map[string]any{"pid": c.pid}})
	return c, nil
}

// readEvents reads a child's control channel: ready, then its final
// snapshot.
func (p *Plane) readEvents(c *child, ready chan struct{}) {
	r := bufio.NewReader(c.ctl)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var e dataplane.Event
		if json.Unmarshal(line, &e) != nil {
			continue
		}
		p.mu.Lock()
		if e.Ready && c.state == dataplane.Starting {
			c.state = dataplane.Active
			close(ready)
		}
		if e.Exit != nil {
			c.last = *e.Exit
		}
		p.mu.Unlock()
	}
}

// exited records a data plane's end and keeps its counters; an ACTIVE one
// that ends on its own has crashed and is replaced.
func (p *Plane) exited(c *child, waitErr error) {
	p.mu.Lock()
	if c.retired {
		p.mu.Unlock()
		return
	}
	c.retired = true
	wasActive := c.state == dataplane.Active || c.state == dataplane.Starting
	c.state = dataplane.Terminated
	p.retired = addStats(p.retired, c.last.Stats, true)
	p.hsRet = p.hsRet.Add(c.last.Handshakes)
	delete(p.planes, c.pid)
	closing := p.closing
	p.mu.Unlock()
	close(c.exited)
	if c.ctl != nil {
		c.ctl.Close()
	}
	p.log.Info("data plane exited", "pid", c.pid, "status", fmt.Sprint(waitErr))
	p.cfg.Audit.Record(audit.Event{Type: "dataplane_exit", Fields: map[string]any{"pid": c.pid}})
	if closing || !wasActive || p.newestActive() != nil {
		return
	}
	p.log.Error("the active data plane ended unexpectedly; starting a new one", "pid", c.pid)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for delay := time.Second; !p.isClosing(); delay = min(2*delay, 30*time.Second) {
			_, err := p.spawnLocked()
			if err == nil {
				return
			}
			p.log.Error("could not start a data plane; retrying", "in", delay.String(), "err", err)
			time.Sleep(delay)
		}
	}()
}

// spawnLocked spawns under the restart lock.
func (p *Plane) spawnLocked() (*child, error) {
	p.restartMu.Lock()
	defer p.restartMu.Unlock()
	if p.isClosing() {
		return nil, errors.New("closing")
	}
	return p.spawn()
}

// children lists the data planes.
func (p *Plane) children() []*child {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := make([]*child, 0, len(p.planes))
	for _, c := range p.planes {
		list = append(list, c)
	}
	return list
}

func (p *Plane) newestActive() *child {
	p.mu.Lock()
	defer p.mu.Unlock()
	var best *child
	for _, c := range p.planes {
		if c.state == dataplane.Active && (best == nil || c.started.After(best.started)) {
			best = c
		}
	}
	return best
}

// Addr returns the QUIC address.
func (p *Plane) Addr() net.Addr { return p.addr }

// Steered reports whether BPF steering is in use.
func (p *Plane) Steered() bool { return p.steer != nil }

// ShutdownRequested is closed when quicport ctl shutdown asks the server to
// stop; the caller then calls Stop(true).
func (p *Plane) ShutdownRequested() <-chan struct{} { return p.shutdownC }

// Shutdown closes ShutdownRequested.
func (p *Plane) Shutdown() { p.shutdownOnce.Do(func() { close(p.shutdownC) }) }

// Stop ends the control plane. With stopPlanes, every data plane closes its
// sessions (SessionClose: clients reconnect) and exits; otherwise they keep
// serving, waiting for the next control plane to adopt them.
func (p *Plane) Stop(stopPlanes bool) {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	list := p.children()
	if stopPlanes {
		for _, c := range list {
			p.call(c, dataplane.OpShutdown)
		}
		for _, c := range list {
			select {
			case <-c.exited:
			case <-time.After(10 * time.Second):
				p.log.Warn("data plane did not exit; killing it", "pid", c.pid)
				_ = unix.Kill(c.pid, unix.SIGKILL)
			}
		}
	} else if len(list) > 0 {
		p.log.Info("control plane stopping; data planes keep serving and wait (--adopt-timeout) to be adopted by the next quicport server", "data_planes", len(list))
	}
	p.release()
	for _, c := range list {
		if c.ctl != nil {
			c.ctl.Close() // tells the child its control plane left
		}
	}
	if stopPlanes {
		p.wg.Wait()
	}
}

func (p *Plane) release() {
	if p.ctlLn != nil {
		p.ctlLn.Close()
	}
	if p.steer != nil {
		p.steer.Close()
	}
	if p.shared != nil {
		p.shared.Close()
	}
}
