package configlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var quiet = slog.New(slog.DiscardHandler)

func openT(t *testing.T, dir string) *FileLog {
	t.Helper()
	l, err := OpenFile(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// readAll returns every record of the log, by tailing until the end.
func readAll(t *testing.T, l Log) []Record {
	t.Helper()
	end, err := l.End(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []Record
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := errors.New("done")
	if end == 0 {
		return nil
	}
	err = l.Tail(ctx, 0, func(b []Entry) error {
		for _, e := range b {
			out = append(out, e.Record)
		}
		if b[len(b)-1].Pos >= end {
			return done
		}
		return nil
	})
	if err != done {
		t.Fatalf("tail: %v", err)
	}
	return out
}

func batch(n int, prefix string) []Record {
	var out []Record
	for i := range n {
		out = append(out, Record{Key: fmt.Sprintf("%s/%d", prefix, i), Value: []byte(fmt.Sprintf(`{"i":%d}`, i))})
	}
	return out
}

func TestFileLogAppendReopen(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir)
	ctx := context.Background()
	p1, err := l.Append(ctx, batch(3, "a"))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.Append(ctx, []Record{{Key: "a/1"}}) // tombstone
	if err != nil || p2 <= p1 {
		t.Fatalf("positions %d %d, %v", p1, p2, err)
	}
	if p, _ := l.Append(ctx, nil); p != p2 {
		t.Error("empty append moved the end")
	}
	want := append(batch(3, "a"), Record{Key: "a/1"})
	if got := readAll(t, l); !reflect.DeepEqual(got, want) {
		t.Errorf("read %+v", got)
	}
	l.Close()
	if _, err := l.Append(ctx, batch(1, "x")); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}
	l = openT(t, dir)
	defer l.Close()
	if got := readAll(t, l); !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen %+v", got)
	}
	if end, _ := l.End(ctx); end != p2 {
		t.Errorf("end after reopen %d, want %d", end, p2)
	}
	st, _ := os.Stat(filepath.Join(dir, FileName))
	if st.Mode().Perm() != 0o600 {
		t.Errorf("log file mode %v: it holds credentials", st.Mode().Perm())
	}
	if _, err := l.Append(ctx, []Record{{Key: ""}}); err == nil {
		t.Error("empty key accepted")
	}
}

// TestFileLogTornTail: a crash in the middle of an append (any prefix of the
// last frame written, or garbage) loses that append only; everything before
// it is intact and the log keeps working.
func TestFileLogTornTail(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		tear func(path string, goodEnd, fullEnd int64) error
	}{
		{"cut at every length", nil},
		{"bad checksum", func(path string, goodEnd, fullEnd int64) error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{0xFF}, fullEnd-1)
			return err
		}},
		{"garbage length", func(path string, goodEnd, fullEnd int64) error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte{0xFF, 0xFF, 0xFF, 0x7F}, goodEnd)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cuts := []int64{0}
			if tc.tear == nil {
				cuts = nil
				for i := int64(1); i < 60; i++ {
					cuts = append(cuts, i)
				}
			}
			for _, cut := range cuts {
				dir := t.TempDir()
				l := openT(t, dir)
				good, _ := l.Append(ctx, batch(2, "good"))
				full, _ := l.Append(ctx, batch(2, "torn"))
				l.Close()
				goodOff, fullOff := int64(good)+headerLen, int64(full)+headerLen
				path := filepath.Join(dir, FileName)
				if tc.tear != nil {
					if err := tc.tear(path, goodOff, fullOff); err != nil {
						t.Fatal(err)
					}
				} else {
					if fullOff-cut <= goodOff {
						break
					}
					if err := os.Truncate(path, fullOff-cut); err != nil {
						t.Fatal(err)
					}
				}
				l = openT(t, dir)
				if got := readAll(t, l); !reflect.DeepEqual(got, batch(2, "good")) {
					t.Fatalf("cut %d: read %+v", cut, got)
				}
				if end, _ := l.End(ctx); end != good {
					t.Fatalf("cut %d: end %d, want %d", cut, end, good)
				}
				if _, err := l.Append(ctx, batch(1, "after")); err != nil {
					t.Fatal(err)
				}
				l.Close()
				l = openT(t, dir)
				if got := readAll(t, l); !reflect.DeepEqual(got, append(batch(2, "good"), batch(1, "after")...)) {
					t.Fatalf("cut %d: after append %+v", cut, got)
				}
				l.Close()
			}
		})
	}
}

func TestFileLogTornHeaderAndForeignFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), []byte("SLC"), 0o600)
	l := openT(t, dir)
	if _, err := l.Append(context.Background(), batch(1, "a")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	dir2 := t.TempDir()
	os.WriteFile(filepath.Join(dir2, FileName), []byte("something else entirely"), 0o600)
	if _, err := OpenFile(dir2, quiet); err == nil {
		t.Error("opened a file that is not a config log")
	}
}

