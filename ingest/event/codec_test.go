package event

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// sampleEvent is the documented sample of FORMAT.md; testdata/event-v1.bin is
// its encoding.
func sampleEvent() Event {
	return Event{
		ID:        [16]byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f},
		Kind:      KindAuthrep,
		TS:        1763900000000,
		Received:  1763900000250,
		TenantID:  "t1",
		ServiceID: "svc-42",
		AppID:     "app-7",
		PlanID:    "gold",
		Usage: []Usage{
			{Metric: "hits", Value: 1},
			{Metric: "storage", Value: -5},
			{Metric: "quota", Value: 100, Set: true},
		},
		Code:   200,
		Region: "eu-west",
		Node:   "n1",
	}
}

// sampleFlatEvent is sampleEvent as a flat_usage call sends it: version 2.
func sampleFlatEvent() Event {
	e := sampleEvent()
	for i := range e.Usage {
		e.Usage[i].Flat = true
	}
	return e
}

func TestGolden(t *testing.T) {
	for _, tc := range []struct {
		name    string
		event   Event
		file    string
		version byte
	}{
		{"v1", sampleEvent(), "event-v1", Version},
		{"v2 flat", sampleFlatEvent(), "event-v2", Version2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.event
			got := AppendEvent(nil, &e)
			if got[0] != tc.version {
				t.Fatalf("version byte %d, want %d", got[0], tc.version)
			}
			gotHex := []byte(hex.Dump(got))
			binPath := filepath.Join("testdata", tc.file+".bin")
			hexPath := filepath.Join("testdata", tc.file+".hex")
			if *update {
				if err := os.WriteFile(binPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(hexPath, gotHex, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(binPath)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encoding differs from %s:\ngot:\n%swant:\n%s", binPath, hex.Dump(got), hex.Dump(want))
			}
			wantHex, err := os.ReadFile(hexPath)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gotHex, wantHex) {
				t.Fatalf("%s does not match %s", hexPath, binPath)
			}
			var back Event
			if err := Decode(want, &back); err != nil {
				t.Fatalf("decoding golden vector: %v", err)
			}
			if !reflect.DeepEqual(back, e) {
				t.Fatalf("golden vector decodes to %+v, want %+v", back, e)
			}
		})
	}
}

