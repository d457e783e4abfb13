package server

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/quicport/quicport/internal/proto"
)

// A shared remote forward is one listening TCP port that several sessions
// of one client process hold together (the client's --quic-connections N
// with a remote forward). The first of them opens the port, the others
// join it, and each accepted connection goes to the member carrying the
// fewest tunneled connections: a connection opened beside a bulk transfer
// gets a QUIC connection of its own, whose packets do not queue behind the
// transfer's. The port closes when its last member leaves.
//
// Members are matched by client identity, port and the token the client
// process sends with its requests, so a second client with the same
// credentials (every PSK client has the same identity) or a restarted one
// does not silently join: it meets the port in use, as with a port that
// is not shared, and may take it over from a client that no longer answers
// (reclaim).

// shareKey names a shared port.
type shareKey struct {
	identity string
	token    uint64
	port     uint16
}

// sharedPort is a shared remote forward's listener and its members.
type sharedPort struct {
	srv *Server
	key shareKey

	opening sync.Mutex // held by the session opening the port, so that the others join it

	mu        sync.Mutex // guards the fields below; taken after srv.sessMu
	ln        *net.TCPListener
	rl        *remoteListener
	members   []member
	done      bool          // closed or handed over; no longer in srv.shared
	accepting chan struct{} // closed when the accept loop has returned
}

// member is a session that shares the port, with the context its
// connections run under.
type member struct {
	ss     *session
	ctx    context.Context
	active bool // the client has its answer: it may get connections
}

// sharedPort returns the shared port for k, making an empty one when there
// is none yet.
func (s *Server) sharedPort(k shareKey) *sharedPort {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	g := s.shared[k]
	if g == nil {
		g = &sharedPort{srv: s, key: k}
		s.shared[k] = g
	}
	return g
}

// join makes ss a member of the port with key k, opening the port when no
// member holds it yet. It calls opened (which answers the client) before ss
// gets connections, with the port's address and how many other members it
// has. It returns the port, or the error of opening it.
func (ss *session) join(ctx context.Context, k shareKey, opened func(addr net.Addr, others int)) (*sharedPort, error) {
	for {
		g := ss.srv.sharedPort(k)
		g.opening.Lock()
		g.mu.Lock()
		done, open := g.done, g.ln != nil
		g.mu.Unlock()
		if done {
			// Closed while we waited; a fresh one is in the map now.
			g.opening.Unlock()
			continue
		}
		if !open {
			ln, err := ss.listenTCP(k.port)
			if err != nil {
				g.opening.Unlock()
				g.closeIfEmpty()
				return nil, err
			}
			g.open(ln)
		}
		others, ok := g.add(member{ss: ss, ctx: ctx})
		if !ok {
			// It closed meanwhile (its last member left).
			g.opening.Unlock()
			continue
		}
		opened(g.ln.Addr(), others)
		g.activate(ss)
		g.opening.Unlock()
		return g, nil
	}
}

// open records the port's listener. The first member starts accepting on
// it (add), once the client has its answer.
func (g *sharedPort) open(ln *net.TCPListener) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.ln = ln
	g.rl = &remoteListener{port: g.key.port, protocol: proto.TCP, file: ln.File, stop: g.stop, group: g}
}

// accept runs the accept loop; g.mu is held.
func (g *sharedPort) accept() {
	ln := g.ln
	g.accepting = make(chan struct{})
	go func() {
		defer close(g.accepting)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*net.TCPConn)
			if !g.dispatch(tc) {
				tc.SetLinger(0)
				tc.Close()
			}
		}
	}()
}

// dispatch hands an accepted connection to the member carrying the fewest
// connections, if that member's limits admit it. A member is counted while
// g.mu is held, so leave, which takes g.mu, returns only once no more
// connections can be handed to it.
func (g *sharedPort) dispatch(c *net.TCPConn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	var best *member
	for i := range g.members {
		if m := &g.members[i]; m.active && (best == nil || m.ss.active.Load() < best.ss.active.Load()) {
			best = m
		}
	}
	return best != nil && best.ss.takeRemote(best.ctx, c)
}

