// Package metrics exposes a quicport server's counters to Prometheus. The
// values are read from the server at scrape time, so they are never out of
// step with what the server counted; nothing here holds state of its own
// except the handshake histogram.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/quicport/quicport/internal/auth"
	"github.com/quicport/quicport/internal/server"
)

// Source is what the collector reads: the control plane's sum over its data
// planes.
type Source interface {
	Started() time.Time
	// Totals is called once per scrape, so every value of a scrape comes
	// from one look at the data planes.
	Totals() Totals
}

// Totals are the data planes' numbers, summed.
type Totals struct {
	// Stats are the counters, including those of data planes that have
	// exited, so counters never go back.
	Stats server.Stats
	// States counts data planes by state (ACTIVE, DRAINING, ...).
	States     map[string]int
	Handshakes Histogram
}

// States are the data plane states, in the order metrics list them.
var States = []string{"STARTING", "ACTIVE", "DRAINING", "TERMINATED"}

// Registry returns a registry with quicport's metrics for src, plus the Go
// runtime and process collectors.
func Registry(src Source) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{src: src}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

var (
	uptime      = desc("quicport_uptime_seconds", "Server uptime in seconds")
	connsTotal  = desc("quicport_connections_total", "Total number of tunneled connections since server start")
	connsActive = desc("quicport_connections_active", "Current number of active tunneled connections")
	bytesSent   = desc("quicport_bytes_sent_total", "Total bytes sent to clients")
	bytesRecv   = desc("quicport_bytes_received_total", "Total bytes received from clients")
	authPSKOK   = desc("quicport_auth_psk_success_total", "Total number of successful PSK authentications")
	authPSKFail = desc("quicport_auth_psk_failed_total", "Total number of failed PSK authentications")
	authKeyOK   = desc("quicport_auth_x25519_success_total", "Total number of successful X25519 authentications")
	authKeyFail = desc("quicport_auth_x25519_failed_total", "Total number of failed X25519 authentications")
	authTLSOK   = desc("quicport_auth_mtls_success_total", "Total number of successful mTLS-only authentications")
	authTLSFail = desc("quicport_auth_mtls_failed_total", "Total number of failed mTLS-only authentications")
	sessions    = desc("quicport_sessions_active", "Current number of authenticated client sessions")
	udpFlows    = desc("quicport_udp_flows_active", "Current number of UDP flows")
	denied      = desc("quicport_forwards_denied_total", "Forward requests refused by permit rules")
	refusedSrc  = desc("quicport_connections_refused_before_auth_total", "QUIC connections refused before authentication (failed-auth budget, busy)")
	refusedConn = desc("quicport_tunneled_connections_refused_total", "Tunneled connections refused by a session's limits")
	sendRefused = desc("quicport_udp_send_refused_total", "UDP datagrams the kernel refused to send (firewall, full queue, no route), treated as lost packets")
	udpDropped  = desc("quicport_udp_datagrams_dropped_total", "Datagrams arriving at remote UDP forwards that were dropped: their flow's stream was backed up, or the session had no room for another flow")
	authing     = desc("quicport_connections_authenticating", "QUIC connections that have not authenticated yet")
	serving     = prometheus.NewDesc("quicport_dataplane_state", "Number of data planes in each state", []string{"state"}, nil)
	forwards    = prometheus.NewDesc("quicport_forwards_active", "Established forwards by kind (local, remote) and protocol", []string{"kind", "protocol"}, nil)
	handshake   = prometheus.NewDesc("quicport_handshake_duration_seconds", "Time from accepting a QUIC connection to its successful authentication", nil, nil)
)

func desc(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }

type collector struct{ src Source }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{uptime, connsTotal, connsActive, bytesSent, bytesRecv, authPSKOK, authPSKFail,
		authKeyOK, authKeyFail, authTLSOK, authTLSFail, sessions, udpFlows, denied, refusedSrc, refusedConn, sendRefused, udpDropped, authing, serving, forwards, handshake} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	t := c.src.Totals()
	st := t.Stats
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(uptime, time.Since(c.src.Started()).Seconds())
	counter(connsTotal, st.ConnectionsTotal)
	gauge(connsActive, float64(st.ConnectionsActive))
	counter(bytesSent, st.BytesSent)
	counter(bytesRecv, st.BytesRecv)
	counter(authPSKOK, st.AuthSuccessBy[auth.MethodPSK])
	counter(authPSKFail, st.AuthFailedBy[auth.MethodPSK])
	counter(authKeyOK, st.AuthSuccessBy[auth.MethodX25519])
	counter(authKeyFail, st.AuthFailedBy[auth.MethodX25519])
	counter(authTLSOK, st.AuthSuccessBy[auth.MethodMTLS])
	counter(authTLSFail, st.AuthFailedBy[auth.MethodMTLS])
	gauge(sessions, float64(st.SessionsActive))
	gauge(udpFlows, float64(st.UDPFlowsActive))
	counter(denied, st.ForwardsDenied)
	counter(refusedSrc, st.SourcesRefused)
	counter(refusedConn, st.ConnectionsRefused)
	counter(sendRefused, st.UDPSendRefused)
	counter(udpDropped, st.UDPDatagramsDropped)
	gauge(authing, float64(st.Authenticating))
	states := t.States
	for _, s := range States {
		ch <- prometheus.MustNewConstMetric(serving, prometheus.GaugeValue, float64(states[s]), s)
	}
	for _, kind := range []string{"local", "remote"} {
		for _, protocol := range []string{"tcp", "udp"} {
			ch <- prometheus.MustNewConstMetric(forwards, prometheus.GaugeValue, float64(st.ForwardsActive[kind+"/"+protocol]), kind, protocol)
		}
	}
	h := t.Handshakes
	buckets := make(map[float64]uint64, len(HandshakeBuckets))
	for i, b := range HandshakeBuckets {
		if i < len(h.Buckets) {
			buckets[b] = h.Buckets[i]
		}
	}
	ch <- prometheus.MustNewConstHistogram(handshake, h.Count, h.Sum, buckets)
}
