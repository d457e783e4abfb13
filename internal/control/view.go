package control

import (
	"sort"
	"sync"
	"time"

	"github.com/quicport/quicport/internal/api"
	"github.com/quicport/quicport/internal/dataplane"
	"github.com/quicport/quicport/internal/metrics"
	"github.com/quicport/quicport/internal/server"
)

// The API's and metrics' view of the server: sums over its data planes,
// asked over IPC at scrape time, plus the counters of those that exited.

// snapshots asks every data plane for its snapshot (concurrently, bounded
// in time) and remembers them for the counters of ones that exit.
func (p *Plane) snapshots() []dataplane.Snapshot {
	list := p.children()
	out := make([]dataplane.Snapshot, len(list))
	var wg sync.WaitGroup
	for i, c := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _, err := dataplane.Call(dataplane.SocketPath(p.cfg.RuntimeDir, c.pid), dataplane.Request{Op: dataplane.OpStats}, 2*time.Second)
			p.mu.Lock()
			defer p.mu.Unlock()
			if err == nil && resp.Snapshot != nil {
				if !c.retired {
					c.last = *resp.Snapshot
				}
				out[i] = *resp.Snapshot
			} else {
				out[i] = c.last
			}
			out[i].Info.PID, out[i].Info.ID = c.pid, c.id
			if out[i].Info.State == "" || c.state == dataplane.Draining {
				out[i].Info.State = c.state
			}
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Info.StartedAt < out[j].Info.StartedAt })
	return out
}

// addStats adds b's counters to a; gauges too unless countersOnly.
func addStats(a, b server.Stats, countersOnly bool) server.Stats {
	a.AuthSuccess += b.AuthSuccess
	a.AuthFailed += b.AuthFailed
	a.AuthSuccessBy = addMap(a.AuthSuccessBy, b.AuthSuccessBy)
	a.AuthFailedBy = addMap(a.AuthFailedBy, b.AuthFailedBy)
	a.ConnectionsTotal += b.ConnectionsTotal
	a.ForwardsDenied += b.ForwardsDenied
	a.SourcesRefused += b.SourcesRefused
	a.ConnectionsRefused += b.ConnectionsRefused
	a.UDPSendRefused += b.UDPSendRefused
	a.UDPDatagramsDropped += b.UDPDatagramsDropped
	a.BytesSent += b.BytesSent
	a.BytesRecv += b.BytesRecv
	if !countersOnly {
		if a.ForwardsActive == nil {
			a.ForwardsActive = map[string]int64{}
		}
		for k, v := range b.ForwardsActive {
			a.ForwardsActive[k] += v
		}
		a.SessionsActive += b.SessionsActive
		a.ConnectionsActive += b.ConnectionsActive
		a.UDPFlowsActive += b.UDPFlowsActive
		a.Authenticating += b.Authenticating
	}
	return a
}

func addMap[K comparable](a, b map[K]uint64) map[K]uint64 {
	if a == nil {
		a = map[K]uint64{}
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}

// The API's and metrics' view: sums over the data planes.

// Totals sums the data planes for /metrics: counters including those of
// data planes that exited, states, handshake durations.
func (p *Plane) Totals() metrics.Totals {
	snaps := p.snapshots()
	p.mu.Lock()
	t := metrics.Totals{
		Stats:      addStats(server.Stats{}, p.retired, true),
		States:     map[string]int{},
		Handshakes: metrics.Histogram{}.Add(p.hsRet),
	}
	for _, c := range p.planes {
		t.States[c.state]++
	}
	p.mu.Unlock()
	for _, s := range snaps {
		t.Stats = addStats(t.Stats, s.Stats, false)
		t.Handshakes = t.Handshakes.Add(s.Handshakes)
	}
	return t
}

// Status lists the data planes and their sessions for /api/v1/status.
func (p *Plane) Status() ([]api.DataPlane, []server.SessionInfo) {
	planes, sessions := []api.DataPlane{}, []server.SessionInfo{}
	for _, s := range p.snapshots() {
		planes = append(planes, api.DataPlane{PID: s.Info.PID, ID: int(s.Info.ID), State: s.Info.State, StartedAt: s.Info.StartedAt / 1e9,
			ActiveConnections: s.Stats.ConnectionsActive, Sessions: s.Stats.SessionsActive, BytesSent: s.Stats.BytesSent, BytesReceived: s.Stats.BytesRecv})
		sessions = append(sessions, s.Sessions...)
	}
	return planes, sessions
}

// Serving reports whether a data plane is ACTIVE.
func (p *Plane) Serving() bool { return p.newestActive() != nil }

// Started returns when the control plane started.
func (p *Plane) Started() time.Time { return p.started }
