package metrics

import (
	"math"
	"sync/atomic"
	"time"
)

// HandshakeBuckets are the upper bounds, in seconds, of the handshake
// duration histogram: 1 ms to about 8 s.
var HandshakeBuckets = []float64{0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192}

// Recorder counts handshake durations in HandshakeBuckets. It is what a
// data plane keeps; the control plane sums the snapshots of all of them.
// The zero value is ready to use and safe for concurrent use.
type Recorder struct {
	counts [15]atomic.Uint64 // one per bucket, then +Inf
	sumNs  atomic.Uint64
}

// Observe records one handshake.
func (r *Recorder) Observe(d time.Duration) {
	s := d.Seconds()
	i := len(HandshakeBuckets)
	for j, b := range HandshakeBuckets {
		if s <= b {
			i = j
			break
		}
	}
	r.counts[i].Add(1)
	r.sumNs.Add(uint64(max(d, 0)))
}

// Snapshot returns the recorded values.
func (r *Recorder) Snapshot() Histogram {
	h := Histogram{Buckets: make([]uint64, len(HandshakeBuckets))}
	var cum uint64
	for i := range HandshakeBuckets {
		cum += r.counts[i].Load()
		h.Buckets[i] = cum
	}
	h.Count = cum + r.counts[len(HandshakeBuckets)].Load()
	h.Sum = float64(r.sumNs.Load()) / 1e9
	return h
}

// Histogram is a snapshot of handshake durations: Buckets[i] counts those
// up to HandshakeBuckets[i] (cumulative, as Prometheus has them).
type Histogram struct {
	Count   uint64   `json:"count"`
	Sum     float64  `json:"sum"`
	Buckets []uint64 `json:"buckets"`
}

// Add returns the sum of two snapshots. Bucket lists of another length (a
// data plane of another version) count in Count and Sum only.
func (h Histogram) Add(o Histogram) Histogram {
	out := Histogram{Count: h.Count + o.Count, Sum: h.Sum + o.Sum, Buckets: make([]uint64, len(HandshakeBuckets))}
	for _, src := range [][]uint64{h.Buckets, o.Buckets} {
		if len(src) == len(out.Buckets) {
			for i, v := range src {
				out.Buckets[i] += v
			}
		}
	}
	if math.IsNaN(out.Sum) {
		out.Sum = 0
	}
	return out
}
