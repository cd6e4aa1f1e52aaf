package kafka

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// smallJournal is 16 segments of 4 KiB: about 30 frames of 100 bytes each.
const smallJournal = 16 * 4096

func jpayload(i int) []byte {
	return fmt.Appendf(nil, "frame-%06d-%s", i, string(make([]byte, 80)))
}

func jappend(t *testing.T, j *journal, i int) int64 {
	t.Helper()
	b := jpayload(i)
	ref, ok := j.append(b, crc32.Checksum(b, castagnoli), jDirect)
	if !ok {
		t.Fatalf("append %d: journal full with %d pending", i, j.pendingFrames())
	}
	return ref
}

func openJ(t *testing.T, path string) (*journal, []jframe) {
	t.Helper()
	j, pending, err := openJournal(path, smallJournal)
	if err != nil {
		t.Fatal(err)
	}
	return j, pending
}

func payloads(fs []jframe) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.payload[:12]))
	}
	return out
}

func names(is []int) []string {
	var out []string
	for _, i := range is {
		out = append(out, string(jpayload(i)[:12]))
	}
	return out
}

// TestJournalWrapAround writes many times the journal's size while keeping
// a few frames pending for a long time, then reopens it: exactly the
// pending frames come back, in write order, intact.
func TestJournalWrapAround(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, pending := openJ(t, path)
	if len(pending) != 0 {
		t.Fatalf("new journal has %d pending frames", len(pending))
	}
	var keep []int // frames never marked done
	window := map[int]int64{}
	const total = 2000 // ~60 laps of the ring
	for i := range total {
		ref := jappend(t, j, i)
		if i%500 == 7 {
			keep = append(keep, i) // pins its segment for the rest of the test
			continue
		}
		window[i] = ref
		// Frames complete out of order, a few at a time.
		if len(window) >= 5 {
			for k, r := range window {
				j.done(r)
				delete(window, k)
				break
			}
		}
	}
	for k := range window {
		keep = append(keep, k)
	}
	slices.Sort(keep)
	if got := j.pendingFrames(); got != int64(len(keep)) {
		t.Fatalf("%d frames pending, want %d", got, len(keep))
	}
	if err := j.close(); err != nil {
		t.Fatal(err)
	}
	j2, pending := openJ(t, path)
	defer j2.close()
	if got, want := payloads(pending), names(keep); !slices.Equal(got, want) {
		t.Fatalf("recovered %v, want %v", got, want)
	}
	for _, f := range pending {
		n, err := strconv.Atoi(string(f.payload[6:12]))
		if err != nil || string(f.payload) != string(jpayload(n)) {
			t.Fatalf("payload damaged: %q", f.payload)
		}
	}
	// Appends continue after the recovered frames, which stay pending.
	jappend(t, j2, total)
	if j2.pendingFrames() != int64(len(keep))+1 {
		t.Fatalf("pending %d after one more append", j2.pendingFrames())
	}
}

// TestJournalTornFrame damages the last frame in the ways a kill mid-copy
// can: the scan stops before it and every earlier frame is recovered.
func TestJournalTornFrame(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(fr []byte)
	}{
		{"payload half written", func(fr []byte) {
			for i := jFrameHeader + 6; i < len(fr); i++ {
				fr[i] = 0xaa
			}
		}},
		{"generation not yet written", func(fr []byte) { binary.LittleEndian.PutUint64(fr[16:], 0) }},
		{"length not yet written", func(fr []byte) { binary.LittleEndian.PutUint32(fr[0:], 0xfffff) }},
		{"checksum of another payload", func(fr []byte) { fr[jFrameHeader+3] ^= 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal")
			j, _ := openJ(t, path)
			var last int64
			for i := range 5 {
				last = jappend(t, j, i)
			}
			n := align8(jFrameHeader + len(jpayload(4)))
			tc.damage(j.mem[last : last+int64(n)])
			j.close()
			j2, pending := openJ(t, path)
			defer j2.close()
			if got, want := payloads(pending), names([]int{0, 1, 2, 3}); !slices.Equal(got, want) {
				t.Fatalf("recovered %v, want %v", got, want)
			}
		})
	}
}

// TestJournalStaleFramesIgnored reuses a segment with fewer frames than it
// held before: the old frames behind the new ones are not recovered, and a
// segment whose header was torn is empty.
func TestJournalStaleFramesIgnored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, _ := openJ(t, path)
	// Fill every segment once, all done, so the writer wraps to segment 0.
	i := 0
	for j.cur < journalSegments-1 || j.off+align8(jFrameHeader+len(jpayload(0))) <= j.segBytes {
		j.done(jappend(t, j, i))
		i++
	}
	first := i
	jappend(t, j, i) // wraps: a new generation of segment 0, one pending frame
	if j.cur != 0 {
		t.Fatalf("writer in segment %d, want 0 after wrapping", j.cur)
	}
	// Mark an old frame of segment 0 "pending" again behind the new one:
	// its generation is old, so it must not count.
	stale := journalHeaderBytes + jSegHeader + 2*align8(jFrameHeader+len(jpayload(0)))
	binary.LittleEndian.PutUint32(j.mem[stale+8:], 0)
	// Tear segment 3's header: nothing in it may be recovered.
	binary.LittleEndian.PutUint64(j.mem[j.segBase(3)+8:], 12345)
	j.close()
	j2, pending := openJ(t, path)
	defer j2.close()
	if got, want := payloads(pending), names([]int{first}); !slices.Equal(got, want) {
		t.Fatalf("recovered %v, want %v", got, want)
	}
}

