package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/quic-go/quic-go"
)

// A control-stream read that fails because the connection ended is not the
// client's protocol violation; one that fails on the client's behaviour is.
func TestConnectionEnded(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancelCause(context.Background())
	cancel(errors.New("closed by us"))
	wrap := func(err error) error { return fmt.Errorf("read: %w", err) }
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		err   error
		ended bool
	}{
		{"connection context done", gone, io.EOF, true},
		{"idle timeout (client killed or cut off)", live, wrap(&quic.IdleTimeoutError{}), true},
		{"stateless reset (client lost its state)", live, wrap(&quic.StatelessResetError{}), true},
		{"closed by us", live, wrap(&quic.ApplicationError{Remote: false}), true},
		{"closed by the client without SessionClose", live, wrap(&quic.ApplicationError{Remote: true}), false},
		{"control stream ended", live, io.EOF, false},
		{"malformed message", live, errors.New("bad message type 0x99"), false},
	} {
		if got := connectionEnded(tc.ctx, tc.err) != nil; got != tc.ended {
			t.Errorf("%s: ended = %v, want %v", tc.name, got, tc.ended)
		}
	}
}
