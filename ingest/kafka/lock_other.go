//go:build !unix

package kafka

import (
	"os"
)

// lockDir is a no-op where flock is unavailable: do not share a SpoolDir.
func lockDir(dir string) (*os.File, error) {
	return nil, os.MkdirAll(dir, 0o755)
}
