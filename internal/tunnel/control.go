package tunnel

import (
	"context"
	"io"
	"sync"

	"github.com/quicport/quicport/internal/proto"
)

// Control is a session's control stream. Reads happen on the owner's
// goroutine; writes go through a queue drained by one writer goroutine, so
// no caller ever holds a lock while the peer's flow control makes a write
// wait, and one slow control stream stalls only its own session.
type Control struct {
	w    io.Writer
	r    *proto.Reader
	out  chan []byte
	done chan struct{}
	wg   sync.WaitGroup
	err  error // why the writer stopped; read after done is closed
}

// controlQueue bounds the messages waiting to be written.
const controlQueue = 256

// NewControl starts the writer for rw. The writer stops when ctx ends or a
// write fails; Wait waits for it.
func NewControl(ctx context.Context, rw io.ReadWriter) *Control {
	c := &Control{w: rw, r: proto.NewReader(rw), out: make(chan []byte, controlQueue), done: make(chan struct{})}
	c.wg.Add(1)
	go c.writer(ctx)
	return c
}

func (c *Control) writer(ctx context.Context) {
	defer c.wg.Done()
	defer close(c.done)
	for {
		select {
		case <-ctx.Done():
			// A QUIC connection's context carries why the connection
			// closed (the peer's close code and reason); callers of Send
			// need that, not a bare "closed pipe".
			c.err = context.Cause(ctx)
			return
		case b := <-c.out:
			if _, err := c.w.Write(b); err != nil {
				c.err = err
				return
			}
		}
	}
}

// Send queues m for writing. It blocks only while the queue is full, and
// returns early when ctx ends or the writer has stopped.
func (c *Control) Send(ctx context.Context, m proto.Message) error {
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
	case c.out <- b:
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
