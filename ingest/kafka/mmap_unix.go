//go:build unix

package kafka

import (
	"fmt"
	"os"
	"syscall"
)

// mapFile maps size bytes of f read-write and shared: stores into the
// mapping go straight to the file's pages in the page cache, so they outlive
// the process (SIGKILL, OOM kill, panic) without any system call.
func mapFile(f *os.File, size int) ([]byte, error) {
	b, err := syscall.Mmap(int(f.Fd()), 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("journal: mmap %s: %w", f.Name(), err)
	}
	return b, nil
}

// unmapFile releases a mapping made by mapFile.
func unmapFile(_ *os.File, b []byte) error { return syscall.Munmap(b) }
