package tunnel

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quicport/quicport/internal/proto"
)

// A Send after the connection closed reports why it closed (the cause of
// the connection's context), so a client refused right after its handshake
// says the server's reason instead of "closed pipe".
func TestControlSendReportsWhyTheConnectionClosed(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	ctx, cancel := context.WithCancelCause(context.Background())
	c := NewControl(ctx, struct {
		io.Reader
		io.Writer
	}{pr, pw})
	refused := errors.New("this client key already has 1 sessions")
	cancel(refused)
	c.Wait()
	if err := c.Send(context.Background(), proto.SessionClose{}); !errors.Is(err, refused) {
		t.Fatalf("Send after the connection closed = %v, want %v", err, refused)
	}
}

// A failed write stops the writer, and later Sends report the write error.
func TestControlSendReportsWriteError(t *testing.T) {
	pr, pw := io.Pipe()
	broken := errors.New("stream reset by peer")
	pr.CloseWithError(broken)
	c := NewControl(context.Background(), struct {
		io.Reader
		io.Writer
	}{pr, pw})
	if err := c.Send(context.Background(), proto.SessionClose{}); err != nil {
		t.Fatalf("first Send only queues: %v", err)
	}
	c.Wait()
	if err := c.Send(context.Background(), proto.SessionClose{}); !errors.Is(err, broken) {
		t.Fatalf("Send after a failed write = %v, want %v", err, broken)
	}
}

// writes records each Write, so a test sees which messages shared one.
type writes struct {
	mu  sync.Mutex
	got [][]byte
	any chan struct{}
}

func (w *writes) Read([]byte) (int, error) { select {} }

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.got = append(w.got, append([]byte(nil), p...))
	w.mu.Unlock()
	select {
	case w.any <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *writes) list() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got)
}

// Messages from Notify wait for the next Send and go out in one write
// with it, in order; alone, they still go out (after notifyDelay).
func TestControlNotifyWaitsForTheNextMessage(t *testing.T) {
	w := &writes{any: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewControl(ctx, w)
	first, second := proto.ConnectionClose{ConnID: 1}, proto.ConnectionClose{ConnID: 2, Reason: proto.ReasonRefused}
	next := proto.NewConnection{ConnID: 3, Protocol: proto.TCP}
	for _, m := range []proto.Message{first, second} {
		if err := c.Notify(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Send(ctx, next); err != nil {
		t.Fatal(err)
	}
	<-w.any
	var want []byte
	for _, m := range []proto.Message{first, second, next} {
		want, _ = proto.Append(want, m)
	}
	if got := w.list(); len(got) != 1 || !bytes.Equal(got[0], want) {
		t.Fatalf("writes %x, want one write %x (both notices, then the message)", got, want)
	}

	alone := proto.ConnectionClose{ConnID: 4}
	if err := c.Notify(ctx, alone); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.any:
	case <-time.After(10 * time.Second):
		t.Fatal("a notice with nothing after it was never written")
	}
	want, _ = proto.Append(nil, alone)
	if got := w.list(); len(got) != 2 || !bytes.Equal(got[1], want) {
		t.Fatalf("writes %x, want the lone notice %x written by itself", got, want)
	}
}
