package limiter

import (
	"slices"
	"testing"
	"time"
)

// TestReportBefore: every report says the counter's value before the call,
// so that watchers see what an admitted call moved.
func TestReportBefore(t *testing.T) {
	clock := newFakeClock("2026-12-04 10:00:30")
	l := New(Options{Clock: clock.Now})
	limits := []Limit{lim(mHits, "minute", 10), lim(mHits, "eternity", 100)}
	var d Decision
	for _, c := range []struct {
		name            string
		mode            Mode
		value           int64
		before, current []int64
	}{
		{"authrep admitted", ModeAuthRep, 4, []int64{0, 0}, []int64{4, 4}},
		{"authorize counts nothing", ModeAuthorize, 3, []int64{4, 4}, []int64{4, 4}},
		{"authrep refused", ModeAuthRep, 7, []int64{4, 4}, []int64{4, 4}},
		{"report", ModeReport, 7, []int64{4, 4}, []int64{11, 11}},
	} {
		t.Run(c.name, func(t *testing.T) {
			l.Do(&Request{App: 1, Limits: limits, Parents: modelParents, Usage: []Usage{{Metric: mHits, Value: c.value}}, Mode: c.mode}, &d)
			var before, current []int64
			for _, r := range d.Reports {
				before, current = append(before, r.Before), append(current, r.Current)
			}
			if !slices.Equal(before, c.before) || !slices.Equal(current, c.current) {
				t.Fatalf("before %v current %v, want %v %v", before, current, c.before, c.current)
			}
		})
	}
}

func TestRecordChanges(t *testing.T) {
	clock := newFakeClock("2026-12-04 10:00:30")
	l := New(Options{Clock: clock.Now})
	minute := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).Unix()
	limits := []Limit{lim(mHits, "minute", 10), lim(mHits, "sliding:1m", 10), lim(mHits, "eternity", 100), lim(mHits, "minute", 10)}
	var changes []Change
	for _, c := range []struct {
		name  string
		usage []Usage
		at    time.Time
		want  []Change
	}{
		{"adds", []Usage{{Metric: mHits, Value: 3}}, clock.Now(),
			[]Change{{Limit: 0, Start: minute, Before: 0, After: 3}, {Limit: 2, Start: 0, Before: 0, After: 3}}},
		{"again", []Usage{{Metric: mHits, Value: 2}}, clock.Now(),
			[]Change{{Limit: 0, Start: minute, Before: 3, After: 5}, {Limit: 2, Start: 0, Before: 3, After: 5}}},
		{"a set lowers", []Usage{{Metric: mHits, Value: 1, Set: true}}, clock.Now(),
			[]Change{{Limit: 0, Start: minute, Before: 5, After: 1}, {Limit: 2, Start: 0, Before: 5, After: 1}}},
		{"a closed window counts nowhere but eternity", []Usage{{Metric: mHits, Value: 2}}, clock.Now().Add(-time.Minute),
			[]Change{{Limit: 2, Start: 0, Before: 1, After: 3}}},
		{"zero changes nothing", []Usage{{Metric: mHits, Value: 0}}, clock.Now(), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			changes = changes[:0]
			if err := l.RecordChanges(1, limits, modelParents, c.usage, false, c.at, &changes); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(changes, c.want) {
				t.Fatalf("changes %+v, want %+v", changes, c.want)
			}
		})
	}
	// A refused record reports nothing.
	changes = changes[:0]
	if err := l.RecordChanges(1, limits, modelParents, []Usage{{Metric: mHits, Value: -1}}, false, clock.Now(), &changes); err == nil || len(changes) != 0 {
		t.Fatalf("negative usage: %v, changes %+v", err, changes)
	}
	// No allocation once changes has room.
	changes = make([]Change, 0, len(limits))
	if n := testing.AllocsPerRun(100, func() {
		changes = changes[:0]
		l.RecordChanges(1, limits, modelParents, []Usage{{Metric: mHits, Value: 1}}, false, clock.Now(), &changes)
	}); n != 0 {
		t.Fatalf("RecordChanges allocates %v times per call", n)
	}
}
