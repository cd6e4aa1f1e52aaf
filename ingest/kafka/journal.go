package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The ack journal makes an accepted event survive the death of the process
// while it is only in memory: in franz-go's buffer, or in the spool's write
// buffer. It is one file, SpoolDir/journal,
// mapped MAP_SHARED: Append copies the event's frame into the mapping before
// it returns, which is a memcpy into the page cache — no system call, no
// fsync — and the kernel keeps those pages when the process is killed. A
// frame is marked done when the event is durable elsewhere (Kafka
// acknowledged it, or it was written to a spool file), and a New producer on the
// same directory resends the frames not marked done, after checking Kafka for
// the ones that did arrive (see recover.go). A machine crash or power loss
// can lose pages the kernel had not written back: out of scope, like the
// spool's unsynced tail.
//
// Layout: a 128 KiB header, then journalSegments segments of segBytes each.
//
//	header  0: "SLCJRNL1", u32 version, u32 segments, u64 segBytes, u64 CRC-32C of bytes 0..24
//	        4096 and 40960: two checkpoint slots (see writeCheckpoint)
//	segment 0: u64 generation, u64 ^generation, 48 bytes reserved; frames from byte 64
//	frame   0: u32 payload length, u32 CRC-32C of the payload, u32 state (0 pending,
//	           1 done), u32 kind (jDirect, jMain), u64 generation, u64 sequence, u64 epoch,
//	           payload (the spool's frame payload: varint timestamp, uvarint key
//	           length, key, encoded event), padding to 8 bytes
//
// Segments are used round robin; one is reused only when every frame in it
// is done, so a frame stuck in flight pins its segment and no other. Frames
// are written under a mutex, so only the last frame written can be torn by a
// kill, and a torn frame was never acknowledged (Append had not returned).
// A frame's generation is stored last: a scan stops at the first frame whose
// generation differs from its segment's (stale bytes from an earlier use, or
// a torn write) or whose checksum fails.
type journal struct {
	f        *os.File
	mem      []byte
	segBytes int
	segs     []jseg

	mu  sync.Mutex // guards cur, off, gen, seq, the segments' active flags, and epoch publication
	cur int        // active segment, -1 before the first append
	off int        // next frame's offset in cur
	gen uint64     // last segment generation handed out
	seq uint64     // next frame sequence number

	// epoch is the number of the latest offset snapshot (checkpoint.go); a
	// frame records it so that a snapshot can be persisted only when no
	// unconfirmed send predates it. Written under mu.
	epoch atomic.Uint64

	ckSlot int    // slot holding the newest valid checkpoint, -1 none
	ckK    uint64 // its epoch
}

type jseg struct {
	pending atomic.Int64  // frames written and not yet done
	firstE  atomic.Uint64 // epoch of the segment's first frame in its current use
	active  bool          // being appended to; guarded by journal.mu
}

// jframe is a pending frame found when the journal is opened.
type jframe struct {
	ref     int64  // offset of the frame in the mapping
	seq     uint64 // write order
	kind    uint32 // jDirect or jMain
	payload []byte // aliases the mapping (stable: the frame's segment is pinned until done)
}

// Frame kinds: where the event went after the journal.
const (
	jDirect uint32 = iota // handed to franz-go (or, if it failed, to the retry log)
	jMain                 // buffered for the spool's main log, not yet written to its file
)

const (
	journalMagic       = "SLCJRNL1"
	journalVersion     = 1
	journalHeaderBytes = 128 << 10
	journalSegments    = 16
	jSegHeader         = 64
	jFrameHeader       = 40
	// maxTrackedPartitions bounds the checkpoint; partitions beyond it are
	// searched from their start on recovery.
	maxTrackedPartitions = 4096
	jSlotBytes           = 16 + 8*maxTrackedPartitions
)

var jSlotOff = [2]int{4096, 4096 + 36864}

// DefaultJournalBytes is the default size of the ack journal file.
const DefaultJournalBytes = 64 << 20

// journalSegBytes is the segment size for a journal of size bytes.
func journalSegBytes(size int64) int {
	s := int(size/journalSegments) &^ 4095
	return max(s, 4096)
}

