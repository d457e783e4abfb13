package dataplane

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/quicport/quicport/internal/metrics"
	"github.com/quicport/quicport/internal/proto"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/steer"
)

// DefaultDrainTimeout bounds a drain: connections still open then are closed.
const DefaultDrainTimeout = 300 * time.Second

// DefaultAdoptTimeout is how long a supervised data plane whose control
// plane exited keeps serving while it waits for a new control plane to adopt
// it (a control plane restart or upgrade). Unadopted, it then shuts down.
const DefaultAdoptTimeout = 60 * time.Second

// Launch is what a control plane sends a data plane it starts, on the
// inherited control channel (never in argv or the environment): its
// steering id and salt, and the control plane's own command line, which the
// data plane parses into the very same server configuration.
type Launch struct {
	ID   uint8      `json:"id"`
	Salt steer.Salt `json:"salt"`
	Args []string   `json:"args"`
}

// Event is what a supervised data plane tells its control plane on the
// control channel: that it serves, and its last snapshot as it exits.
type Event struct {
	Ready bool      `json:"ready,omitempty"`
	Exit  *Snapshot `json:"exit,omitempty"`
}

// ReadLaunch reads the Launch message from a control channel.
func ReadLaunch(ch net.Conn) (Launch, error) {
	var l Launch
	r := bufio.NewReader(ch) // the control plane sends nothing after it
	_ = ch.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := r.ReadBytes('\n')
	_ = ch.SetReadDeadline(time.Time{})
	if err != nil {
		return l, fmt.Errorf("read launch message: %w", err)
	}
	if err := json.Unmarshal(line, &l); err != nil {
		return l, fmt.Errorf("malformed launch message: %w", err)
	}
	return l, nil
}

// Options configure Run.
type Options struct {
	// Server is the server configuration. For a supervised data plane,
	// Run sets its PacketConn, ConnectionIDs and TakeOver.
	Server server.Config
	// Conn and Control are the inherited UDP socket and control channel
	// of a supervised data plane (nil: standalone).
	Conn    *net.UDPConn
	Control net.Conn
	// Launch is the supervised data plane's launch message.
	Launch Launch
	// Steering holds the control plane's BPF program and maps (inherited):
	// the data plane only keeps them, so that a control plane that
	// restarts can take them back and steer on without a gap.
	Steering     []*os.File
	RuntimeDir   string
	StateDir     string // the quicport state directory
	DrainTimeout time.Duration
	// AdoptTimeout: see DefaultAdoptTimeout (zero selects it).
	AdoptTimeout time.Duration
	Recorder     *metrics.Recorder
	Log          *slog.Logger
	// OnListening is called once the server's socket is open (may be nil).
	OnListening func(*server.Server)
}

// plane is a running data plane.
type plane struct {
	opt      Options
	srv      *server.Server
	started  time.Time
	draining atomic.Bool
	adopted  chan struct{} // a new control plane took over supervision
	adoptMu  sync.Once
	shutdown context.CancelFunc
	drainMu  sync.Once
	changed  chan struct{} // the state changed: rewrite the state file
}

