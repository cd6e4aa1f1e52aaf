package limiter

import (
	"errors"
	"testing"
	"time"
)

func TestParsePeriod(t *testing.T) {
	tests := []struct {
		in        string
		want      Period
		canonical string // String() of the result; "" means in
	}{
		{"minute", Period{Unit: Minute}, ""},
		{"hour", Period{Unit: Hour}, ""},
		{"day", Period{Unit: Day}, ""},
		{"week", Period{Unit: Week}, ""},
		{"month", Period{Unit: Month}, ""},
		{"year", Period{Unit: Year}, ""},
		{"eternity", Period{Unit: Eternity}, ""},
		{"sliding:1s", Period{Unit: Sliding, Window: time.Second}, ""},
		{"sliding:10s", Period{Unit: Sliding, Window: 10 * time.Second}, ""},
		{"sliding:1m", Period{Unit: Sliding, Window: time.Minute}, ""},
		{"sliding:1m0s", Period{Unit: Sliding, Window: time.Minute}, "sliding:1m"},
		{"sliding:60s", Period{Unit: Sliding, Window: time.Minute}, "sliding:1m"},
		{"sliding:90m", Period{Unit: Sliding, Window: 90 * time.Minute}, "sliding:1h30m"},
		{"sliding:1h30m", Period{Unit: Sliding, Window: 90 * time.Minute}, ""},
		{"sliding:1h0m30s", Period{Unit: Sliding, Window: time.Hour + 30*time.Second}, "sliding:1h30s"},
		{"sliding:1500ms", Period{Unit: Sliding, Window: 1500 * time.Millisecond}, "sliding:1.5s"},
		{"sliding:2m3.25s", Period{Unit: Sliding, Window: 123250 * time.Millisecond}, ""},
		{"sliding:24h", Period{Unit: Sliding, Window: 24 * time.Hour}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePeriod(tt.in)
			if err != nil {
				t.Fatalf("ParsePeriod(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Fatalf("ParsePeriod(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			want := tt.canonical
			if want == "" {
				want = tt.in
			}
			if s := got.String(); s != want {
				t.Errorf("String() = %q, want %q", s, want)
			}
			if s := string(got.AppendText([]byte("x"))); s != "x"+want {
				t.Errorf("AppendText = %q, want %q", s, "x"+want)
			}
			back, err := ParsePeriod(got.String())
			if err != nil || back != got {
				t.Errorf("round trip of %q: %+v, %v", got.String(), back, err)
			}
		})
	}
}

func TestParsePeriodErrors(t *testing.T) {
	for _, in := range []string{
		"", "fortnight", "Minute", "minutes", " day", "sliding", "sliding:", "sliding:abc",
		"sliding:10", "sliding:999ms", "sliding:0s", "sliding:-1m", "sliding:24h0m1s", "sliding:25h",
		"sliding:1.0005s", "sliding 1m", "eternity:1s",
	} {
		if p, err := ParsePeriod(in); err == nil {
			t.Errorf("ParsePeriod(%q) = %+v, want an error", in, p)
		} else if !errors.Is(err, ErrPeriod) {
			t.Errorf("ParsePeriod(%q): error %v does not wrap ErrPeriod", in, err)
		}
	}
}

func TestAppendTextDoesNotAllocate(t *testing.T) {
	buf := make([]byte, 0, 64)
	p := Period{Unit: Sliding, Window: 90*time.Minute + 1500*time.Millisecond}
	if n := testing.AllocsPerRun(100, func() { buf = p.AppendText(buf[:0]) }); n != 0 {
		t.Errorf("AppendText allocates %v times", n)
	}
	if got := string(buf); got != "sliding:1h30m1.5s" {
		t.Errorf("got %q", got)
	}
}

func FuzzParsePeriod(f *testing.F) {
	for _, s := range []string{"minute", "eternity", "sliding:1m", "sliding:1h30m", "sliding:1.5s", "fortnight", "sliding:25h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePeriod(s)
		if err != nil {
			return
		}
		back, err := ParsePeriod(p.String())
		if err != nil || back != p {
			t.Fatalf("%q parsed to %+v, printed as %q, parsed back to %+v, %v", s, p, p.String(), back, err)
		}
	})
}

// refBounds computes calendar windows with package time, independently of
// the integer arithmetic the limiter uses.
func refBounds(u Unit, now time.Time) (start, end time.Time) {
	now = now.UTC()
	y, m, d := now.Date()
	switch u {
	case Minute:
		start = now.Truncate(time.Minute)
		return start, start.Add(time.Minute)
	case Hour:
		start = now.Truncate(time.Hour)
		return start, start.Add(time.Hour)
	case Day:
		start = time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 1)
	case Week:
		back := (int(now.Weekday()) + 6) % 7 // days since Monday
		start = time.Date(y, m, d-back, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 0, 7)
	case Month:
		start = time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(0, 1, 0)
	case Year:
		start = time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC)
		return start, start.AddDate(1, 0, 0)
	}
	return time.Unix(0, 0), time.Unix(0, 0)
}