// openJournal opens (creating if needed) the journal at path and returns the
// frames an earlier process left pending, in write order. A file whose
// header is missing or damaged is recreated empty (it can only be one whose
// creation was interrupted, before any frame); an existing file keeps its
// geometry even if size asks for another one.
func openJournal(path string, size int64) (*journal, []jframe, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	j := &journal{f: f, cur: -1, ckSlot: -1}
	segBytes, ok := readJournalHeader(f)
	fresh := !ok
	if fresh {
		segBytes = journalSegBytes(size)
	}
	total := journalHeaderBytes + journalSegments*segBytes
	if fi, err := f.Stat(); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal: %w", err)
	} else if fi.Size() != int64(total) {
		if !fresh && fi.Size() < int64(total) {
			fresh = true // truncated by hand: the geometry cannot be trusted
			segBytes = journalSegBytes(size)
			total = journalHeaderBytes + journalSegments*segBytes
		}
		if err := f.Truncate(int64(total)); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("journal: sizing %s: %w", path, err)
		}
	}
	j.segBytes = segBytes
	j.segs = make([]jseg, journalSegments)
	if j.mem, err = mapFile(f, total); err != nil {
		f.Close()
		return nil, nil, err
	}
	if fresh {
		clear(j.mem[:journalHeaderBytes])
		for i := range journalSegments {
			clear(j.mem[j.segBase(i) : j.segBase(i)+jSegHeader])
		}
		h := j.mem[:32]
		copy(h, journalMagic)
		binary.LittleEndian.PutUint32(h[8:], journalVersion)
		binary.LittleEndian.PutUint32(h[12:], journalSegments)
		binary.LittleEndian.PutUint64(h[16:], uint64(segBytes))
		binary.LittleEndian.PutUint64(h[24:], uint64(crc32.Checksum(h[:24], castagnoli)))
		if err := f.Sync(); err != nil {
			j.close()
			return nil, nil, fmt.Errorf("journal: %w", err)
		}
		return j, nil, nil
	}
	pending, maxE := j.scan()
	if k, _, ok := j.readCheckpoint(); ok {
		maxE = max(maxE, k)
	}
	// New snapshots are numbered above every epoch an earlier process
	// used, so old pending frames keep pinning the checkpoint they need.
	j.epoch.Store(maxE + 1)
	return j, pending, nil
}

func readJournalHeader(f *os.File) (segBytes int, ok bool) {
	var h [32]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return 0, false
	}
	if string(h[:8]) != journalMagic || binary.LittleEndian.Uint32(h[8:]) != journalVersion ||
		binary.LittleEndian.Uint32(h[12:]) != journalSegments ||
		binary.LittleEndian.Uint64(h[24:]) != uint64(crc32.Checksum(h[:24], castagnoli)) {
		return 0, false
	}
	sb := binary.LittleEndian.Uint64(h[16:])
	if sb < 4096 || sb > 1<<30 || sb%8 != 0 {
		return 0, false
	}
	return int(sb), true
}

func (j *journal) segBase(i int) int { return journalHeaderBytes + i*j.segBytes }

func (j *journal) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&j.mem[off])) }
func (j *journal) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&j.mem[off])) }

// scan reads every segment, counts its pending frames and returns them in
// write order, with the largest epoch seen.
func (j *journal) scan() (pending []jframe, maxE uint64) {
	le := binary.LittleEndian
	for i := range journalSegments {
		base := j.segBase(i)
		gen := le.Uint64(j.mem[base:])
		if gen == 0 || le.Uint64(j.mem[base+8:]) != ^gen {
			continue
		}
		j.gen = max(j.gen, gen)
		first := true
		for off := jSegHeader; off+jFrameHeader <= j.segBytes; {
			fr := j.mem[base+off:]
			if le.Uint64(fr[16:]) != gen {
				break
			}
			n := int(le.Uint32(fr))
			if n > j.segBytes-off-jFrameHeader {
				break
			}
			payload := fr[jFrameHeader : jFrameHeader+n]
			if crc32.Checksum(payload, castagnoli) != le.Uint32(fr[4:]) {
				break
			}
			seq, e := le.Uint64(fr[24:]), le.Uint64(fr[32:])
			j.seq = max(j.seq, seq+1)
			maxE = max(maxE, e)
			if first {
				j.segs[i].firstE.Store(e)
				first = false
			}
			if le.Uint32(fr[8:]) == 0 {
				j.segs[i].pending.Add(1)
				pending = append(pending, jframe{ref: int64(base + off), seq: seq, kind: le.Uint32(fr[12:]), payload: payload})
			}
			off += align8(jFrameHeader + n)
		}
	}
	slices.SortFunc(pending, func(a, b jframe) int { return cmpU64(a.seq, b.seq) })
	return pending, maxE
}

func align8(n int) int { return (n + 7) &^ 7 }

// maxPayload is the largest payload a frame can hold.
func (j *journal) maxPayload() int { return j.segBytes - jSegHeader - jFrameHeader }

// append copies payload (whose CRC-32C is crc) into a new pending frame of
// the given kind and
// returns its reference for done. ok is false when the journal has no room:
// every segment holds a pending frame (or the payload exceeds a segment).
// It never allocates or makes a system call.
func (j *journal) append(payload []byte, crc uint32, kind uint32) (ref int64, ok bool) {
	need := align8(jFrameHeader + len(payload))
	if len(payload) > j.maxPayload() {
		return 0, false
	}
	j.mu.Lock()
	if j.cur < 0 || j.off+need > j.segBytes {
		if !j.activate() {
			j.mu.Unlock()
			return 0, false
		}
	}
	at := j.segBase(j.cur) + j.off
	fr := j.mem[at : at+need]
	copy(fr[jFrameHeader:], payload)
	le := binary.LittleEndian
	le.PutUint64(fr[32:], j.epoch.Load())
	le.PutUint64(fr[24:], j.seq)
	le.PutUint32(fr[12:], kind)
	atomic.StoreUint32(j.u32(at+8), 0)
	le.PutUint32(fr[4:], crc)
	le.PutUint32(fr[0:], uint32(len(payload)))
	// The generation last: a frame is valid only once everything above
	// is in place.
	atomic.StoreUint64(j.u64(at+16), j.gen)
	j.segs[j.cur].pending.Add(1)
	j.seq++
	j.off += need
	j.mu.Unlock()
	return int64(at), true
}

