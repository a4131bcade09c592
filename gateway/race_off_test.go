//go:build !race

package gateway_test

// raceEnabled: the race detector's shadow memory makes RSS several times the heap.
const raceEnabled = false
