package limiter

import (
	"errors"
	"math"
	"testing"
	"time"
)

// TestPlanEditedInPlace: a Decision keeps the plan it compiled; a request
// whose limits changed in the same slice is compiled again, never served
// from the stale copy.
func TestPlanEditedInPlace(t *testing.T) {
	clock := newFakeClock("2026-05-15 10:30:20")
	l := New(Options{Clock: clock.Now})
	limits := []Limit{
		{Metric: 0, Period: Period{Unit: Minute}, Max: 10},
		{Metric: 0, Period: Period{Unit: Sliding, Window: time.Minute}, Max: 10},
	}
	req := &Request{App: 1, Limits: limits, Parents: []MetricID{NoParent}, Usage: []Usage{{Metric: 0, Value: 3}}, Mode: ModeAuthRep}
	var d Decision
	l.Do(req, &d)
	if !d.Allowed || d.Reports[0].Current != 3 || d.Reports[1].Current != 3 {
		t.Fatalf("first call: %+v", d)
	}
	for _, tc := range []struct {
		name    string
		edit    func()
		allowed bool
		max0    int64
	}{
		{"max lowered below the usage", func() { limits[0].Max = 5 }, false, 5},
		{"max raised", func() { limits[0].Max = 100 }, true, 100},
		{"period changed: a fresh counter", func() { limits[1].Period = Period{Unit: Hour}; limits[1].Max = 3 }, true, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.edit()
			l.Do(req, &d)
			if d.Allowed != tc.allowed || d.Reports[0].Limit.Max != tc.max0 || d.Reports[1].Limit != limits[1] {
				t.Errorf("allowed %v, reports %+v; want allowed %v with the edited limits %+v", d.Allowed, d.Reports, tc.allowed, limits)
			}
		})
	}
}

// TestWindowsCachedPerSecond: the calendar windows and sliding sub-bucket
// a Decision keeps follow the clock across seconds, minutes and months,
// forwards and backwards.
func TestWindowsCachedPerSecond(t *testing.T) {
	clock := newFakeClock("2026-01-31 23:59:58")
	l := New(Options{Clock: clock.Now})
	limits := []Limit{
		{Metric: 0, Period: Period{Unit: Minute}, Max: 1 << 40},
		{Metric: 0, Period: Period{Unit: Month}, Max: 1 << 40},
		{Metric: 0, Period: Period{Unit: Sliding, Window: 10 * time.Second}, Max: 1 << 40},
	}
	req := &Request{App: 1, Limits: limits, Usage: []Usage{{Metric: 0, Value: 1}}, Mode: ModeAuthRep}
	var d Decision
	for _, step := range []time.Duration{0, 300 * time.Millisecond, time.Second, 700 * time.Millisecond, time.Second, -3 * time.Second, 45 * time.Second, 24 * time.Hour} {
		clock.Add(step)
		now := clock.Now()
		l.Do(req, &d)
		for i, lim := range limits {
			ws, we := WindowBounds(lim.Period, now)
			if d.Reports[i].Start != ws || d.Reports[i].End != we {
				t.Fatalf("at %v, %v: window %d..%d, want %d..%d", now, lim.Period, d.Reports[i].Start, d.Reports[i].End, ws, we)
			}
		}
	}
}

// TestSharedClock: the default clock follows the wall clock, stops after
// idleTicks without a read and starts again on the next one.
func TestSharedClock(t *testing.T) {
	var c autoClock
	before := time.Now().UnixNano()
	got := c.nowNs()
	if got < before || got > time.Now().UnixNano() || !c.running.Load() {
		t.Fatalf("first read %d, not between %d and now (running %v)", got, before, c.running.Load())
	}
	time.Sleep(20 * time.Millisecond)
	if got := c.nowNs(); time.Now().UnixNano()-got > int64(15*time.Millisecond) {
		t.Errorf("read while running is %v old", time.Duration(time.Now().UnixNano()-got))
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.running.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the clock still runs 5s after its last read")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before = time.Now().UnixNano()
	if got := c.nowNs(); got < before || !c.running.Load() {
		t.Errorf("read after stopping: %d < %d or not running again", got, before)
	}
	l := New(Options{})
	if now := l.now(); abs64(now.ns-time.Now().UnixNano()) > int64(time.Second) || now.sec != now.ns/int64(time.Second) {
		t.Errorf("default clock instant %+v", now)
	}
}

func abs64(v int64) int64 { return max(v, -v) }

// TestRecordPlanSizes: Record counts the same on plans that fit the
// per-limit stack state and on larger ones, once per counter, and refuses
// an overflow on either without counting anything.
func TestRecordPlanSizes(t *testing.T) {
	var big []Limit
	for u := Minute; u <= Eternity; u++ {
		big = append(big, Limit{Metric: 0, Period: Period{Unit: u}, Max: 1 << 62})
	}
	big = append(big, Limit{Metric: 0, Period: Period{Unit: Sliding, Window: time.Minute}, Max: 1 << 62})
	big = append(big, Limit{Metric: 0, Period: Period{Unit: Minute}, Max: 1 << 62}) // the minute counter again
	for _, tc := range []struct {
		name   string
		limits []Limit
	}{
		{"3 limits", big[:3]},
		{"8 limits", big[:8]},
		{"9 limits, one counter twice", big},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock("2026-05-15 10:30:20")
			l := New(Options{Clock: clock.Now})
			if err := l.Record(1, tc.limits, []MetricID{NoParent}, []Usage{{Metric: 0, Value: 2}}, false, clock.Now()); err != nil {
				t.Fatal(err)
			}
			if err := l.Record(1, tc.limits, []MetricID{NoParent}, []Usage{{Metric: 0, Value: math.MaxInt64}}, false, clock.Now()); !errors.Is(err, ErrOverflow) {
				t.Fatalf("overflow: %v", err)
			}
			var d Decision
			l.Do(&Request{App: 1, Limits: tc.limits, Mode: ModeAuthorize}, &d)
			for i, r := range d.Reports {
				if r.Current != 2 {
					t.Errorf("limit %d (%v): %d, want 2", i, r.Limit.Period, r.Current)
				}
			}
		})
	}
}
