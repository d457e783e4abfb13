//go:build race

package tunnel

// raceEnabled says the race detector is on. Its sync.Pool drops a share of
// what is put back on purpose, so pooled buffers are allocated again and
// allocation counts mean nothing.
const raceEnabled = true
