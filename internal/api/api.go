// Package api is the server's HTTP API: health for load balancers and
// orchestrators, Prometheus metrics, and a JSON status for tools. It serves
// read-only views and never exposes secrets.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quicport/quicport/internal/server"
)

// DefaultListen is the default API address.
const DefaultListen = "0.0.0.0:39001"

// Source is the server the API describes: the control plane's view of its
// data planes.
type Source interface {
	// Serving reports whether a data plane accepts new connections.
	Serving() bool
	// Status lists the data planes and their sessions, from one look at
	// them.
	Status() ([]DataPlane, []server.SessionInfo)
}

// DataPlane is one data plane in /api/v1/status.
type DataPlane struct {
	PID               int    `json:"pid"`
	ID                int    `json:"id,omitempty"`
	State             string `json:"state"`
	StartedAt         int64  `json:"started_at"`
	ActiveConnections int64  `json:"active_connections"`
	Sessions          int64  `json:"sessions"`
	BytesSent         uint64 `json:"bytes_sent"`
	BytesReceived     uint64 `json:"bytes_received"`
}

// Server is the HTTP API. Create it with Listen, run it with Serve.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen binds the API's TCP address.
func Listen(addr string, src Source, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("API listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthcheck", func(w http.ResponseWriter, _ *http.Request) {
		status, code := "SERVING", http.StatusOK
		if !src.Serving() {
			status, code = "NOT_SERVING", http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]string{"status": status})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/v1/status", func(w http.ResponseWriter, _ *http.Request) {
		planes, sessions := src.Status()
		writeJSON(w, http.StatusOK, map[string]any{
			"data_planes": planes,
			"sessions":    sessions,
		})
	})
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{ln: ln, log: log, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}, nil
}

// Addr returns the address the API listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until ctx ends, then shuts down within 5 s.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if e := <-errc; !errors.Is(e, http.ErrServerClosed) && err == nil {
		err = e
	}
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
