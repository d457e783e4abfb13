//go:build linux && !race

package integration

const raceSlowdown = 1.0
