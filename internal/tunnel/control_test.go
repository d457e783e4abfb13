package tunnel

import (
	"context"
	"errors"
	"io"
	"testing"

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
