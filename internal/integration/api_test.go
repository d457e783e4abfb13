package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/quicport/quicport/internal/api"
	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
	"github.com/quicport/quicport/internal/metrics"
	"github.com/quicport/quicport/internal/server"
	"github.com/quicport/quicport/internal/testutil"
)

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// The API reports health, and metrics whose values are exactly what
// happened: N connections of M bytes each way, one good and one bad client.
func TestAPIHealthMetricsStatus(t *testing.T) {
	psk := auth.PSK("api-test-psk-0123456789")
	var hist prometheus.Histogram
	srv, err := server.Listen(server.Config{
		Listen: "127.0.0.1:0", Certificate: testutil.Identity(t), Auth: auth.ServerConfig{PSK: psk},
		ObserveHandshake: func(d time.Duration) { hist.Observe(d.Seconds()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	reg, h := metrics.Registry(srv)
	hist = h
	apiSrv, err := api.Listen("127.0.0.1:0", srv, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + apiSrv.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	apiDone := make(chan error, 1)
	go func() { apiDone <- apiSrv.Serve(ctx) }()
	defer func() { cancel(); <-apiDone }()

	if code, body := get(t, base+"/healthcheck"); code != http.StatusServiceUnavailable || !strings.Contains(string(body), `"NOT_SERVING"`) {
		t.Fatalf("before Serve: %d %s", code, body)
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ctx) }()
	waitFor(t, func() bool { code, _ := get(t, base+"/healthcheck"); return code == http.StatusOK }, "SERVING")
	if _, body := get(t, base+"/healthcheck"); strings.TrimSpace(string(body)) != `{"status":"SERVING"}` {
		t.Fatalf("healthcheck body %s", body)
	}

	echo := testutil.EchoServer(t)
	cfg := client.Config{Server: srv.Addr().String(), TOFU: testutil.KnownHosts(t),
		Forward: client.Forward{Source: mustAddr(t, "127.0.0.1:0"), Dest: mustAddr(t, echo)}}
	bad := cfg
	bad.Auth = auth.ClientConfig{PSK: auth.PSK("wrong")}
	if _, err := testutil.TryClient(t, bad); err == nil {
		t.Fatal("bad client authenticated")
	}
	cfg.Auth = auth.ClientConfig{PSK: psk}
	c := testutil.StartClient(t, cfg)
	const n, m = 7, 100_000
	for i := range n {
		if err := testutil.EchoCheck(c.Ready.LocalListen.String(), m, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return srv.Stats().ConnectionsActive == 0 }, "connections to end")

	_, body := get(t, base+"/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string) float64 {
		mf, ok := mfs[name]
		if !ok {
			t.Fatalf("metric %s missing", name)
		}
		mt := mf.GetMetric()[0]
		switch {
		case mt.Counter != nil:
			return mt.Counter.GetValue()
		case mt.Gauge != nil:
			return mt.Gauge.GetValue()
		case mt.Histogram != nil:
			return float64(mt.Histogram.GetSampleCount())
		}
		return -1
	}
	for name, want := range map[string]float64{
		"quicport_connections_total":          n,
		"quicport_connections_active":         0,
		"quicport_bytes_sent_total":           n * m,
		"quicport_bytes_received_total":       n * m,
		"quicport_auth_psk_success_total":     1,
		"quicport_auth_psk_failed_total":      1,
		"quicport_auth_x25519_success_total":  0,
		"quicport_auth_x25519_failed_total":   0,
		"quicport_sessions_active":            1,
		"quicport_handshake_duration_seconds": 1,
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if up := value("quicport_uptime_seconds"); up <= 0 {
		t.Errorf("uptime %v", up)
	}

	// promtool agrees the exposition is well formed.
	promtool := need(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	_, body = get(t, base+"/api/v1/status")
	var status struct {
		DataPlanes []map[string]any     `json:"data_planes"`
		Sessions   []server.SessionInfo `json:"sessions"`
	}
	if err := json.Unmarshal(body, &status); err != nil {
		t.Fatal(err)
	}
	if len(status.DataPlanes) != 1 || status.DataPlanes[0]["state"] != "ACTIVE" || len(status.Sessions) != 1 {
		t.Fatalf("status = %s", body)
	}
	if s := status.Sessions[0]; s.Method != "psk" || s.BytesSent != n*m || !strings.HasPrefix(s.Forward, "local ") {
		t.Errorf("session = %+v", s)
	}
	if strings.Contains(string(body), string(psk)) {
		t.Fatal("the PSK is in the status")
	}
	c.Stop()
	cancel()
	if err := <-serveDone; err != nil {
		t.Fatal(err)
	}
}
