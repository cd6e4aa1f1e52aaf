package configlog

import (
	"context"
	"sync"
)

// MemLog is a Log in memory, for tests of code that needs one: nothing
// survives the process. Positions count records. Safe for concurrent use.
type MemLog struct {
	mu     sync.Mutex
	recs   []Record
	notify chan struct{}
	closed bool
}

var (
	_ Log = (*MemLog)(nil)
	_ Log = (*FileLog)(nil)
)

// NewMemLog returns an empty in-memory log.
func NewMemLog() *MemLog { return &MemLog{notify: make(chan struct{})} }

// Append appends copies of recs.
func (m *MemLog) Append(ctx context.Context, recs []Record) (Position, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	for _, r := range recs {
		var v []byte
		if len(r.Value) > 0 {
			v = append([]byte(nil), r.Value...)
		}
		m.recs = append(m.recs, Record{Key: r.Key, Value: v})
	}
	if len(recs) > 0 {
		close(m.notify)
		m.notify = make(chan struct{})
	}
	return Position(len(m.recs)), nil
}

// End returns the number of records.
func (m *MemLog) End(context.Context) (Position, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	return Position(len(m.recs)), nil
}

// Tail follows the log from position from.
func (m *MemLog) Tail(ctx context.Context, from Position, fn func([]Entry) error) error {
	pos := int(from)
	return tailLoop(ctx, fn, func() ([]Entry, bool, <-chan struct{}, error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.closed {
			return nil, false, nil, ErrClosed
		}
		var batch []Entry
		for i := pos; i < len(m.recs); i++ {
			batch = append(batch, Entry{Record: m.recs[i], Pos: Position(i + 1)})
		}
		pos = len(m.recs)
		return batch, len(batch) > 0, m.notify, nil
	})
}

// Close closes the log; Tail calls in progress return ErrClosed.
func (m *MemLog) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		m.closed = true
		close(m.notify)
	}
	return nil
}
