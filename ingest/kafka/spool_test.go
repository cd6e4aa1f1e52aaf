package kafka

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/event"
)

func appendFrames(t *testing.T, l *segLog, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		start := l.startFrame(int64(i), []byte(fmt.Sprintf("k%d", i)))
		l.wbuf = append(l.wbuf, fmt.Sprintf("value-%d", i)...)
		if err := l.endFrame(start); err != nil {
			t.Fatal(err)
		}
		// Flush per frame so that small segMax values roll segments (the
		// producer flushes every 64 KiB or SpoolSyncInterval).
		if err := l.flush(); err != nil {
			t.Fatal(err)
		}
	}
}

// readFrom reads every frame from the cursor on, like the drainer but
// without committing; it returns the timestamps (frame numbers).
func readFrom(t *testing.T, l *segLog) []int64 {
	t.Helper()
	var got []int64
	for _, s := range l.segs {
		if s.seq < l.readSeq {
			continue
		}
		b, err := os.ReadFile(filepath.Join(l.dir, segName(s.seq)))
		if err != nil {
			t.Fatal(err)
		}
		if s.seq == l.readSeq {
			b = b[l.readOff:]
		}
		for len(b) > 0 {
			n, err := frameAt(b)
			if err != nil {
				t.Fatalf("segment %d: %v", s.seq, err)
			}
			ts, key, value, err := parseFrame(b[frameHeader:n])
			if err != nil {
				t.Fatal(err)
			}
			if string(key) != fmt.Sprintf("k%d", ts) || string(value) != fmt.Sprintf("value-%d", ts) {
				t.Fatalf("frame %d holds key %q value %q", ts, key, value)
			}
			got = append(got, ts)
			b = b[n:]
		}
	}
	return got
}

func TestSegLogCursorSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	l, err := openSegLog(dir, 256)
	if err != nil {
		t.Fatal(err)
	}
	appendFrames(t, l, 0, 100)
	if len(l.segs) < 5 {
		t.Fatalf("want several segments of 256 bytes, got %d", len(l.segs))
	}
	// Acknowledge the first segment and 3 frames of the second.
	first := l.segs[0]
	seq, off, end, ok, err := l.readable()
	if err != nil || !ok || seq != first.seq || off != 0 || end != first.size {
		t.Fatalf("readable = %d %d %d %v %v", seq, off, end, ok, err)
	}
	if err := l.commit(seq, end); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(first.seq))); !os.IsNotExist(err) {
		t.Fatalf("drained segment still exists (err %v)", err)
	}
	before := readFrom(t, l)
	second := l.segs[0]
	b, _ := os.ReadFile(filepath.Join(dir, segName(second.seq)))
	var cut int64
	for i := 0; i < 3; i++ {
		n, _ := frameAt(b[cut:])
		cut += int64(n)
	}
	if err := l.commit(second.seq, cut); err != nil {
		t.Fatal(err)
	}
	want := before[3:]
	if err := l.closeAll(); err != nil {
		t.Fatal(err)
	}

	l2, err := openSegLog(dir, 256)
	if err != nil {
		t.Fatal(err)
	}
	if !l2.pending() {
		t.Fatal("reopened log has nothing pending")
	}
	got := readFrom(t, l2)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after reopen got frames %v, want %v", got, want)
	}
	// New frames go to a new segment after the old ones.
	appendFrames(t, l2, 100, 103)
	got = readFrom(t, l2)
	if got[len(got)-1] != 102 || len(got) != len(want)+3 {
		t.Fatalf("appended frames missing or misplaced: %v", got)
	}
}

func TestSegLogTruncatesTornTail(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail func(good []byte) []byte
	}{
		{"partial header", func([]byte) []byte { return []byte{9, 0, 0} }},
		{"partial payload", func(good []byte) []byte { return good[:len(good)-3] }},
		{"bad checksum", func(good []byte) []byte {
			b := append([]byte(nil), good...)
			b[len(b)-1] ^= 0xff
			return b
		}},
		{"absurd length", func([]byte) []byte { return binary.LittleEndian.AppendUint32(nil, 1<<30) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := openSegLog(dir, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			appendFrames(t, l, 0, 10)
			size := l.segs[0].size
			path := filepath.Join(dir, segName(l.segs[0].seq))
			if err := l.closeAll(); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path)
			n, _ := frameAt(b)
			lastGood := b[:n]
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(tc.tail(lastGood))
			f.Close()

			l2, err := openSegLog(dir, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if l2.segs[0].size != size {
				t.Fatalf("segment size after recovery %d, want %d", l2.segs[0].size, size)
			}
			if fi, _ := os.Stat(path); fi.Size() != size {
				t.Fatalf("file not truncated: %d bytes, want %d", fi.Size(), size)
			}
			if got := readFrom(t, l2); len(got) != 10 {
				t.Fatalf("recovered %d frames, want 10", len(got))
			}
		})
	}
}

// TestCorruptFrameSkipped flips a byte inside one spooled event: the drainer
// skips that frame alone, counts it, and sends everything else in order.
func TestCorruptFrameSkipped(t *testing.T) {
	port := freePort(t)
	o := testOptions(t, port)
	o.MaxBuffered = 1 // nearly everything goes to the main spool log
	p := newProducer(t, o)
	src := newSource(1)
	var e event.Event
	const n = 300
	for i := 0; i < n; i++ {
		src.next(&e)
		if err := p.Append(&e); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Corrupt the 100th frame of the main log's first segment.
	segs, _ := filepath.Glob(filepath.Join(o.SpoolDir, "main", "*.seg"))
	if len(segs) == 0 {
		t.Fatal("no main spool segment")
	}
	b, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	var off int
	for i := 0; i < 99; i++ {
		k, err := frameAt(b[off:])
		if err != nil {
			t.Fatal(err)
		}
		off += k
	}
	k, _ := frameAt(b[off:])
	b[off+k-2] ^= 0x55
	if err := os.WriteFile(segs[0], b, 0o644); err != nil {
		t.Fatal(err)
	}

	c := startBroker(t, port, "")
	defer c.Close()
	p2 := newProducer(t, o)
	waitFor(t, "the spool to drain", 30*time.Second, func() bool { return !p2.Stats().Spooling })
	if err := p2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := p2.Stats(); st.Corrupt != 1 || st.SpoolDrained != n-1 {
		t.Fatalf("stats %+v: want 1 corrupt frame and %d drained", st, n-1)
	}
	got := consume(t, port, n-1, 20*time.Second)
	if len(got.byID) != n-1 || got.duplicates != 0 {
		t.Fatalf("consumed %d distinct (%d duplicates), want %d", len(got.byID), got.duplicates, n-1)
	}
	seqs := got.order["svc/app-0"]
	// Every sequence but the corrupted one (frame 100 of the main log; the
	// retry log holds the one in-flight event, sequence 1) in order.
	prev := int64(0)
	for _, v := range seqs {
		if v <= prev {
			t.Fatalf("out of order: %d after %d", v, prev)
		}
		prev = v
	}
}