// The flat flag exists from version 2 on: a version-1 event carrying it is
// invalid, as any unknown flag.
func TestFlatFlagNeedsVersion2(t *testing.T) {
	e := sampleFlatEvent()
	b := AppendEvent(nil, &e)
	b[0] = Version
	var back Event
	if err := Decode(b, &back); !errors.Is(err, ErrInvalid) {
		t.Fatalf("version 1 with the flat flag: %v, want ErrInvalid", err)
	}
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		e    Event
	}{
		{"sample", sampleEvent()},
		{"minimal", Event{Kind: KindReport}},
		{"denied", Event{Kind: KindDenied, TS: 1, Received: 2, AppID: "a", Reason: "usage_limits_exceeded", Code: 409}},
		{"extremes", Event{
			ID: [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Kind: KindDenied,
			TS: math.MinInt64, Received: math.MaxInt64, Code: math.MinInt16,
			Usage: []Usage{{Metric: "", Value: math.MinInt64}, {Metric: "m", Value: math.MaxInt64, Set: true}},
		}},
		{"max code", Event{Kind: KindAuthrep, Code: math.MaxInt16}},
		{"unicode and long", Event{Kind: KindReport, TenantID: "tenänt-✓", PlanID: string(bytes.Repeat([]byte("p"), 300))}},
		{"many usages", Event{Kind: KindReport, Usage: manyUsages(200)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendEvent([]byte("prefix"), &tc.e)
			if string(b[:6]) != "prefix" {
				t.Fatal("AppendEvent clobbered dst")
			}
			b = b[6:]
			if len(b) != EncodedLen(&tc.e) {
				t.Fatalf("EncodedLen = %d, encoded %d", EncodedLen(&tc.e), len(b))
			}
			// Decode into a dirty event to prove every field is overwritten.
			got := Event{Kind: KindDenied, Reason: "stale", Usage: []Usage{{"x", 9, true, true}, {"y", 9, true, false}, {"z", 1, false, true}}}
			if err := Decode(b, &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			assertSame(t, got, tc.e)
			var d Decoder
			var got2 Event
			if err := d.Decode(b, &got2); err != nil {
				t.Fatalf("Decoder.Decode: %v", err)
			}
			assertSame(t, got2, tc.e)
		})
	}
}

func manyUsages(n int) []Usage {
	us := make([]Usage, n)
	for i := range us {
		us[i] = Usage{Metric: "metric_" + string(rune('a'+i%26)), Value: int64(i * 1000), Set: i%7 == 0}
	}
	return us
}

// assertSame compares events treating a nil and an empty Usage as equal.
func assertSame(t *testing.T, got, want Event) {
	t.Helper()
	if len(got.Usage) == 0 && len(want.Usage) == 0 {
		got.Usage, want.Usage = nil, nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	e := sampleEvent()
	good := AppendEvent(nil, &e)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"version 0", mod(func(b []byte) []byte { b[0] = 0; return b }), ErrVersion},
		{"version 3", mod(func(b []byte) []byte { b[0] = 3; return b }), ErrVersion},
		{"kind 0", mod(func(b []byte) []byte { b[1] = 0; return b }), ErrInvalid},
		{"kind 4", mod(func(b []byte) []byte { b[1] = 4; return b }), ErrInvalid},
		{"short header", good[:10], ErrTruncated},
		{"trailing byte", append(append([]byte(nil), good...), 0), ErrInvalid},
		{"cut last byte", good[:len(good)-1], ErrTruncated},
		{"non-minimal varint", append(append([]byte(nil), good[:18]...), 0x80, 0x00), ErrInvalid},
		{"overlong varint", append(append([]byte(nil), good[:18]...), bytes.Repeat([]byte{0xff}, 11)...), ErrInvalid},
		{"code out of range", func() []byte {
			b := append([]byte(nil), good[:18]...)
			b = appendVarint(b, 0)
			b = appendVarint(b, 0)
			return appendVarint(b, 1<<15)
		}(), ErrInvalid},
		{"huge string length", func() []byte {
			b := append([]byte(nil), good[:18]...)
			b = append(b, 0, 0, 0)
			return appendUvarint(b, 1<<40)
		}(), ErrTruncated},
		{"huge usage count", func() []byte {
			x := Event{Kind: KindReport}
			b := AppendEvent(nil, &x)
			b = b[:len(b)-1]
			return appendUvarint(b, 1<<50)
		}(), ErrTruncated},
		{"flat flag in version 1", func() []byte {
			x := Event{Kind: KindReport, Usage: []Usage{{Metric: "m", Value: 1}}}
			b := AppendEvent(nil, &x)
			b[len(b)-2] = 0x02
			return b
		}(), ErrInvalid},
		{"version 2 without a flat entry", mod(func(b []byte) []byte { b[0] = 2; return b }), ErrInvalid},
		{"unknown flag in version 2", func() []byte {
			x := Event{Kind: KindReport, Usage: []Usage{{Metric: "m", Value: 1, Flat: true}}}
			b := AppendEvent(nil, &x)
			b[len(b)-2] = 0x06
			return b
		}(), ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got Event
			err := Decode(tc.in, &got)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Decode error = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for k := 0; k < 256; k++ {
		e := Event{Kind: Kind(k)}
		err := Validate(&e)
		valid := k >= 1 && k <= 3
		if (err == nil) != valid {
			t.Fatalf("Validate(kind %d) = %v", k, err)
		}
		var back Event
		derr := Decode(AppendEvent(nil, &e), &back)
		if (derr == nil) != valid {
			t.Fatalf("Decode(kind %d) = %v, Validate = %v", k, derr, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	e := sampleEvent()
	f.Add(AppendEvent(nil, &e))
	fe := sampleFlatEvent()
	f.Add(AppendEvent(nil, &fe))
	f.Add([]byte{1, 2})
	f.Add([]byte{})
	x := Event{Kind: KindDenied, Usage: manyUsages(3)}
	f.Add(AppendEvent(nil, &x))
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if err := Decode(b, &e); err != nil {
			return
		}
		// The format is canonical (minimal varints, no trailing bytes, no
		// unknown flags), so whatever decodes re-encodes to the same bytes.
		if re := AppendEvent(nil, &e); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding differs:\nin  %x\nout %x", b, re)
		}
		var d Decoder
		var e2 Event
		if err := d.Decode(b, &e2); err != nil {
			t.Fatalf("Decoder rejects what Decode accepts: %v", err)
		}
		assertSame(t, e2, e)
	})
}

func TestAllocs(t *testing.T) {
	e := sampleEvent()
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = AppendEvent(buf[:0], &e) }); n != 0 {
		t.Errorf("AppendEvent allocates %v times", n)
	}
	var d Decoder
	var out Event
	_ = d.Decode(buf, &out) // warm the intern table and the Usage slice
	if n := testing.AllocsPerRun(100, func() {
		if err := d.Decode(buf, &out); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Decoder.Decode allocates %v times with warm interner", n)
	}
	g := NewIDGenerator()
	var key []byte
	if n := testing.AllocsPerRun(100, func() {
		e.ID = g.Next()
		key = Key(key[:0], e.ServiceID, e.AppID)
	}); n != 0 {
		t.Errorf("Next+Key allocate %v times", n)
	}
}

func TestDecoderInternBound(t *testing.T) {
	d := Decoder{MaxStrings: 4}
	for i := 0; i < 100; i++ {
		e := Event{Kind: KindReport, AppID: string(rune('a' + i%50))}
		var out Event
		if err := d.Decode(AppendEvent(nil, &e), &out); err != nil {
			t.Fatal(err)
		}
		if out.AppID != e.AppID {
			t.Fatalf("AppID = %q, want %q", out.AppID, e.AppID)
		}
		if len(d.strs) > 4 {
			t.Fatalf("intern table holds %d strings, bound is 4", len(d.strs))
		}
	}
}

func TestIDGeneratorUnique(t *testing.T) {
	g1, g2 := NewIDGenerator(), NewIDGenerator()
	if g1.prefix == g2.prefix {
		t.Fatal("two generators share a random prefix")
	}
	const workers, per = 4, 5000
	var mu sync.Mutex
	seen := make(map[[16]byte]bool, workers*per)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([][16]byte, per)
			for i := range ids {
				ids[i] = g1.Next()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if seen[id] {
					t.Errorf("duplicate id %x", id)
				}
				seen[id] = true
			}
		}()
	}
	wg.Wait()
}

func TestKey(t *testing.T) {
	if got := string(Key([]byte("x"), "svc", "app")); got != "xsvc/app" {
		t.Fatalf("Key = %q", got)
	}
}

func TestMemorySink(t *testing.T) {
	var s MemorySink
	e := sampleEvent()
	if err := s.Append(&e); err != nil {
		t.Fatal(err)
	}
	// The caller may reuse its event at once.
	e.AppID, e.Usage[0].Value = "other", 99
	if err := s.Append(&e); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(&Event{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Append of kind 0 = %v, want ErrInvalid", err)
	}
	got := s.Events()
	if len(got) != 2 || s.Len() != 2 {
		t.Fatalf("got %d events (Len %d), want 2", len(got), s.Len())
	}
	assertSame(t, got[0], sampleEvent())
	assertSame(t, got[1], e)
	s.Reset()
	if s.Len() != 0 || len(s.Events()) != 0 {
		t.Fatal("Reset kept events")
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	e := sampleEvent()
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		buf = AppendEvent(buf[:0], &e)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkDecoder(b *testing.B) {
	e := sampleEvent()
	buf := AppendEvent(nil, &e)
	var d Decoder
	var out Event
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for i := 0; i < b.N; i++ {
		if err := d.Decode(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}
