//go:build race

package integration

// raceSlowdown widens bounds on timings that compare a loaded and an
// unloaded run in one process: under the race detector the load generator's
// own (instrumented) code competes for the same two cores.
const raceSlowdown = 1.5
