package configlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// FileName is the name of the file log inside its data directory.
const FileName = "config.log"

// File format: an 8-byte header, then one frame per Append:
//
//	u32 payload length | u32 CRC-32C of the payload | payload
//	payload = uvarint record count, then per record:
//	          uvarint key length | key | uvarint value length | value
//
// A frame is written with one write and made durable with fsync before
// Append returns. A crash can leave only the last frame torn (short or with
// a bad checksum); OpenFile cuts it off, so an Append either survives whole
// or, if it had not returned, not at all.
var fileMagic = [8]byte{'S', 'L', 'C', 'F', 'G', 'L', '1', '\n'}

const (
	headerLen    = int64(len(fileMagic))
	frameHdrLen  = 8
	maxFrameLen  = 256 << 20 // one Append; admin bodies are 1 MiB, files a few MiB
	maxTailBatch = 64 << 20  // bytes of frames handed to one Tail callback
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// FileLog is a Log in an append-only file, for a single process: `sluice
// dev` and tests, and any deployment without a broker. Safe for concurrent
// use; the file is locked (flock) against a second process. The file grows
// with every change; OpenFile compacts it when most of it is records that
// later ones replaced (see Compact), so that a start does not replay every
// change ever made.
type FileLog struct {
	f      *os.File
	mu     sync.Mutex
	end    int64         // file offset after the last whole frame
	notify chan struct{} // closed and replaced on every append
	closed bool
}

// OpenFile opens (creating if needed) the file log in dir. A torn last frame
// left by a crash is cut off; the file is created with mode 0600 because the
// records hold credentials.
func OpenFile(dir string, logger *slog.Logger) (*FileLog, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("configlog: create data dir: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("configlog: open %s: %w", path, err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, err
	}
	l := &FileLog{f: f, notify: make(chan struct{})}
	if err := l.recover(logger, path); err != nil {
		f.Close()
		return nil, err
	}
	if err := l.compactIfWasteful(logger, path); err != nil {
		l.f.Close()
		return nil, err
	}
	return l, nil
}

// Compaction thresholds: a log is rewritten when it is larger than
// compactMinBytes and its latest records take less than 1/compactRatio of
// it.
const (
	compactMinBytes = 1 << 20
	compactRatio    = 2
)

// compactIfWasteful rewrites the log with only the latest record of every
// live key when the records later ones replaced make up most of it. It runs
// before anyone reads the log: positions change, and no reader may hold
// one across it (a process starts reading a file log from its beginning).
func (l *FileLog) compactIfWasteful(logger *slog.Logger, path string) error {
	if l.end < compactMinBytes {
		return nil
	}
	state := State{}
	var order []string // keys in the order of their latest record
	for pos := headerLen; pos < l.end; {
		recs, next, err := l.readFrame(pos, l.end)
		if err != nil {
			return fmt.Errorf("configlog: read %s at %d: %w", path, pos, err)
		}
		for _, r := range recs {
			if _, ok := state[r.Key]; !ok && !r.Tombstone() {
				order = append(order, r.Key)
			}
			state.Apply(r)
		}
		pos = next
	}
	live := int64(0)
	for k, v := range state {
		live += int64(len(k) + len(v) + 2*binary.MaxVarintLen32)
	}
	if live*compactRatio > l.end {
		return nil
	}
	recs := make([]Record, 0, len(state))
	for _, k := range order {
		if v, ok := state[k]; ok {
			recs = append(recs, Record{Key: k, Value: v})
			delete(state, k) // a key deleted and written again appears once, at its last place
		}
	}
	recs = byKind(recs, false)
	tmp := path + ".compact"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("configlog: compact: %w", err)
	}
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("configlog: compact %s: %w", path, err)
	}
	if _, err := f.Write(fileMagic[:]); err != nil {
		return fail(err)
	}
	end := headerLen
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && (n == 0 || size+len(recs[n].Key)+len(recs[n].Value) <= ChunkBytes) {
			size += len(recs[n].Key) + len(recs[n].Value)
			n++
		}
		frame, err := encodeFrame(recs[:n])
		if err != nil {
			return fail(err)
		}
		if _, err := f.Write(frame); err != nil {
			return fail(err)
		}
		end += int64(len(frame))
		recs = recs[n:]
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := lockFile(f); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return err
	}
	logger.Info("configlog: compacted the config log", "path", path, "bytes_before", l.end, "bytes_after", end)
	l.f.Close()
	l.f, l.end = f, end
	return nil
}