func TestFileLogTailFollowsAndStops(t *testing.T) {
	l := openT(t, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Entry, 100)
	done := make(chan error, 1)
	go func() {
		done <- l.Tail(ctx, 0, func(b []Entry) error {
			for _, e := range b {
				got <- e
			}
			return nil
		})
	}()
	for i := range 3 {
		pos, err := l.Append(context.Background(), batch(1, fmt.Sprint("k", i)))
		if err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-got:
			if e.Key != fmt.Sprintf("k%d/0", i) || e.Pos != pos {
				t.Errorf("entry %+v, want pos %d", e, pos)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("tail did not see an append")
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("tail after cancel: %v", err)
	}
	go func() {
		done <- l.Tail(context.Background(), 0, func([]Entry) error { return nil })
	}()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("tail after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tail did not stop on close")
	}
}

func FuzzDecodePayload(f *testing.F) {
	frame, _ := encodeFrame(batch(3, "x"))
	f.Add(frame[frameHdrLen:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		recs, err := decodePayload(p)
		if err != nil {
			return
		}
		again, err := encodeFrame(recs)
		if err != nil {
			return // an empty key: rejected on the way in
		}
		back, err := decodePayload(again[frameHdrLen:])
		if err != nil || len(back) != len(recs) {
			t.Fatalf("re-encode: %v", err)
		}
	})
}

func TestFileLogLockedAgainstSecondProcess(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir)
	if _, err := OpenFile(dir, quiet); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second open of a log in use: %v", err)
	}
	l.Close()
	l2 := openT(t, dir)
	l2.Close()
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	if doc, err := ReadFile(dir); err != nil || len(doc.Tenants) != 0 {
		t.Fatalf("no log: %+v %v", doc, err)
	}
	l := openT(t, dir)
	defer l.Close()
	doc := fullDoc(t)
	if _, err := l.Append(context.Background(), Records(doc)); err != nil {
		t.Fatal(err)
	}
	// Readable while the log is open, and a torn tail is ignored.
	f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{9, 0, 0, 0, 1, 2})
	f.Close()
	got, err := ReadFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sorted(doc)) {
		t.Errorf("ReadFile differs")
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, FileName), []byte("not a config log"), 0o600)
	if _, err := ReadFile(bad); err == nil {
		t.Error("ReadFile of a foreign file succeeded")
	}
}

// TestFileLogCompactsOnOpen: a log that is mostly records later ones
// replaced is rewritten on open with only the latest record of every live
// key, and holds the same configuration; a log that is mostly live is left
// as it is.
func TestFileLogCompactsOnOpen(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		rewrites  int // appends of the same keys with new values
		compacted bool
	}{
		{"mostly replaced records", 40, true},
		{"mostly live records", 1, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openT(t, dir)
			big := strings.Repeat("v", 4<<10)
			var want State = State{}
			for round := range tc.rewrites {
				var recs []Record
				for k := range 300 / tc.rewrites * 1 {
					key := AppKey("t", "s", fmt.Sprintf("a%03d", k))
					v := []byte(fmt.Sprintf("%d:%s", round, big))
					recs = append(recs, Record{Key: key, Value: v})
				}
				recs = append(recs, Record{Key: TenantKey("t"), Value: []byte(fmt.Sprint(round))})
				if round == tc.rewrites-1 {
					recs = append(recs, Record{Key: AppKey("t", "s", "a000")}) // a tombstone
				}
				if _, err := l.Append(ctx, recs); err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					want.Apply(r)
				}
			}
			before, _ := l.End(ctx)
			l.Close()
			l = openT(t, dir)
			defer l.Close()
			after, _ := l.End(ctx)
			if got := after < before/2; got != tc.compacted {
				t.Fatalf("end %d after reopen, %d before: compacted %v, want %v", after, before, got, tc.compacted)
			}
			got := State{}
			var prevRank int
			for _, e := range readAll(t, l) {
				if r := rankOf(e.Key); r < prevRank && tc.compacted {
					t.Errorf("record %s after a child in the compacted log", e.Key)
				} else {
					prevRank = r
				}
				got.Apply(e)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("state after reopen differs: %d keys, want %d", len(got), len(want))
			}
			if _, err := l.Append(ctx, []Record{{Key: TenantKey("u"), Value: []byte("x")}}); err != nil {
				t.Fatal(err)
			}
			if n := len(readAll(t, l)); tc.compacted && n != len(got)+1 {
				t.Errorf("append after compaction: %d records, want %d", n, len(got)+1)
			}
		})
	}
}
