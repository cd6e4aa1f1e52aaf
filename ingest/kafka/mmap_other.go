//go:build !unix

package kafka

import "os"

// mapFile falls back to plain memory where mmap is unavailable: the journal
// then protects nothing across a process kill (journalSurvivesKill is false),
// and the producer's guarantees are those of the spool alone.
func mapFile(f *os.File, size int) ([]byte, error) {
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && err.Error() != "EOF" {
		_ = err // a short or missing file reads as zeros: an empty journal
	}
	return b, nil
}

// unmapFile writes the memory back so that a graceful restart still recovers.
func unmapFile(f *os.File, b []byte) error {
	_, err := f.WriteAt(b, 0)
	return err
}

const journalSurvivesKill = false
