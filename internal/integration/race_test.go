//go:build linux && race

package integration

// raceSlowdown widens bounds on timings that compare a loaded and an
// unloaded run: under the race detector the server's own code, which the
// load exercises, runs several times slower, so the same load costs it
// several times more CPU than in a normal build.
const raceSlowdown = 1.5
