//go:build !race

package smapi

const raceEnabled = false
