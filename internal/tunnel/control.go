package tunnel

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/quicport/quicport/internal/proto"
)

// Control is a session's control stream. Reads happen on the owner's
// goroutine; writes go through a queue drained by one writer goroutine, so
// no caller ever holds a lock while the peer's flow control makes a write
// wait, and one slow control stream stalls only its own session.
type Control struct {
	w    io.Writer
	r    *proto.Reader
	out  chan queued
	done chan struct{}
	wg   sync.WaitGroup
	err  error // why the writer stopped; read after done is closed
}

// queued is an encoded message waiting for the writer; later marks one
// from Notify.
type queued struct {
	b     []byte
	later bool
}

const (
	// controlQueue bounds the messages waiting to be written.
	controlQueue = 256
	// notifyDelay is how long a message from Notify may wait for others
	// to share its write (and so its QUIC packet), and notifyBytes how
	// much such messages may add up to before they are written anyway.
	notifyDelay = 20 * time.Millisecond
	notifyBytes = 4 << 10
)

// NewControl starts the writer for rw. The writer stops when ctx ends or a
// write fails; Wait waits for it.
func NewControl(ctx context.Context, rw io.ReadWriter) *Control {
	c := &Control{w: rw, r: proto.NewReader(rw), out: make(chan queued, controlQueue), done: make(chan struct{})}
	c.wg.Add(1)
	go c.writer(ctx)
	return c
}

func (c *Control) writer(ctx context.Context) {
	defer c.wg.Done()
	defer close(c.done)
	// held collects messages from Notify until another message, the
	// delay or their size lets them go; they are written in order with
	// what follows them.
	var held []byte
	hold := time.NewTimer(notifyDelay)
	hold.Stop()
	for {
		var b []byte
		select {
		case <-ctx.Done():
			// A QUIC connection's context carries why the connection
			// closed (the peer's close code and reason); callers of Send
			// need that, not a bare "closed pipe".
			c.err = context.Cause(ctx)
			return
		case q := <-c.out:
			if q.later {
				if len(held) == 0 {
					hold.Reset(notifyDelay)
				}
				held = append(held, q.b...)
				if len(held) < notifyBytes {
					continue
				}
				b = held
			} else if len(held) > 0 {
				b = append(held, q.b...)
			} else {
				b = q.b
			}
		case <-hold.C:
			b = held
		}
		hold.Stop()
		if _, err := c.w.Write(b); err != nil {
			c.err = err
			return
		}
		held = held[:0]
	}
}

// Send queues m for writing. It blocks only while the queue is full, and
// returns early when ctx ends or the writer has stopped.
func (c *Control) Send(ctx context.Context, m proto.Message) error {
	return c.queue(ctx, m, false)
}

// Notify is Send for a message whose timing nothing depends on (a
// ConnectionClose, which the peer only logs): it waits up to notifyDelay
// for other messages, and goes out with the first of them. A connection
// that ends then costs no QUIC packet, and no wake-up of the peer, of its
// own: most often its ConnectionClose shares one with the next
// connection's NewConnection, or with other ConnectionCloses.
func (c *Control) Notify(ctx context.Context, m proto.Message) error {
	return c.queue(ctx, m, true)
}

func (c *Control) queue(ctx context.Context, m proto.Message, later bool) error {
	b, err := proto.Append(nil, m)
	if err != nil {
		return err
	}
	// A stopped writer wins over free room in the queue, which select
	// would otherwise pick at random.
	select {
	case <-c.done:
		return c.err
	default:
	}
	select {
	case c.out <- queued{b, later}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.err
	}
}

// Read reads the next control message. Only one goroutine may call it.
func (c *Control) Read() (proto.Message, error) { return c.r.Read() }

// Wait waits for the writer goroutine to stop.
func (c *Control) Wait() { c.wg.Wait() }
