//go:build unix

package configlog

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on the log file, so that two
// processes never append to the same log (which would interleave frames).
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return fmt.Errorf("configlog: %s is in use by another process", f.Name())
	}
	if err != nil {
		return fmt.Errorf("configlog: lock %s: %w", f.Name(), err)
	}
	return nil
}
