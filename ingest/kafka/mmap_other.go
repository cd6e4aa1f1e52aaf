//go:build !unix

package kafka

import (
	"errors"
	"io"
	"os"
)

// mapFile falls back to plain memory where mmap is unavailable: the journal
// then protects nothing across a process kill, and the producer's guarantees
// after a crash are those of the spool alone. A graceful Close still writes
// it back, so pending frames survive a restart.
func mapFile(f *os.File, size int) ([]byte, error) {
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

// unmapFile writes the memory back to the file.
func unmapFile(f *os.File, b []byte) error {
	_, err := f.WriteAt(b, 0)
	return err
}