// TestJournalFull: when every segment holds a pending frame, append
// refuses; marking frames done makes room again.
func TestJournalFull(t *testing.T) {
	j, _ := openJ(t, filepath.Join(t.TempDir(), "journal"))
	defer j.close()
	var refs []int64
	for i := 0; ; i++ {
		b := jpayload(i)
		ref, ok := j.append(b, crc32.Checksum(b, castagnoli), jDirect)
		if !ok {
			break
		}
		refs = append(refs, ref)
		if i > 10000 {
			t.Fatal("journal never filled up")
		}
	}
	perSeg := (j.segBytes - jSegHeader) / align8(jFrameHeader+len(jpayload(0)))
	if len(refs) != perSeg*journalSegments {
		t.Fatalf("full after %d frames, want %d", len(refs), perSeg*journalSegments)
	}
	// Completing all but one frame of the first segment frees nothing.
	for _, r := range refs[1:perSeg] {
		j.done(r)
	}
	if _, ok := j.append(jpayload(0), 0, jDirect); ok {
		t.Fatal("append succeeded while every segment still holds a pending frame")
	}
	j.done(refs[0])
	if _, ok := j.append(jpayload(0), 0, jDirect); !ok {
		t.Fatal("append failed after a whole segment was done")
	}
	// A payload larger than a segment never fits.
	if _, ok := j.append(make([]byte, j.segBytes), 0, jDirect); ok {
		t.Fatal("append accepted a frame larger than a segment")
	}
}

// TestJournalCheckpointSlots: the newest valid checkpoint wins, and a torn
// write of the newest falls back to the previous one.
func TestJournalCheckpointSlots(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	j, _ := openJ(t, path)
	if _, _, ok := j.readCheckpoint(); ok {
		t.Fatal("new journal has a checkpoint")
	}
	j.writeCheckpoint(5, []int64{10, -1, 30})
	j.writeCheckpoint(9, []int64{11, 20, 31, 7})
	k, offs, ok := j.readCheckpoint()
	if !ok || k != 9 || !slices.Equal(offs, []int64{11, 20, 31, 7}) {
		t.Fatalf("checkpoint %d %v %v, want 9 [11 20 31 7]", k, offs, ok)
	}
	// Tear the newest (slot of k=9).
	binary.LittleEndian.PutUint64(j.mem[jSlotOff[j.ckSlot]+16:], 999)
	j.close()
	j2, _ := openJ(t, path)
	defer j2.close()
	k, offs, ok = j2.readCheckpoint()
	if !ok || k != 5 || !slices.Equal(offs, []int64{10, -1, 30}) {
		t.Fatalf("after a torn write: checkpoint %d %v %v, want 5 [10 -1 30]", k, offs, ok)
	}
	if j2.epoch.Load() <= 5 {
		t.Fatalf("epoch %d after reopen, want above the checkpoint's", j2.epoch.Load())
	}
}

// TestJournalDamagedHeaderRecreated: a journal whose header is unreadable
// (its creation was interrupted) is recreated empty.
func TestJournalDamagedHeaderRecreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "journal")
	if err := os.WriteFile(path, []byte("SLCJ"), 0o644); err != nil {
		t.Fatal(err)
	}
	j, pending := openJ(t, path)
	defer j.close()
	if len(pending) != 0 {
		t.Fatalf("%d pending frames in a recreated journal", len(pending))
	}
	jappend(t, j, 1)
}

// BenchmarkJournalAppend measures what the journal adds to Append: copying
// a 200-byte frame into the mapping, and marking it done later.
func BenchmarkJournalAppend(b *testing.B) {
	j, _, err := openJournal(filepath.Join(b.TempDir(), "journal"), DefaultJournalBytes)
	if err != nil {
		b.Fatal(err)
	}
	defer j.close()
	payload := make([]byte, 200)
	crc := crc32.Checksum(payload, castagnoli)
	var window [1024]int64 // frames complete a little later, as acks do
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for i := 0; b.Loop(); i++ {
		w := &window[i%len(window)]
		if *w != 0 {
			j.done(*w)
		}
		ref, ok := j.append(payload, crc, jDirect)
		if !ok {
			b.Fatal("journal full")
		}
		*w = ref
	}
}
