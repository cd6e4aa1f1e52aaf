package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The spool is a directory of segment files holding records that could not
// (yet) be handed to Kafka, in the order they must be sent. Each segment is
// named by a zero-padded sequence number (00000000000000000007.seg) and is a
// plain concatenation of frames:
//
//	u32 little-endian  n: length of the payload
//	u32 little-endian  CRC-32C (Castagnoli) of the payload
//	payload (n bytes): varint record timestamp (unix ms, zigzag), uvarint key
//	                   length, key bytes, value bytes (an encoded event)
//
// A file named "cursor" holds "seq offset\n": the first byte not yet
// acknowledged by Kafka. Segments before the cursor's are deleted; a torn
// frame at the end of the last segment (a crash mid-write) is truncated when
// the spool is opened.
//
// segLog is not safe for concurrent use: the Producer guards it with its
// mutex, except for the drainer's reads of bytes already written to a file
// (immutable from then on).
type segLog struct {
	dir    string
	segMax int64

	segs    []segInfo  // in order; the last one is the tail when w != nil
	w       *os.File   // tail segment open for appending, nil if none
	wbuf    []byte     // whole frames not yet written to w
	dirty   bool       // written to w since the last fsync
	retired []*os.File // full segments to fsync and close (by the syncer)
	nextSeq uint64

	readSeq uint64 // cursor: segment of the first unacknowledged frame
	readOff int64  // cursor: its offset in that segment

	diskBytes int64 // sum of segs' sizes

	// jr and refs: journal frames of the events in wbuf, marked done once
	// flush has written them to the file (the page cache keeps them across
	// a process kill from then on). jr is nil in logs without a journal.
	jr   *journal
	refs []int64
}

type segInfo struct {
	seq  uint64
	size int64 // bytes written to the file (whole frames only)
}

