package testutil

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// PeerParams records the QUIC transport parameters that peers announce:
// set its Tracer as a quic.Config's, and Remote returns what the peer of
// the first traced connection announced, as qlog writes it
// ("initial_max_data", "initial_max_stream_data_bidi_remote", ...).
type PeerParams struct {
	once   sync.Once
	remote chan map[string]any
}

func NewPeerParams() *PeerParams { return &PeerParams{remote: make(chan map[string]any, 1)} }

// Tracer writes the connection's qlog into a pipe that it reads for the
// peer's transport parameters.
func (p *PeerParams) Tracer(_ context.Context, isClient bool, id quic.ConnectionID) qlogwriter.Trace {
	pr, pw := io.Pipe()
	go func() {
		r := bufio.NewReader(pr)
		for {
			rec, err := r.ReadBytes(0x1e) // qlog's JSON-SEQ record separator
			var ev struct {
				Name string         `json:"name"`
				Data map[string]any `json:"data"`
			}
			if json.Unmarshal(bytes.TrimSuffix(rec, []byte{0x1e}), &ev) == nil && ev.Name == "transport:parameters_set" && ev.Data["initiator"] == "remote" {
				p.once.Do(func() { p.remote <- ev.Data })
			}
			if err != nil {
				pr.CloseWithError(err)
				return
			}
		}
	}()
	fs := qlogwriter.NewConnectionFileSeq(pw, isClient, id)
	go fs.Run()
	return fs
}

// Remote waits for the first traced connection's peer parameters.
func (p *PeerParams) Remote(ctx context.Context) (map[string]any, error) {
	select {
	case m := <-p.remote:
		p.remote <- m
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
