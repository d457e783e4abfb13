package control

import (
	"fmt"
	"os"
	"time"

	"github.com/quicport/quicport/internal/audit"
	"github.com/quicport/quicport/internal/dataplane"
)

// Restart is a graceful restart: a new data plane becomes current, then
// every other one drains. Without BPF the old data planes are shut down
// first (their clients reconnect), and the error says so.
func (p *Plane) Restart() (string, error) {
	p.restartMu.Lock()
	defer p.restartMu.Unlock()
	p.mu.Lock()
	var old []*child
	for _, c := range p.planes {
		if c.state == dataplane.Active {
			old = append(old, c)
		}
	}
	p.mu.Unlock()
	p.cfg.Audit.Record(audit.Event{Type: "graceful_restart", Fields: map[string]any{"steered": p.steer != nil}})
	if p.steer == nil {
		for _, c := range old {
			// No longer ACTIVE: its exit is not a crash for exited to
			// replace. A replacement would be a second data plane reading
			// the one shared socket, each taking the other's packets.
			p.mu.Lock()
			c.state = dataplane.Draining
			p.mu.Unlock()
			p.call(c, dataplane.OpShutdown)
			select {
			case <-c.exited:
			case <-time.After(30 * time.Second):
			}
		}
		c, err := p.spawn()
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("restarted without BPF steering: sessions were closed and clients reconnect; data plane %d serves", c.pid), nil
	}
	c, err := p.spawn()
	if err != nil {
		return "", fmt.Errorf("new data plane: %w; the old one keeps serving", err)
	}
	for _, o := range old {
		p.drain(o)
	}
	return fmt.Sprintf("data plane %d serves new connections; %d draining", c.pid, len(old)), nil
}

func (p *Plane) drain(c *child) {
	p.mu.Lock()
	c.state = dataplane.Draining
	p.mu.Unlock()
	p.log.Info("draining data plane", "pid", c.pid)
	p.cfg.Audit.Record(audit.Event{Type: "drain", Fields: map[string]any{"pid": c.pid}})
	p.call(c, dataplane.OpDrain)
}

// DrainPID drains one data plane; if it was the newest ACTIVE one, a new
// data plane takes over first.
func (p *Plane) DrainPID(pid int) (string, error) {
	p.restartMu.Lock()
	defer p.restartMu.Unlock()
	p.mu.Lock()
	c := p.planes[pid]
	p.mu.Unlock()
	if c == nil {
		return "", fmt.Errorf("no data plane with pid %d; quicport ctl status lists them", pid)
	}
	if c.state != dataplane.Active {
		return "", fmt.Errorf("data plane %d is %s, not ACTIVE", pid, c.state)
	}
	msg := fmt.Sprintf("data plane %d is draining", pid)
	if p.newestActive() == c {
		if p.steer == nil {
			return "", fmt.Errorf("%w: draining the only data plane would stop the server; use quicport ctl graceful-restart", ErrNoBPF)
		}
		n, err := p.spawn()
		if err != nil {
			return "", err
		}
		msg += fmt.Sprintf("; data plane %d serves new connections", n.pid)
	}
	p.drain(c)
	return msg, nil
}

func (p *Plane) call(c *child, op string) {
	if _, _, err := dataplane.Call(dataplane.SocketPath(p.cfg.RuntimeDir, c.pid), dataplane.Request{Op: op}, 5*time.Second); err != nil {
		p.log.Warn("data plane did not answer", "pid", c.pid, "op", op, "err", err)
	}
}

// handle answers quicport ctl on the control socket.
func (p *Plane) handle(req dataplane.Request) (dataplane.Response, []*os.File) {
	var msg string
	var err error
	switch req.Op {
	case dataplane.OpInfo:
		return dataplane.Response{Info: &dataplane.Info{PID: os.Getpid(), Listen: p.addr.String(), Steered: p.steer != nil, StartedAt: p.started.UnixNano()}}, nil
	case dataplane.OpGracefulRestart:
		msg, err = p.Restart()
	case dataplane.OpDrainPID:
		msg, err = p.DrainPID(req.PID)
	case dataplane.OpShutdown:
		p.Shutdown()
		msg = "shutting down the server and its data planes"
	default:
		err = fmt.Errorf("unknown operation %q", req.Op)
	}
	if err != nil {
		return dataplane.Response{Error: err.Error()}, nil
	}
	return dataplane.Response{Message: msg}, nil
}