const (
	frameHeader   = 8
	maxFrameBytes = 16 << 20 // larger lengths mean corruption
	wbufFlush     = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a frame that fails its length or checksum check.
var errCorrupt = errors.New("spool: corrupt frame")

func segName(seq uint64) string { return fmt.Sprintf("%020d.seg", seq) }

// openSegLog opens (creating if needed) the spool directory dir, recovering
// what an earlier process left there.
func openSegLog(dir string, segMax int64) (*segLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spool: creating %s: %w", dir, err)
	}
	l := &segLog{dir: dir, segMax: segMax, wbuf: make([]byte, 0, wbufFlush+4096)}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: reading %s: %w", dir, err)
	}
	for _, de := range ents {
		name := de.Name()
		if !strings.HasSuffix(name, ".seg") {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
		if err != nil {
			continue
		}
		fi, err := de.Info()
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		l.segs = append(l.segs, segInfo{seq: seq, size: fi.Size()})
	}
	slices.SortFunc(l.segs, func(a, b segInfo) int { return cmpU64(a.seq, b.seq) })
	if b, err := os.ReadFile(filepath.Join(dir, "cursor")); err == nil {
		var seq uint64
		var off int64
		if _, err := fmt.Sscanf(string(b), "%d %d", &seq, &off); err == nil {
			l.readSeq, l.readOff = seq, off
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("spool: reading cursor: %w", err)
	}
	// Drop segments wholly before the cursor (deleted late by a crash).
	for len(l.segs) > 0 && l.segs[0].seq < l.readSeq {
		if err := os.Remove(filepath.Join(dir, segName(l.segs[0].seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("spool: %w", err)
		}
		l.segs = l.segs[1:]
	}
	if len(l.segs) > 0 {
		if l.segs[0].seq != l.readSeq {
			l.readSeq, l.readOff = l.segs[0].seq, 0
		}
		last := &l.segs[len(l.segs)-1]
		good, err := validPrefix(filepath.Join(dir, segName(last.seq)))
		if err != nil {
			return nil, err
		}
		if good < last.size {
			if err := os.Truncate(filepath.Join(dir, segName(last.seq)), good); err != nil {
				return nil, fmt.Errorf("spool: truncating torn tail: %w", err)
			}
			last.size = good
		}
		if l.readSeq == last.seq && l.readOff > last.size {
			l.readOff = last.size
		}
		l.nextSeq = last.seq + 1
	} else {
		l.nextSeq = l.readSeq + 1
		l.readOff = 0
	}
	for _, s := range l.segs {
		l.diskBytes += s.size
	}
	return l, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// validPrefix returns the length of the longest prefix of the file made of
// whole, checksum-valid frames.
func validPrefix(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	var off int64
	for {
		n, err := frameAt(b[off:])
		if errors.Is(err, io.ErrUnexpectedEOF) || (err != nil && off+int64(n) >= int64(len(b))) {
			return off, nil // a torn write: the last frame is incomplete or bad
		}
		if err != nil && n == 0 {
			return off, nil // an absurd length: nothing after it can be framed
		}
		off += int64(n)
	}
}

// frameAt checks the frame at the start of b and returns its total length.
// On a checksum mismatch it returns errCorrupt with the length, which the
// caller may use to skip just that frame.
func frameAt(b []byte) (int, error) {
	if len(b) < frameHeader {
		return 0, io.ErrUnexpectedEOF
	}
	n := binary.LittleEndian.Uint32(b)
	if n > maxFrameBytes {
		return 0, errCorrupt
	}
	if len(b) < frameHeader+int(n) {
		return 0, io.ErrUnexpectedEOF
	}
	if crc32.Checksum(b[frameHeader:frameHeader+int(n)], castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return frameHeader + int(n), errCorrupt
	}
	return frameHeader + int(n), nil
}

// parseFrame splits a frame's payload.
func parseFrame(payload []byte) (ts int64, key, value []byte, err error) {
	ts, k := binary.Varint(payload)
	if k <= 0 {
		return 0, nil, nil, errCorrupt
	}
	kl, k2 := binary.Uvarint(payload[k:])
	if k2 <= 0 || kl > uint64(len(payload)-k-k2) {
		return 0, nil, nil, errCorrupt
	}
	p := payload[k+k2:]
	return ts, p[:kl], p[kl:], nil
}

// startFrame reserves a frame header in wbuf and writes the timestamp and
// key; the caller appends the value and calls endFrame(start).
func (l *segLog) startFrame(ts int64, key []byte) int {
	start := len(l.wbuf)
	l.wbuf = append(l.wbuf, 0, 0, 0, 0, 0, 0, 0, 0)
	l.wbuf = binary.AppendVarint(l.wbuf, ts)
	l.wbuf = binary.AppendUvarint(l.wbuf, uint64(len(key)))
	l.wbuf = append(l.wbuf, key...)
	return start
}

// endFrame fills in the header of the frame started at start. It fails
// only for a frame over the size limit, which it removes again. The frame
// stays in memory until the caller flushes it (the producer writes each
// frame through at once).
func (l *segLog) endFrame(start int) error {
	payload := l.wbuf[start+frameHeader:]
	if len(payload) > maxFrameBytes {
		l.wbuf = l.wbuf[:start]
		return fmt.Errorf("spool: record of %d bytes exceeds the %d byte frame limit", len(payload), maxFrameBytes)
	}
	binary.LittleEndian.PutUint32(l.wbuf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(l.wbuf[start+4:], crc32.Checksum(payload, castagnoli))
	return nil
}

// flush writes the buffered frames to the tail segment, rolling over to a
// new segment first when the tail is full.
func (l *segLog) flush() error {
	if len(l.wbuf) == 0 {
		return nil
	}
	if l.w != nil && l.segs[len(l.segs)-1].size >= l.segMax {
		// Retire the full segment: the syncer fsyncs and closes it outside
		// the lock, so Append never waits for an fsync.
		l.retired = append(l.retired, l.w)
		l.w, l.dirty = nil, false
	}
	if l.w == nil {
		seq := l.nextSeq
		f, err := os.OpenFile(filepath.Join(l.dir, segName(seq)), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("spool: creating segment: %w", err)
		}
		syncDir(l.dir)
		l.nextSeq++
		l.w = f
		if len(l.segs) == 0 {
			l.readSeq, l.readOff = seq, 0
		}
		l.segs = append(l.segs, segInfo{seq: seq})
	}
	tail := &l.segs[len(l.segs)-1]
	n, err := l.w.Write(l.wbuf)
	l.dirty = true
	if err != nil {
		// The frames stay in wbuf (accepted events are not given up on a
		// full or failing disk; SpoolMaxBytes bounds the buffer) and are
		// written again by the next flush. Undo a partial write; if that
		// fails too, retire the segment so its torn tail is never followed
		// by frames (the drainer skips it as corrupt, the frames are
		// rewritten whole in the next segment).
		if n > 0 && l.w.Truncate(tail.size) != nil {
			tail.size += int64(n)
			l.diskBytes += int64(n)
			l.retired = append(l.retired, l.w)
			l.w = nil
		}
		return fmt.Errorf("spool: writing segment: %w", err)
	}
	tail.size += int64(n)
	l.diskBytes += int64(n)
	l.wbuf = l.wbuf[:0]
	for _, ref := range l.refs {
		l.jr.done(ref)
	}
	l.refs = l.refs[:0]
	return nil
}

// closeTail fsyncs and closes the tail segment; the next flush starts a new one.
func (l *segLog) closeTail() error {
	if l.w == nil {
		return nil
	}
	err := l.w.Sync()
	if cerr := l.w.Close(); err == nil {
		err = cerr
	}
	l.w, l.dirty = nil, false
	if err != nil {
		return fmt.Errorf("spool: closing segment: %w", err)
	}
	return nil
}

// pending reports whether any frame has not been acknowledged yet.
func (l *segLog) pending() bool {
	if len(l.wbuf) > 0 {
		return true
	}
	for _, s := range l.segs {
		if s.seq > l.readSeq || (s.seq == l.readSeq && s.size > l.readOff) {
			return true
		}
	}
	return false
}

// bytes is the spool's footprint: files on disk plus the write buffer.
func (l *segLog) bytes() int64 { return l.diskBytes + int64(len(l.wbuf)) }

// readable returns the segment holding the cursor and how many bytes of it
// can be read now, flushing the write buffer if the reader has caught up with
// the file. ok is false when nothing is readable.
func (l *segLog) readable() (seq uint64, off, end int64, ok bool, err error) {
	for len(l.segs) > 0 {
		s := l.segs[0]
		if s.seq != l.readSeq {
			l.readSeq, l.readOff = s.seq, 0
		}
		if l.readOff < s.size {
			return s.seq, l.readOff, s.size, true, nil
		}
		if len(l.segs) > 1 || l.w == nil {
			// Finished and never written again: delete it.
			if err := l.dropHead(); err != nil {
				return 0, 0, 0, false, err
			}
			continue
		}
		break // the cursor is at the end of the tail
	}
	if len(l.wbuf) > 0 {
		if err := l.flush(); err != nil {
			return 0, 0, 0, false, err
		}
		return l.readable()
	}
	return 0, 0, 0, false, nil
}

// dropHead deletes the first segment.
func (l *segLog) dropHead() error {
	s := l.segs[0]
	if l.w != nil && len(l.segs) == 1 {
		if err := l.closeTail(); err != nil {
			return err
		}
	}
	if err := os.Remove(filepath.Join(l.dir, segName(s.seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool: removing drained segment: %w", err)
	}
	l.diskBytes -= s.size
	l.segs = l.segs[1:]
	if len(l.segs) > 0 {
		l.readSeq, l.readOff = l.segs[0].seq, 0
	} else {
		l.readSeq, l.readOff = l.nextSeq, 0
	}
	return nil
}

// commit advances the cursor of segment seq to off (everything before it is
// in Kafka), deleting the segment if it is finished, and persists the cursor.
func (l *segLog) commit(seq uint64, off int64) error {
	if len(l.segs) == 0 || l.segs[0].seq != seq {
		return fmt.Errorf("spool: commit for segment %d, head is elsewhere", seq)
	}
	l.readOff = off
	if off >= l.segs[0].size && (len(l.segs) > 1 || l.w == nil) {
		if err := l.dropHead(); err != nil {
			return err
		}
	}
	return l.writeCursor()
}

func (l *segLog) writeCursor() error {
	tmp := filepath.Join(l.dir, "cursor.tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("spool: writing cursor: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d %d\n", l.readSeq, l.readOff)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(l.dir, "cursor"))
	}
	if err != nil {
		return fmt.Errorf("spool: writing cursor: %w", err)
	}
	return nil
}

// reset deletes every segment once nothing is pending, so an idle spool
// holds no files.
func (l *segLog) reset() error {
	if l.pending() {
		return errors.New("spool: reset with pending frames")
	}
	if err := l.closeTail(); err != nil {
		return err
	}
	for _, s := range l.segs {
		if err := os.Remove(filepath.Join(l.dir, segName(s.seq))); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("spool: %w", err)
		}
	}
	l.segs = l.segs[:0]
	l.diskBytes = 0
	l.readSeq, l.readOff = l.nextSeq, 0
	return l.writeCursor()
}

// syncTargets flushes the write buffer and returns what to fsync outside the
// lock: the tail if it was written since the last fsync, and retired
// segments, which the caller also closes.
func (l *segLog) syncTargets() (tail *os.File, retired []*os.File, err error) {
	err = l.flush()
	retired, l.retired = l.retired, nil
	if l.dirty && l.w != nil {
		l.dirty = false
		tail = l.w
	}
	return tail, retired, err
}

// closeAll flushes, fsyncs and closes every open file (at shutdown).
func (l *segLog) closeAll() error {
	errs := []error{l.flush()}
	for _, f := range l.retired {
		errs = append(errs, f.Sync(), f.Close())
	}
	l.retired = nil
	errs = append(errs, l.closeTail())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("spool: closing: %w", err)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