// stateChanged rewrites the state file soon.
func (p *plane) stateChanged() {
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// Run runs a data plane until ctx ends (then every session is closed with
// SessionClose), a shutdown request, or the end of a drain. It keeps the
// state file and the IPC socket of the data plane while it runs.
func Run(ctx context.Context, opt Options) error {
	if opt.DrainTimeout == 0 {
		opt.DrainTimeout = DefaultDrainTimeout
	}
	if opt.AdoptTimeout == 0 {
		opt.AdoptTimeout = DefaultAdoptTimeout
	}
	if opt.Recorder == nil {
		opt.Recorder = &metrics.Recorder{}
	}
	p := &plane{opt: opt, started: time.Now(), adopted: make(chan struct{}), changed: make(chan struct{}, 1)}
	cfg := opt.Server
	cfg.ObserveHandshake = opt.Recorder.Observe
	if opt.Conn != nil {
		cfg.PacketConn = opt.Conn
		cfg.ConnectionIDs = steer.CIDGenerator{ID: opt.Launch.ID, Salt: opt.Launch.Salt}
		// Without steering, data planes that share the port during a
		// restart read each other's packets, and a stateless reset from
		// one would end another's live session: they send none.
		cfg.NoStatelessResets = len(opt.Steering) == 0
	}
	cfg.TakeOver = p.takeOver
	srv, err := server.Listen(cfg)
	if err != nil {
		return err
	}
	p.srv = srv
	if opt.OnListening != nil {
		opt.OnListening(srv)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.shutdown = cancel // before the IPC socket can ask for it
	ln, err := Listen(SocketPath(opt.RuntimeDir, os.Getpid()))
	if err != nil {
		srv.Close()
		return fmt.Errorf("data plane socket: %w", err)
	}
	ipcDone := make(chan struct{})
	go func() {
		defer close(ipcDone)
		Serve(ln, p.handle, opt.Log)
	}()
	defer func() {
		ln.Close()
		<-ipcDone
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := srv.Serve(ctx)
		cancel() // Serve returned: after a drain, the data plane is done
		return err
	})
	g.Go(func() error {
		err := Publish(gctx, Dir(opt.StateDir), time.Second, p.status, p.changed)
		if err != nil {
			opt.Log.Warn("quicport ctl status will not see this data plane", "err", err)
		}
		return nil
	})
	if opt.Control != nil {
		g.Go(func() error { p.supervised(gctx); return nil })
	}
	err = g.Wait()
	if opt.Control != nil {
		snap := p.snapshot()
		snap.Info.State = Terminated
		writeEvent(opt.Control, Event{Exit: &snap})
	}
	return err
}

// supervised tells the control plane the data plane serves, then watches
// the control channel: when the control plane goes away, the data plane
// keeps serving for the adopt timeout, waiting to be adopted.
func (p *plane) supervised(ctx context.Context) {
	ch := p.opt.Control
	for !p.srv.Serving() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	p.stateChanged()
	writeEvent(ch, Event{Ready: true})
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		buf := make([]byte, 512)
		for {
			if _, err := ch.Read(buf); err != nil {
				return
			}
		}
	}()
	select {
	case <-ctx.Done():
		_ = ch.SetReadDeadline(time.Unix(1, 0)) // ends the reader
		<-gone
		return
	case <-gone:
	}
	if p.draining.Load() {
		return // a draining data plane ends by itself
	}
	p.opt.Log.Warn("control plane exited; serving on while waiting to be adopted by a new quicport server", "timeout", p.opt.AdoptTimeout.String())
	select {
	case <-ctx.Done():
	case <-p.adopted:
		p.opt.Log.Info("adopted by a new control plane")
	case <-time.After(p.opt.AdoptTimeout):
		p.opt.Log.Warn("no control plane adopted this data plane; shutting down")
		p.shutdown()
	}
}

func writeEvent(ch net.Conn, e Event) {
	b, _ := json.Marshal(e)
	_ = ch.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = ch.Write(append(b, '\n'))
}

func (p *plane) state() string {
	switch {
	case p.draining.Load():
		return Draining
	case p.srv.Serving():
		return Active
	}
	return Starting
}

func (p *plane) info() Info {
	return Info{PID: os.Getpid(), ID: p.opt.Launch.ID, Salt: p.opt.Launch.Salt, Supervised: p.opt.Conn != nil,
		State: p.state(), Listen: p.srv.Addr().String(), StartedAt: p.started.UnixNano()}
}

func (p *plane) status() Status {
	st := p.srv.Stats()
	return Status{State: p.state(), PID: os.Getpid(), Listen: p.srv.Addr().String(),
		ActiveConnections: st.ConnectionsActive, BytesSent: st.BytesSent, BytesReceived: st.BytesRecv,
		StartedAt: p.started.Unix()}
}

