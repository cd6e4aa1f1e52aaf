package limiter

import (
	"syscall"
	"unsafe"
)

const (
	hugePage      = 2 << 20
	minHugeTable  = 256 << 10 // smaller tables are not worth a system call
	madvHugepage  = 14        // MADV_HUGEPAGE
	hugePagesWork = true
)

// adviseHuge asks Linux to back a table's memory with transparent huge
// pages (with THP in "madvise" mode, the common default, Go's heap never gets
// them). With 4 KiB pages nearly every call to a big table misses the TLB
// as well as the cache. The advice covers the 2 MiB-aligned range around the
// table, so the heap memory next to it may get huge pages too.
func adviseHuge(slots []app) {
	size := uintptr(len(slots)) * unsafe.Sizeof(app{})
	if size < minHugeTable {
		return
	}
	start := uintptr(unsafe.Pointer(&slots[0]))
	end := (start + size + hugePage - 1) &^ (hugePage - 1)
	start &^= hugePage - 1
	// Advice only: a failure (old kernel, THP disabled) changes nothing.
	_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, start, end-start, madvHugepage)
}