func (l *FileLog) recover(logger *slog.Logger, path string) error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("configlog: stat %s: %w", path, err)
	}
	size := st.Size()
	if size < headerLen {
		// New file, or a crash while writing the header: start over.
		if err := l.f.Truncate(0); err != nil {
			return fmt.Errorf("configlog: init %s: %w", path, err)
		}
		if _, err := l.f.WriteAt(fileMagic[:], 0); err != nil {
			return fmt.Errorf("configlog: init %s: %w", path, err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("configlog: sync %s: %w", path, err)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			return err
		}
		l.end = headerLen
		return nil
	}
	var magic [8]byte
	if _, err := l.f.ReadAt(magic[:], 0); err != nil {
		return fmt.Errorf("configlog: read %s: %w", path, err)
	}
	if magic != fileMagic {
		return fmt.Errorf("configlog: %s is not a config log", path)
	}
	pos := headerLen
	for pos < size {
		_, next, err := l.readFrame(pos, size)
		if err != nil {
			break
		}
		pos = next
	}
	if pos < size {
		logger.Warn("configlog: cutting off a torn record at the end of the log (left by a crash)",
			"path", path, "offset", pos, "bytes", size-pos)
		if err := l.f.Truncate(pos); err != nil {
			return fmt.Errorf("configlog: truncate torn tail of %s: %w", path, err)
		}
		if err := l.f.Sync(); err != nil {
			return fmt.Errorf("configlog: sync %s: %w", path, err)
		}
	}
	l.end = pos
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("configlog: open dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("configlog: sync dir: %w", err)
	}
	return nil
}

func toPos(off int64) Position { return Position(off - headerLen) }

var errTorn = errors.New("configlog: torn or corrupt frame")

// readFrame reads and checks the frame at pos (which must end by limit) and
// returns its records and the offset after it.
func (l *FileLog) readFrame(pos, limit int64) ([]Record, int64, error) {
	if limit-pos < frameHdrLen {
		return nil, 0, errTorn
	}
	var hdr [frameHdrLen]byte
	if _, err := l.f.ReadAt(hdr[:], pos); err != nil {
		return nil, 0, errTorn
	}
	n := int64(binary.LittleEndian.Uint32(hdr[0:4]))
	sum := binary.LittleEndian.Uint32(hdr[4:8])
	if n > maxFrameLen || limit-pos-frameHdrLen < n {
		return nil, 0, errTorn
	}
	payload := make([]byte, n)
	if _, err := l.f.ReadAt(payload, pos+frameHdrLen); err != nil && !(err == io.EOF && int64(len(payload)) == n) {
		return nil, 0, errTorn
	}
	if crc32.Checksum(payload, crcTable) != sum {
		return nil, 0, errTorn
	}
	recs, err := decodePayload(payload)
	if err != nil {
		return nil, 0, err
	}
	return recs, pos + frameHdrLen + n, nil
}

func decodePayload(p []byte) ([]Record, error) {
	count, k := binary.Uvarint(p)
	if k <= 0 || count > uint64(len(p)) {
		return nil, errTorn
	}
	p = p[k:]
	recs := make([]Record, 0, count)
	for i := uint64(0); i < count; i++ {
		var fields [2][]byte
		for j := range fields {
			n, k := binary.Uvarint(p)
			if k <= 0 || n > uint64(len(p)-k) {
				return nil, errTorn
			}
			fields[j] = p[k : k+int(n)]
			p = p[k+int(n):]
		}
		var val []byte
		if len(fields[1]) > 0 {
			val = fields[1]
		}
		recs = append(recs, Record{Key: string(fields[0]), Value: val})
	}
	if len(p) != 0 {
		return nil, errTorn
	}
	return recs, nil
}

