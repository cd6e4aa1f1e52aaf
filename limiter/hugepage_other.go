//go:build !linux

package limiter

const hugePagesWork = false

func adviseHuge([]app) {}