// add makes m a member that gets no connections yet (activate), unless
// the port has closed, and returns how many others it has. A client
// process opens a new session when it has lost one, so the others are
// asked whether their clients still answer: connections placed on a lost
// one would wait for its idle timeout. Those that do not answer are closed.
func (g *sharedPort) add(m member) (others int, ok bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return 0, false
	}
	for _, o := range g.members {
		o.ss.wg.Add(1) // a member's session waits for its wg only after it left
		go func() {
			defer o.ss.wg.Done()
			o.ss.closeIfSilent()
		}()
	}
	others = len(g.members)
	g.members = append(g.members, m)
	m.ss.rpf.Store(g.rl)
	return others, true
}

// activate lets ss's member get connections, and starts accepting when it
// is the first.
func (g *sharedPort) activate(ss *session) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := range g.members {
		if g.members[i].ss == ss {
			g.members[i].active = true
		}
	}
	if g.accepting == nil && !g.done {
		g.accept()
	}
}

// leave removes ss; the last member to leave closes the port.
func (g *sharedPort) leave(ss *session) {
	g.srv.sessMu.Lock()
	g.mu.Lock()
	for i, m := range g.members {
		if m.ss == ss {
			g.members = append(g.members[:i], g.members[i+1:]...)
			break
		}
	}
	var accepting chan struct{}
	if len(g.members) == 0 {
		accepting = g.retire()
	}
	g.mu.Unlock()
	g.srv.sessMu.Unlock()
	if accepting != nil {
		<-accepting
	}
}

// closeIfEmpty forgets a port nobody holds (opening it failed).
func (g *sharedPort) closeIfEmpty() {
	g.mu.Lock()
	empty := len(g.members) == 0
	g.mu.Unlock()
	if empty {
		g.stop()
	}
}

// stop closes the listener (if open) and forgets the port; it returns once
// nothing more is accepted. It is the remote listener's stop: on a hand-over
// the socket lives on in the new data plane, and the members end once
// their connections have (see handOver).
func (g *sharedPort) stop() {
	g.srv.sessMu.Lock()
	g.mu.Lock()
	accepting := g.retire()
	g.mu.Unlock()
	g.srv.sessMu.Unlock()
	if accepting != nil {
		<-accepting
	}
}

// retire forgets the port and closes its listener, with srv.sessMu and
// g.mu held, so that a session that joins from now on finds it done and
// opens the port afresh. It returns the accept loop's channel to wait for,
// or nil.
func (g *sharedPort) retire() chan struct{} {
	if g.done {
		return nil
	}
	if g.srv.shared[g.key] == g {
		delete(g.srv.shared, g.key)
	}
	g.done = true
	if g.ln == nil {
		return nil
	}
	g.ln.Close()
	return g.accepting
}

// list returns the members.
func (g *sharedPort) list() []member {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]member(nil), g.members...)
}

// closeWhenIdle ends every member once its connections have ended: the
// port moved to another session or data plane.
func (g *sharedPort) closeWhenIdle() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.members {
		m.ss.wg.Add(1)
		go func() {
			defer m.ss.wg.Done()
			m.ss.closeWhenIdle()
		}()
	}
}

// answers reports whether any member's client still answers (see
// session.answers): a port one of them holds is rightly in use.
func (g *sharedPort) answers() bool {
	ms := g.list()
	alive := make(chan bool, len(ms))
	for _, m := range ms {
		go func() { alive <- m.ss.answers(m.ss.probeWait()) }()
	}
	for range ms {
		if <-alive {
			return true
		}
	}
	return false
}

// closeIfSilent closes the session if its client no longer answers.
func (ss *session) closeIfSilent() {
	if !ss.probing.CompareAndSwap(false, true) {
		return
	}
	defer ss.probing.Store(false)
	if ss.answers(ss.probeWait()) {
		return
	}
	ss.log.Info("closing session: its client stopped answering and opened another session for the shared port")
	ss.conn.CloseWithError(proto.ConnClosed, "superseded by a new session of the same client")
}

// probeWait is how long answers waits for a client. A live client
// acknowledges within milliseconds; this is long enough for a lost probe to
// be sent again on any link a session survives, and for a busy client to
// be scheduled: taking a live client's port would be worse than a new one
// waiting two seconds.
func (ss *session) probeWait() time.Duration {
	return 2*time.Second + 3*ss.conn.ConnectionStats().SmoothedRTT
}