// activate moves the writer to the next segment with no pending frame.
// Called with mu held.
func (j *journal) activate() bool {
	for i := 1; i <= journalSegments; i++ {
		c := (j.cur + i) % journalSegments
		if j.cur < 0 {
			c = i - 1
		}
		s := &j.segs[c]
		if s.active || s.pending.Load() != 0 {
			continue
		}
		if j.cur >= 0 {
			j.segs[j.cur].active = false
		}
		j.gen++
		base := j.segBase(c)
		// Invalidate the old generation first, so that a kill between
		// these stores leaves an empty segment, never a mix.
		atomic.StoreUint64(j.u64(base+8), 0)
		atomic.StoreUint64(j.u64(base), j.gen)
		atomic.StoreUint64(j.u64(base+8), ^j.gen)
		s.active = true
		s.firstE.Store(j.epoch.Load())
		j.cur, j.off = c, jSegHeader
		return true
	}
	return false
}

// done marks the frame at ref durable elsewhere. Called once per frame.
func (j *journal) done(ref int64) {
	atomic.StoreUint32(j.u32(int(ref)+8), 1)
	j.segs[(int(ref)-journalHeaderBytes)/j.segBytes].pending.Add(-1)
}

// pendingFrames is the number of frames not yet done.
func (j *journal) pendingFrames() int64 {
	var n int64
	for i := range j.segs {
		n += j.segs[i].pending.Load()
	}
	return n
}

// oldestPendingEpoch is a lower bound of the epochs of all pending frames
// (MaxUint64 if none).
func (j *journal) oldestPendingEpoch() uint64 {
	m := uint64(math.MaxUint64)
	for i := range j.segs {
		if j.segs[i].pending.Load() > 0 {
			m = min(m, j.segs[i].firstE.Load())
		}
	}
	return m
}

// writeCheckpoint stores the offset snapshot k (offs[p] = the highest offset
// of partition p acknowledged before the snapshot, -1 unknown) in the slot
// not holding the newest one, so a kill mid-write leaves the previous one
// valid. Only one goroutine writes checkpoints.
//
//	slot 0: u64 k, u32 partitions, u32 CRC-32C of k, partitions and offsets, i64 offsets...
func (j *journal) writeCheckpoint(k uint64, offs []int64) {
	offs = offs[:min(len(offs), maxTrackedPartitions)]
	slot := 0
	if j.ckSlot == 0 {
		slot = 1
	}
	b := j.mem[jSlotOff[slot] : jSlotOff[slot]+jSlotBytes]
	le := binary.LittleEndian
	le.PutUint32(b[12:], 0) // invalid while being written
	le.PutUint64(b[0:], k)
	le.PutUint32(b[8:], uint32(len(offs)))
	for i, o := range offs {
		le.PutUint64(b[16+8*i:], uint64(o))
	}
	crc := crc32.Checksum(b[0:12], castagnoli)
	crc = crc32.Update(crc, castagnoli, b[16:16+8*len(offs)])
	atomic.StoreUint32(j.u32(jSlotOff[slot]+12), crc|1) // never 0
	j.ckSlot, j.ckK = slot, k
}

// readCheckpoint returns the newest valid checkpoint.
func (j *journal) readCheckpoint() (k uint64, offs []int64, ok bool) {
	le := binary.LittleEndian
	best := -1
	for slot := range 2 {
		b := j.mem[jSlotOff[slot] : jSlotOff[slot]+jSlotBytes]
		n := int(le.Uint32(b[8:]))
		if n > maxTrackedPartitions || le.Uint32(b[12:]) == 0 {
			continue
		}
		crc := crc32.Checksum(b[0:12], castagnoli)
		crc = crc32.Update(crc, castagnoli, b[16:16+8*n])
		if crc|1 != le.Uint32(b[12:]) {
			continue
		}
		sk := le.Uint64(b)
		if best >= 0 && sk <= k {
			continue
		}
		best, k = slot, sk
		offs = make([]int64, n)
		for i := range offs {
			offs[i] = int64(le.Uint64(b[16+8*i:]))
		}
	}
	if best < 0 {
		return 0, nil, false
	}
	j.ckSlot, j.ckK = best, k
	return k, offs, true
}

// close unmaps and closes the file. No frame may be touched afterwards.
func (j *journal) close() error {
	var errs []error
	if j.mem != nil {
		errs = append(errs, unmapFile(j.f, j.mem))
		j.mem = nil
	}
	errs = append(errs, j.f.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal: closing: %w", err)
	}
	return nil
}