func (p *plane) snapshot() Snapshot {
	return Snapshot{Info: p.info(), Stats: p.srv.Stats(), Sessions: p.srv.Sessions(), Handshakes: p.opt.Recorder.Snapshot()}
}

// drain stops taking new connections and moves clients along; at the drain
// timeout whatever is left is closed.
func (p *plane) drain() {
	p.drainMu.Do(func() {
		p.draining.Store(true)
		p.opt.Log.Info("draining", "timeout", p.opt.DrainTimeout.String())
		p.srv.Drain()
		p.stateChanged()
		time.AfterFunc(p.opt.DrainTimeout, func() {
			if p.srv.Stats().SessionsActive > 0 {
				p.opt.Log.Warn("drain timeout: closing the remaining sessions", "sessions", p.srv.Stats().SessionsActive)
			}
			p.shutdown()
		})
	})
}

// handle answers IPC requests.
func (p *plane) handle(req Request) (Response, []*os.File) {
	switch req.Op {
	case OpInfo:
		i := p.info()
		return Response{Info: &i}, nil
	case OpStats:
		s := p.snapshot()
		return Response{Snapshot: &s}, nil
	case OpDrain:
		p.drain()
		return Response{Message: fmt.Sprintf("data plane %d is draining", os.Getpid())}, nil
	case OpShutdown:
		p.opt.Log.Info("shutdown requested")
		p.shutdown()
		return Response{Message: fmt.Sprintf("data plane %d is shutting down", os.Getpid())}, nil
	case OpAdopt:
		p.adoptMu.Do(func() { close(p.adopted) })
		i := p.info()
		return Response{Info: &i}, nil
	case OpSteering:
		if len(p.opt.Steering) == 0 {
			return Response{}, nil // its server runs without BPF steering
		}
		dups, err := steer.DupFiles(p.opt.Steering)
		if err != nil {
			return Response{Error: err.Error()}, nil
		}
		return Response{}, dups
	case OpSocket:
		// Without steering the control plane keeps a copy of the one
		// socket, so that a data plane replacing this one (a crash, a
		// forced restart) serves on it with no moment unbound.
		if p.opt.Conn == nil {
			return Response{Error: "a standalone data plane has no socket to share"}, nil
		}
		fd, err := DupSocket(p.opt.Conn)
		if err != nil {
			return Response{Error: err.Error()}, nil
		}
		return Response{}, []*os.File{os.NewFile(uintptr(fd), "quic-socket")}
	case OpTakeOver:
		f, err := p.srv.HandOver(req.Port, proto.Protocol(req.Protocol), req.Identity)
		if err != nil {
			return Response{Error: err.Error()}, nil
		}
		return Response{}, []*os.File{f}
	}
	return Response{Error: fmt.Sprintf("unknown operation %q", req.Op)}, nil
}

// takeOver asks the other data planes of this runtime directory for a
// remote forward's socket.
func (p *plane) takeOver(port uint16, protocol proto.Protocol, identity string) (*os.File, error) {
	socks, err := Sockets(p.opt.RuntimeDir)
	if err != nil {
		return nil, err
	}
	own := SocketPath(p.opt.RuntimeDir, os.Getpid())
	for _, path := range socks {
		if path == own {
			continue
		}
		_, files, err := Call(path, Request{Op: OpTakeOver, Port: port, Protocol: uint8(protocol), Identity: identity}, 5*time.Second)
		if err == nil && len(files) == 1 {
			return files[0], nil
		}
		for _, f := range files {
			f.Close()
		}
	}
	return nil, errors.New("no draining data plane holds this forward")
}

// DupSocket returns a close-on-exec duplicate of c's descriptor, as a
// bare descriptor outside Go's netpoller. Unlike c.File, it leaves c as it
// is.
func DupSocket(c syscall.Conn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, os.NewSyscallError("fcntl", dupErr)
	}
	return fd, nil
}
