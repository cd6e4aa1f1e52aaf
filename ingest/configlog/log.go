package configlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// Position is a place in a Log. Position 0 is the beginning; positions grow
// with every append. Their meaning is the implementation's (a byte offset
// in a file, an offset in a Kafka partition); callers only compare them and
// hand them back.
type Position int64

// Entry is a record as read from a Log. Pos is where to resume to read what
// follows it; records appended together may share one Pos. Time is when the
// record was appended, for logs that keep it (the Kafka log: the record's
// timestamp); zero when the log does not (the file and memory logs).
type Entry struct {
	Record
	Pos  Position
	Time time.Time
}

// Log is the configuration change log: an ordered, durable sequence of
// records that every node reads in the same order. The file log
// (OpenFile) serves one process; a compacted Kafka topic `sluice.config`
// with one partition implements it for a cluster.
type Log interface {
	// Append durably appends recs, in order, and returns the position after
	// the last of them. Implementations should make one call all-or-nothing
	// (the file log does; a Kafka log uses one transaction); a Projection
	// tolerates seeing a partial batch, as a transient invalid state.
	Append(ctx context.Context, recs []Record) (Position, error)
	// Tail calls fn with batches of entries from position from on, in log
	// order, and keeps following the log as it grows until ctx is done (it
	// then returns ctx.Err()), fn returns an error (returned as is) or the
	// log is closed (ErrClosed). Calls to fn do not overlap.
	Tail(ctx context.Context, from Position, fn func(batch []Entry) error) error
	// End returns the position after the last record appended so far.
	End(ctx context.Context) (Position, error)
	// Close releases the log; Tail calls in progress return ErrClosed.
	Close() error
}

// ErrClosed is returned by a closed Log.
var ErrClosed = errors.New("configlog: log closed")

// tailLoop is the loop every Log's Tail runs: read returns what is available
// now (progress reports whether it advanced, even over frames without
// records) and a channel closed when more arrives; fn gets each batch, and
// the loop sleeps on the channel only when read made no progress.
func tailLoop(ctx context.Context, fn func([]Entry) error, read func() (batch []Entry, progress bool, notify <-chan struct{}, err error)) error {
	for {
		batch, progress, notify, err := read()
		if err != nil {
			return err
		}
		if progress {
			if err := fn(batch); err != nil {
				return err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-notify:
		}
	}
}

// errRead ends ReadLog's Tail once the end is reached.
var errRead = errors.New("configlog: read to end")

// ReadLog reads any Log from its start to its current end and returns the
// configuration it holds (what `sluice config export` prints).
func ReadLog(ctx context.Context, l Log) (*catalog.Document, error) {
	end, err := l.End(ctx)
	if err != nil {
		return nil, err
	}
	state := State{}
	if end > 0 {
		err = l.Tail(ctx, 0, func(batch []Entry) error {
			for _, e := range batch {
				state.Apply(e.Record)
			}
			if batch[len(batch)-1].Pos >= end {
				return errRead
			}
			return nil
		})
		if !errors.Is(err, errRead) {
			return nil, fmt.Errorf("configlog: read to %d: %w", end, err)
		}
	}
	doc, _ := state.Document()
	return doc, nil
}
