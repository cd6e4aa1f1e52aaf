package query

import (
	"fmt"
	"testing"
	"time"
)

// localKey is the reference bucket of instant t: computed from local
// calendar fields only, independently of makeBuckets. The hour key carries
// the offset so that a repeated (fall-back) hour is a different bucket.
func localKey(t time.Time, g Granularity, loc *time.Location) string {
	lt := t.In(loc)
	switch g {
	case Minute:
		return lt.Format("2006-01-02T15:04-0700")
	case Hour:
		_, off := lt.Zone()
		return fmt.Sprintf("%s %d", lt.Format("2006-01-02T15"), off)
	case Day:
		return lt.Format("2006-01-02")
	case Week:
		back := (int(lt.Weekday()) + 6) % 7
		y, m, d := lt.Date()
		return time.Date(y, m, d-back, 0, 0, 0, 0, time.UTC).Format("2006-01-02")
	case Month:
		return lt.Format("2006-01")
	}
	return ""
}

var testZones = []string{
	"UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Adelaide",
	"America/Santiago", "America/Havana", "Asia/Kathmandu", "Pacific/Chatham", "America/St_Johns",
}

// TestBucketsMatchLocalCalendar checks every bucket boundary against the
// local calendar minute by minute, over both DST seasons of 2026, in zones
// with odd offsets and DST changes at midnight.
func TestBucketsMatchLocalCalendar(t *testing.T) {
	ranges := [][2]time.Time{
		{time.Date(2026, 3, 1, 7, 13, 0, 0, time.UTC), time.Date(2026, 4, 20, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 9, 20, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 9, 17, 1, 30, 0, time.UTC)},
	}
	for _, zone := range testZones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range []Granularity{Hour, Day, Week, Month} {
			for _, r := range ranges {
				b, ok := makeBuckets(r[0], r[1], g, loc, 5000)
				if !ok {
					t.Fatalf("%s %s: too many buckets", zone, g)
				}
				checkBuckets(t, fmt.Sprintf("%s %s %v", zone, g, r[0]), b, r[0], r[1], g, loc)
			}
		}
	}
}

func checkBuckets(t *testing.T, name string, b buckets, from, to time.Time, g Granularity, loc *time.Location) {
	t.Helper()
	if !b[0].After(from) == false && !b[0].Equal(from) {
		t.Fatalf("%s: first boundary %v after from %v", name, b[0], from)
	}
	if b[len(b)-1].Before(to) {
		t.Fatalf("%s: last boundary %v before to %v", name, b[len(b)-1], to)
	}
	if localKey(b[0].Add(-time.Minute), g, loc) == localKey(b[0], g, loc) {
		t.Fatalf("%s: %v is not the start of a bucket", name, b[0])
	}
	for i := 0; i < b.n(); i++ {
		if b[i].Second() != 0 || b[i].Nanosecond() != 0 || !b[i+1].After(b[i]) {
			t.Fatalf("%s: bad boundary %v -> %v", name, b[i], b[i+1])
		}
		k := localKey(b[i], g, loc)
		for m := b[i]; m.Before(b[i+1]); m = m.Add(time.Minute) {
			if localKey(m, g, loc) != k {
				t.Fatalf("%s: bucket %d starting %v holds %v of another bucket (%s vs %s)", name, i, b[i].In(loc), m.In(loc), localKey(m, g, loc), k)
			}
		}
		if localKey(b[i+1], g, loc) == k {
			t.Fatalf("%s: bucket %d ends at %v, inside its own key %s", name, i, b[i+1].In(loc), k)
		}
	}
}

func TestBucketsDSTLengths(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	berlin, _ := time.LoadLocation("Europe/Berlin")
	for _, tc := range []struct {
		name     string
		from, to time.Time
		g        Granularity
		loc      *time.Location
		want     int // buckets
		wantLast time.Duration
	}{
		{"NY 2026-11-01 has 25 hours", time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC), time.Date(2026, 11, 2, 5, 0, 0, 0, time.UTC), Hour, ny, 25, time.Hour},
		{"NY day of the change is one 25 h bucket", time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC), time.Date(2026, 11, 2, 5, 0, 0, 0, time.UTC), Day, ny, 1, 25 * time.Hour},
		{"Berlin 2026-10-25 has 25 hours", time.Date(2026, 10, 24, 22, 0, 0, 0, time.UTC), time.Date(2026, 10, 25, 23, 0, 0, 0, time.UTC), Hour, berlin, 25, time.Hour},
		{"Berlin 2026-03-29 is 23 h", time.Date(2026, 3, 28, 23, 0, 0, 0, time.UTC), time.Date(2026, 3, 29, 22, 0, 0, 0, time.UTC), Day, berlin, 1, 23 * time.Hour},
		{"range widened to whole days", time.Date(2026, 11, 1, 13, 7, 0, 0, time.UTC), time.Date(2026, 11, 3, 0, 0, 1, 0, time.UTC), Day, time.UTC, 3, 24 * time.Hour},
		{"total rounds to minutes", time.Date(2026, 11, 1, 13, 7, 30, 0, time.UTC), time.Date(2026, 11, 3, 0, 0, 1, 0, time.UTC), Total, ny, 1, 0},
		{"week starts Monday", time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC), Week, time.UTC, 1, 7 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, ok := makeBuckets(tc.from, tc.to, tc.g, tc.loc, MaxBuckets)
			if !ok || b.n() != tc.want {
				t.Fatalf("got %d buckets (%v), want %d", b.n(), ok, tc.want)
			}
			if tc.wantLast != 0 && b[b.n()].Sub(b[b.n()-1]) != tc.wantLast {
				t.Errorf("last bucket %v long, want %v", b[b.n()].Sub(b[b.n()-1]), tc.wantLast)
			}
			if tc.g == Week && b[0].Weekday() != time.Monday {
				t.Errorf("week starts %v", b[0].Weekday())
			}
			if tc.g == Total && (!b[0].Equal(time.Date(2026, 11, 1, 13, 7, 0, 0, time.UTC)) || !b[1].Equal(time.Date(2026, 11, 3, 0, 1, 0, 0, time.UTC))) {
				t.Errorf("total bucket %v..%v", b[0], b[1])
			}
		})
	}
}

func TestTooManyBuckets(t *testing.T) {
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, ok := makeBuckets(from, from.AddDate(1, 0, 0), Minute, time.UTC, MaxBuckets); ok {
		t.Fatal("a year of minutes accepted")
	}
	if _, ok := makeBuckets(from, from.Add(24*time.Hour), Minute, time.UTC, MaxBuckets); !ok {
		t.Fatal("a day of minutes refused")
	}
}

func TestBucketIndex(t *testing.T) {
	b, _ := makeBuckets(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC), Hour, time.UTC, 10)
	for _, tc := range []struct {
		t    time.Time
		want int
	}{
		{time.Date(2026, 10, 31, 23, 59, 0, 0, time.UTC), -1},
		{time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), 0},
		{time.Date(2026, 11, 1, 1, 59, 0, 0, time.UTC), 1},
		{time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC), 2},
		{time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC), -1},
	} {
		if got := b.index(tc.t); got != tc.want {
			t.Errorf("index(%v) = %d, want %d", tc.t, got, tc.want)
		}
	}
}