func TestWindowBounds(t *testing.T) {
	utc := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04:05.999", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		unit       Unit
		now        string
		start, end string
	}{
		{Minute, "2024-02-29 23:59:59.999", "2024-02-29 23:59:00", "2024-03-01 00:00:00"},
		{Hour, "2024-12-31 23:30:00", "2024-12-31 23:00:00", "2025-01-01 00:00:00"},
		{Day, "2024-02-29 12:00:00", "2024-02-29 00:00:00", "2024-03-01 00:00:00"},
		{Week, "2024-01-01 00:00:00", "2024-01-01 00:00:00", "2024-01-08 00:00:00"}, // a Monday
		{Week, "2024-01-07 23:59:59", "2024-01-01 00:00:00", "2024-01-08 00:00:00"}, // a Sunday
		{Week, "2025-01-01 10:00:00", "2024-12-30 00:00:00", "2025-01-06 00:00:00"}, // across the new year
		{Week, "1970-01-01 00:00:00", "1969-12-29 00:00:00", "1970-01-05 00:00:00"},
		{Month, "2024-02-29 23:59:59", "2024-02-01 00:00:00", "2024-03-01 00:00:00"},
		{Month, "2023-02-28 00:00:00", "2023-02-01 00:00:00", "2023-03-01 00:00:00"},
		{Month, "2024-12-31 23:59:59", "2024-12-01 00:00:00", "2025-01-01 00:00:00"},
		{Month, "2100-02-15 00:00:00", "2100-02-01 00:00:00", "2100-03-01 00:00:00"},
		{Year, "2024-12-31 23:59:59", "2024-01-01 00:00:00", "2025-01-01 00:00:00"},
		{Year, "2025-01-01 00:00:00", "2025-01-01 00:00:00", "2026-01-01 00:00:00"},
	}
	for _, tt := range tests {
		p := Period{Unit: tt.unit}
		start, end := WindowBounds(p, utc(tt.now))
		if start != utc(tt.start).Unix() || end != utc(tt.end).Unix() {
			t.Errorf("WindowBounds(%v, %s) = %v, %v; want %s, %s", p, tt.now,
				time.Unix(start, 0).UTC(), time.Unix(end, 0).UTC(), tt.start, tt.end)
		}
	}
	now := utc("2024-05-15 10:30:20.5")
	if s, e := WindowBounds(Period{Unit: Eternity}, now); s != 0 || e != 0 {
		t.Errorf("eternity: %d, %d", s, e)
	}
	if s, e := WindowBounds(Period{Unit: Sliding, Window: time.Minute}, now); s != now.Unix()-60 || e != now.Unix() {
		t.Errorf("sliding: %d, %d want %d, %d", s, e, now.Unix()-60, now.Unix())
	}
}

// TestCalBoundsAgainstTime compares the integer calendar arithmetic with
// package time over every day of 1968..2104 (leap years, centuries).
func TestCalBoundsAgainstTime(t *testing.T) {
	l := New(Options{Shards: 1})
	for day := time.Date(1968, 1, 1, 0, 0, 0, 0, time.UTC); day.Year() < 2105; day = day.AddDate(0, 0, 1) {
		for _, at := range []time.Time{day, day.Add(86399 * time.Second)} {
			for u := Minute; u <= Year; u++ {
				ws, we := refBounds(u, at)
				s, e := calBounds(u, at.Unix())
				cs, ce := l.bounds(u, at.Unix())
				if s != ws.Unix() || e != we.Unix() || cs != s || ce != e {
					t.Fatalf("%v at %v: calBounds %v..%v, cached %v..%v, want %v..%v", Period{Unit: u}, at,
						time.Unix(s, 0).UTC(), time.Unix(e, 0).UTC(), time.Unix(cs, 0).UTC(), time.Unix(ce, 0).UTC(), ws, we)
				}
			}
		}
	}
}

// TestSecondUnit checks the calendar second: its bounds, its text, that
// plans cannot name it, and that a limit of it resets every second.
func TestSecondUnit(t *testing.T) {
	if got := (Period{Unit: Second}).String(); got != "second" {
		t.Fatalf("String = %q, want second", got)
	}
	if _, err := ParsePeriod("second"); err == nil {
		t.Fatal("ParsePeriod(second) accepted a period plans must not have")
	}
	for _, sec := range []int64{0, 1, 1700000000, -5} {
		s, e := CalendarBounds(Second, sec)
		if s != sec || e != sec+1 {
			t.Errorf("CalendarBounds(Second, %d) = [%d, %d), want [%d, %d)", sec, s, e, sec, sec+1)
		}
	}
	now := time.Unix(1700000000, 500_000_000)
	l := New(Options{Shards: 1, Clock: func() time.Time { return now }})
	req := &Request{App: 1, Limits: []Limit{{Metric: 0, Period: Period{Unit: Second}, Max: 2}}, Usage: []Usage{{Metric: 0, Value: 1}}, Mode: ModeAuthRep}
	var d Decision
	for i, want := range []bool{true, true, false} {
		l.Do(req, &d)
		if d.Allowed != want {
			t.Fatalf("call %d in the first second: allowed %v, want %v", i, d.Allowed, want)
		}
	}
	if d.Reset != 1 || d.Reports[0].Start != 1700000000 || d.Reports[0].End != 1700000001 {
		t.Fatalf("reset %d window [%d, %d), want 1 and [1700000000, 1700000001)", d.Reset, d.Reports[0].Start, d.Reports[0].End)
	}
	now = now.Add(time.Second)
	l.Do(req, &d)
	if !d.Allowed || d.Reports[0].Current != 1 {
		t.Fatalf("next second: allowed %v current %d, want a fresh window", d.Allowed, d.Reports[0].Current)
	}
}