func encodeFrame(recs []Record) ([]byte, error) {
	size := frameHdrLen + binary.MaxVarintLen64
	for _, r := range recs {
		size += 2*binary.MaxVarintLen64 + len(r.Key) + len(r.Value)
	}
	buf := make([]byte, frameHdrLen, size)
	buf = binary.AppendUvarint(buf, uint64(len(recs)))
	for _, r := range recs {
		if r.Key == "" {
			return nil, errors.New("configlog: record with an empty key")
		}
		buf = binary.AppendUvarint(buf, uint64(len(r.Key)))
		buf = append(buf, r.Key...)
		buf = binary.AppendUvarint(buf, uint64(len(r.Value)))
		buf = append(buf, r.Value...)
	}
	n := len(buf) - frameHdrLen
	if n > maxFrameLen {
		return nil, fmt.Errorf("configlog: append of %d bytes exceeds the %d-byte limit", n, maxFrameLen)
	}
	binary.LittleEndian.PutUint32(buf[0:4], uint32(n))
	binary.LittleEndian.PutUint32(buf[4:8], crc32.Checksum(buf[frameHdrLen:], crcTable))
	return buf, nil
}

// Append writes recs as one frame and fsyncs the file before returning.
func (l *FileLog) Append(ctx context.Context, recs []Record) (Position, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if len(recs) == 0 {
		return toPos(l.end), nil
	}
	frame, err := encodeFrame(recs)
	if err != nil {
		return 0, err
	}
	if _, err := l.f.WriteAt(frame, l.end); err != nil {
		// The frame may be partly written; the next Append overwrites it
		// and a reopen cuts it off.
		return 0, fmt.Errorf("configlog: append: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return 0, fmt.Errorf("configlog: sync: %w", err)
	}
	l.end += int64(len(frame))
	close(l.notify)
	l.notify = make(chan struct{})
	return toPos(l.end), nil
}

// End returns the position after the last appended record.
func (l *FileLog) End(context.Context) (Position, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	return toPos(l.end), nil
}

// Tail follows the log from position from (0: the beginning), handing the
// callback every whole frame available, several at a time.
//
// Positions of the file log are byte offsets after the file's header.
func (l *FileLog) Tail(ctx context.Context, from Position, fn func([]Entry) error) error {
	pos := int64(from) + headerLen
	return tailLoop(ctx, fn, func() ([]Entry, bool, <-chan struct{}, error) {
		l.mu.Lock()
		end, notify, closed := l.end, l.notify, l.closed
		l.mu.Unlock()
		if closed {
			return nil, false, nil, ErrClosed
		}
		if pos > end || pos < headerLen {
			return nil, false, nil, fmt.Errorf("configlog: tail from %d outside the log (end %d)", toPos(pos), toPos(end))
		}
		var batch []Entry
		start := pos
		for pos < end && pos-start < maxTailBatch {
			recs, next, err := l.readFrame(pos, end)
			if err != nil {
				l.mu.Lock()
				closed := l.closed
				l.mu.Unlock()
				if closed {
					return nil, false, nil, ErrClosed
				}
				return nil, false, nil, fmt.Errorf("configlog: read at offset %d: %w", pos, err)
			}
			for _, r := range recs {
				batch = append(batch, Entry{Record: r, Pos: toPos(next)})
			}
			pos = next
		}
		return batch, pos > start, notify, nil
	})
}

// Close closes the file. Tail calls in progress return ErrClosed.
func (l *FileLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.notify)
	l.notify = make(chan struct{})
	return l.f.Close()
}

// ReadFile returns the configuration held by the file log in dir, read
// without locking or repairing the file, so it works while a server holds
// the log (`sluice config export --data-dir DIR`). A torn last frame is
// ignored. It returns an empty Document when there is no log.
func ReadFile(dir string) (*catalog.Document, error) {
	path := filepath.Join(dir, FileName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return &catalog.Document{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("configlog: open %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("configlog: stat %s: %w", path, err)
	}
	l := &FileLog{f: f}
	size := st.Size()
	if size < headerLen {
		return &catalog.Document{}, nil
	}
	var magic [8]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || magic != fileMagic {
		return nil, fmt.Errorf("configlog: %s is not a config log", path)
	}
	state := State{}
	for pos := headerLen; pos < size; {
		recs, next, err := l.readFrame(pos, size)
		if err != nil {
			break // torn tail: a write in progress or a crash
		}
		for _, r := range recs {
			state.Apply(r)
		}
		pos = next
	}
	doc, _ := state.Document()
	return doc, nil
}
