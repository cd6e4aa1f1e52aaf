// Package logtest is the conformance suite of configlog.Log: every
// implementation (the file log, the in-memory log, a Kafka topic) runs it
// from its own tests:
//
//	func TestConformance(t *testing.T) {
//		logtest.Run(t, func(t *testing.T) configlog.Log { return openMyLog(t) })
//	}
package logtest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/configlog"
)

// Run runs every conformance test against fresh logs from open. open must
// return an empty log; Run closes it.
func Run(t *testing.T, open func(t *testing.T) configlog.Log) {
	t.Run("empty", func(t *testing.T) { empty(t, open(t)) })
	t.Run("append and read back", func(t *testing.T) { appendRead(t, open(t)) })
	t.Run("resume from a position", func(t *testing.T) { resume(t, open(t)) })
	t.Run("tail follows appends", func(t *testing.T) { follow(t, open(t)) })
	t.Run("concurrent appends stay whole", func(t *testing.T) { concurrent(t, open(t)) })
	t.Run("close stops tail", func(t *testing.T) { closeStops(t, open(t)) })
}

func recs(prefix string, n int) []configlog.Record {
	out := make([]configlog.Record, n)
	for i := range out {
		out[i] = configlog.Record{Key: fmt.Sprintf("%s/%d", prefix, i), Value: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var errEnough = errors.New("enough")

// readUntil tails from `from` until the entry whose Pos is end.
func readUntil(t *testing.T, l configlog.Log, from, end configlog.Position) []configlog.Entry {
	t.Helper()
	if from == end {
		return nil
	}
	var out []configlog.Entry
	err := l.Tail(ctxT(t), from, func(b []configlog.Entry) error {
		out = append(out, b...)
		if b[len(b)-1].Pos >= end {
			return errEnough
		}
		return nil
	})
	if err != errEnough {
		t.Fatalf("tail from %d to %d: %v (read %d entries)", from, end, err, len(out))
	}
	return out
}

func records(es []configlog.Entry) []configlog.Record {
	out := make([]configlog.Record, len(es))
	for i, e := range es {
		out[i] = e.Record
	}
	return out
}

func empty(t *testing.T, l configlog.Log) {
	defer l.Close()
	if end, err := l.End(ctxT(t)); err != nil || end != 0 {
		t.Fatalf("End of an empty log = %d, %v", end, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := l.Tail(ctx, 0, func(b []configlog.Entry) error {
		t.Errorf("entries from an empty log: %v", b)
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Tail of an empty log until deadline = %v", err)
	}
}

func appendRead(t *testing.T, l configlog.Log) {
	defer l.Close()
	a := recs("a", 3)
	b := []configlog.Record{{Key: "a/1"}} // a tombstone
	p1, err := l.Append(ctxT(t), a)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.Append(ctxT(t), b)
	if err != nil {
		t.Fatal(err)
	}
	if p1 <= 0 || p2 <= p1 {
		t.Fatalf("positions %d then %d: must grow", p1, p2)
	}
	if end, _ := l.End(ctxT(t)); end != p2 {
		t.Fatalf("End = %d, want %d", end, p2)
	}
	got := readUntil(t, l, 0, p2)
	if want := append(append([]configlog.Record(nil), a...), b...); !reflect.DeepEqual(records(got), want) {
		t.Fatalf("read back %+v, want %+v", records(got), want)
	}
	if !got[len(got)-1].Tombstone() {
		t.Error("tombstone lost its emptiness")
	}
	if got[2].Pos != p1 || got[3].Pos != p2 {
		t.Errorf("entry positions %d, %d; want %d, %d", got[2].Pos, got[3].Pos, p1, p2)
	}
}

func resume(t *testing.T, l configlog.Log) {
	defer l.Close()
	p1, _ := l.Append(ctxT(t), recs("first", 2))
	p2, _ := l.Append(ctxT(t), recs("second", 2))
	got := readUntil(t, l, p1, p2)
	if !reflect.DeepEqual(records(got), recs("second", 2)) {
		t.Fatalf("resuming from %d read %+v", p1, records(got))
	}
}

func follow(t *testing.T, l configlog.Log) {
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	seen := make(chan configlog.Entry, 100)
	done := make(chan error, 1)
	go func() {
		done <- l.Tail(ctx, 0, func(b []configlog.Entry) error {
			for _, e := range b {
				seen <- e
			}
			return nil
		})
	}()
	for i := range 3 {
		pos, err := l.Append(ctxT(t), recs(fmt.Sprint("f", i), 1))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-seen:
			if e.Key != fmt.Sprintf("f%d/0", i) || e.Pos != pos {
				t.Fatalf("followed entry %+v, want key f%d/0 at %d", e, i, pos)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Tail did not deliver an append")
		}
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Tail after cancel = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Tail did not stop on cancel")
	}
}

func concurrent(t *testing.T, l configlog.Log) {
	defer l.Close()
	const writers, each, size = 4, 10, 5
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last configlog.Position
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p, err := l.Append(ctxT(t), recs(fmt.Sprintf("w%d-%d", w, i), size))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				last = max(last, p)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got := records(readUntil(t, l, 0, last))
	if len(got) != writers*each*size {
		t.Fatalf("read %d records, want %d", len(got), writers*each*size)
	}
	for i := 0; i < len(got); i += size {
		want := recs(got[i].Key[:len(got[i].Key)-len("/0")], size)
		if !reflect.DeepEqual(got[i:i+size], want) {
			t.Fatalf("an append was interleaved with another at record %d: %+v", i, got[i:i+size])
		}
	}
}

func closeStops(t *testing.T, l configlog.Log) {
	done := make(chan error, 1)
	go func() { done <- l.Tail(context.Background(), 0, func([]configlog.Entry) error { return nil }) }()
	time.Sleep(20 * time.Millisecond)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, configlog.ErrClosed) {
			t.Errorf("Tail after Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Tail did not stop on Close")
	}
	if _, err := l.Append(context.Background(), recs("late", 1)); !errors.Is(err, configlog.ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
}
