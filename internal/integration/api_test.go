//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/client"
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
	pskFile := filepath.Join(t.TempDir(), "psk")
	if err := os.WriteFile(pskFile, []byte(psk), 0o600); err != nil {
		t.Fatal(err)
	}
	// The real server: a control plane whose API sums what its data plane
	// reports over IPC.
	proc := testutil.StartProcess(t, quicportBin, []string{"XDG_CONFIG_HOME=" + t.TempDir()},
		"server", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--psk-file", pskFile)
	started := proc.WaitLog("quicport server listening", 1, 30*time.Second)
	base := "http://" + started["api"].(string)
	serverAddr := started["listen"].(string)
	if _, body := get(t, base+"/healthcheck"); strings.TrimSpace(string(body)) != `{"status":"SERVING"}` {
		t.Fatalf("healthcheck body %s", body)
	}

	echo := testutil.EchoServer(t)
	cfg := client.Config{Server: serverAddr, Insecure: true,
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
	var mfs map[string]*dto.MetricFamily
	var body []byte
	scrape := func() {
		_, body = get(t, base+"/metrics")
		parser := expfmt.NewTextParser(model.UTF8Validation)
		var err error
		if mfs, err = parser.TextToMetricFamilies(bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	value := func(name string, labels ...string) float64 {
		mf, ok := mfs[name]
		if !ok {
			t.Fatalf("metric %s missing", name)
		}
		mt := mf.GetMetric()[0]
		if len(labels) > 0 {
			// The series whose labels include every name=value pair.
			mt = nil
			for _, m := range mf.GetMetric() {
				matched := 0
				for _, l := range m.GetLabel() {
					for i := 0; i+1 < len(labels); i += 2 {
						if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
							matched++
						}
					}
				}
				if matched == len(labels)/2 {
					mt = m
				}
			}
			if mt == nil {
				t.Fatalf("no %s series with %v", name, labels)
			}
		}
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
	waitFor(t, func() bool { scrape(); return value("quicport_connections_active") == 0 }, "connections to end")
	if v := value("quicport_dataplane_state", "state", "ACTIVE"); v != 1 {
		t.Errorf("ACTIVE data planes = %v, want 1", v)
	}
	if v := value("quicport_forwards_active", "kind", "local", "protocol", "tcp"); v != 1 {
		t.Errorf("local TCP forwards = %v, want 1", v)
	}
	if v := value("quicport_forwards_active", "kind", "remote", "protocol", "tcp"); v != 0 {
		t.Errorf("remote TCP forwards = %v, want 0", v)
	}
	for name, want := range map[string]float64{
		"quicport_connections_total":           n,
		"quicport_connections_active":          0,
		"quicport_bytes_sent_total":            n * m,
		"quicport_bytes_received_total":        n * m,
		"quicport_auth_psk_success_total":      1,
		"quicport_auth_psk_failed_total":       1,
		"quicport_auth_x25519_success_total":   0,
		"quicport_auth_x25519_failed_total":    0,
		"quicport_sessions_active":             1,
		"quicport_handshake_duration_seconds":  1,
		"quicport_udp_send_refused_total":      0,
		"quicport_udp_datagrams_dropped_total": 0,
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
	cmd := testutil.Command(t, time.Minute, promtool, "check", "metrics")
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
	if len(status.DataPlanes) != 1 || status.DataPlanes[0]["state"] != "ACTIVE" || status.DataPlanes[0]["pid"] == nil || len(status.Sessions) != 1 {
		t.Fatalf("status = %s", body)
	}
	if s := status.Sessions[0]; s.Method != "psk" || s.BytesSent != n*m || !strings.HasPrefix(s.Forward, "local ") {
		t.Errorf("session = %+v", s)
	}
	if strings.Contains(string(body), string(psk)) {
		t.Fatal("the PSK is in the status")
	}
	c.Stop()
	// SIGINT stops the data plane and then the server.
	proc.Signal(syscall.SIGINT)
	if code := proc.Wait(20 * time.Second); code != 0 {
		t.Fatalf("server exit code %d after SIGINT", code)
	}
}
