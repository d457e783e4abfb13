package api

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/quicport/quicport/internal/server"
)

// source is a server view whose data planes the test sets; the real
// control plane behind this interface is tested end to end in
// internal/integration.
type source struct {
	serving atomic.Bool
	mu      sync.Mutex
	planes  []DataPlane
}

func (s *source) Serving() bool { return s.serving.Load() }
func (s *source) Status() ([]DataPlane, []server.SessionInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.planes, []server.SessionInfo{}
}

// /healthcheck is 200 SERVING only while a data plane is ACTIVE, else 503
// NOT_SERVING (during a restart without BPF, or after a crash until the
// replacement serves).
func TestHealthcheckFollowsActiveDataPlane(t *testing.T) {
	src := &source{}
	srv, err := Listen("127.0.0.1:0", src, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get("http://" + srv.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v: %s", path, err, b)
		}
		return resp.StatusCode, m
	}
	for _, tc := range []struct {
		name    string
		serving bool
		code    int
		status  string
	}{
		{"no active data plane", false, http.StatusServiceUnavailable, "NOT_SERVING"},
		{"an active data plane", true, http.StatusOK, "SERVING"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src.serving.Store(tc.serving)
			if code, m := get("/healthcheck"); code != tc.code || m["status"] != tc.status {
				t.Fatalf("/healthcheck = %d %v, want %d %s", code, m, tc.code, tc.status)
			}
		})
	}
	src.mu.Lock()
	src.planes = []DataPlane{{PID: 7, State: "DRAINING"}, {PID: 8, State: "ACTIVE"}}
	src.mu.Unlock()
	_, m := get("/api/v1/status")
	planes, _ := m["data_planes"].([]any)
	if len(planes) != 2 || planes[0].(map[string]any)["state"] != "DRAINING" || planes[1].(map[string]any)["pid"] != float64(8) {
		t.Fatalf("status data planes = %v", m["data_planes"])
	}
}
