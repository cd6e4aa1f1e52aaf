//go:build !unix

package configlog

import "os"

// lockFile is a no-op where flock is not available: run one process per
// data directory.
func lockFile(*os.File) error { return nil }
