package limiter

import (
	"errors"
	"math"
	"testing"
	"time"
)

// TestCountersNeverWrap drives every way usage reaches a counter (Do in each
// mode, Record, Seed) with values at the edge of int64. A call that would
// take a counter (or the usage summed for one metric) past MaxInt64, or that
// carries a negative value, must be refused as a whole, with the matching
// error, leaving every counter as it was; no counter may ever read negative.
func TestCountersNeverWrap(t *testing.T) {
	const big = math.MaxInt64
	type op uint8
	const (
		opDo op = iota
		opRecord
		opSeed
	)
	type step struct {
		op    op
		mode  Mode    // opDo
		usage []Usage // opDo, opRecord
		ago   time.Duration
		// opSeed
		metric MetricID
		period string
		value  int64

		wantErr     error // nil: accepted
		wantAllowed bool  // opDo
		current     []int64
	}
	u := func(m MetricID, v int64) Usage { return Usage{Metric: m, Value: v} }
	set := func(m MetricID, v int64) Usage { return Usage{Metric: m, Value: v, Set: true} }
	tests := []struct {
		name   string
		limits []Limit
		steps  []step
	}{
		{"report of MaxInt64 twice (a hostile batch report)",
			[]Limit{lim(mHits, "day", 100), lim(mHits, "eternity", 1000)},
			[]step{
				{op: opDo, mode: ModeReport, usage: []Usage{u(mHits, big)}, wantAllowed: true, current: []int64{big, big}},
				{op: opDo, mode: ModeReport, usage: []Usage{u(mHits, big)}, wantErr: ErrOverflow, current: []int64{big, big}},
				{op: opDo, mode: ModeReport, usage: []Usage{u(mHits, 1)}, wantErr: ErrOverflow, current: []int64{big, big}},
				{op: opDo, mode: ModeAuthorize, wantAllowed: false, current: []int64{big, big}},
				{op: opDo, mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, wantAllowed: false, current: []int64{big, big}},
			}},
		{"report past MaxInt64 on a sliding window",
			[]Limit{lim(mHits, "sliding:1m", 100)},
			[]step{
				{op: opDo, mode: ModeReport, usage: []Usage{u(mHits, big-1)}, wantAllowed: true, current: []int64{big - 1}},
				{op: opDo, mode: ModeReport, usage: []Usage{u(mHits, 2)}, wantErr: ErrOverflow, current: []int64{big - 1}},
				{op: opDo, mode: ModeReport, usage: []Usage{u(mHits, 1)}, wantAllowed: true, current: []int64{big}},
			}},
		{"children summing past MaxInt64 into a limited parent (authrep)",
			[]Limit{lim(mHits, "day", 100)},
			[]step{
				{op: opDo, mode: ModeAuthRep, usage: []Usage{u(mSearch, big), u(mFast, big)}, wantErr: ErrOverflow, current: []int64{0}},
				{op: opDo, mode: ModeAuthorize, usage: []Usage{u(mSearch, big), u(mFast, big)}, wantErr: ErrOverflow, current: []int64{0}},
				{op: opDo, mode: ModeAuthRep, usage: []Usage{u(mSearch, 60), u(mFast, 40)}, wantAllowed: true, current: []int64{100}},
			}},
		{"children summing past MaxInt64 (report)",
			[]Limit{lim(mHits, "month", 100), lim(mOther, "month", 100)},
			[]step{
				{op: opDo, mode: ModeReport, usage: []Usage{u(mOther, 3), u(mSearch, big), u(mFast, 1)}, wantErr: ErrOverflow, current: []int64{0, 0}},
				{op: opDo, mode: ModeReport, usage: []Usage{u(mOther, 3), u(mSearch, big-1), u(mFast, 1)}, wantAllowed: true, current: []int64{big, 3}},
			}},
		{"a set plus the call's other usage past MaxInt64",
			[]Limit{lim(mSearch, "minute", 10), lim(mSearch, "sliding:10s", 10)},
			[]step{
				{op: opDo, mode: ModeReport, usage: []Usage{set(mSearch, big), u(mFast, 1)}, wantErr: ErrOverflow, current: []int64{0, 0}},
				{op: opDo, mode: ModeReport, usage: []Usage{set(mSearch, big-1), u(mFast, 1)}, wantAllowed: true, current: []int64{big, big}},
				{op: opDo, mode: ModeReport, usage: []Usage{set(mSearch, 4)}, wantAllowed: true, current: []int64{4, 4}},
			}},
		{"one counter past MaxInt64 refuses the whole report",
			[]Limit{lim(mSearch, "day", 10), lim(mHits, "day", 10), lim(mHits, "sliding:1m", 10)},
			[]step{
				{op: opDo, mode: ModeReport, usage: []Usage{u(mHits, 5)}, wantAllowed: true, current: []int64{0, 5, 5}},
				{op: opDo, mode: ModeReport, usage: []Usage{u(mSearch, big-2)}, wantErr: ErrOverflow, current: []int64{0, 5, 5}},
				{op: opRecord, usage: []Usage{u(mSearch, big-2)}, wantErr: ErrOverflow, current: []int64{0, 5, 5}},
				{op: opDo, mode: ModeReport, usage: []Usage{u(mSearch, big-5)}, wantAllowed: true, current: []int64{big - 5, big, big}},
			}},
		{"negative values are refused in every mode",
			[]Limit{lim(mHits, "day", 100), lim(mHits, "sliding:1m", 100)},
			[]step{
				{op: opDo, mode: ModeAuthRep, usage: []Usage{u(mHits, 7)}, wantAllowed: true, current: []int64{7, 7}},
				{op: opDo, mode: ModeAuthRep, usage: []Usage{u(mHits, -5)}, wantErr: ErrNegative, current: []int64{7, 7}},
				{op: opDo, mode: ModeReport, usage: []Usage{u(mHits, -5)}, wantErr: ErrNegative, current: []int64{7, 7}},
				{op: opDo, mode: ModeReport, usage: []Usage{set(mHits, -1)}, wantErr: ErrNegative, current: []int64{7, 7}},
				{op: opDo, mode: ModeAuthorize, usage: []Usage{u(mOther, -1)}, wantErr: ErrNegative, current: []int64{7, 7}},
				{op: opRecord, usage: []Usage{u(mHits, 3), u(mOther, -1)}, wantErr: ErrNegative, current: []int64{7, 7}},
				{op: opSeed, metric: mHits, period: "day", value: -3, wantErr: ErrNegative, current: []int64{7, 7}},
				{op: opSeed, metric: mHits, period: "sliding:1m", value: -3, wantErr: ErrNegative, current: []int64{7, 7}},
			}},
		{"record (replay) of MaxInt64 twice, at past times",
			[]Limit{lim(mHits, "hour", 100), lim(mHits, "sliding:1m", 100)},
			[]step{
				{op: opRecord, usage: []Usage{u(mHits, big)}, ago: 20 * time.Second, current: []int64{big, big}},
				{op: opRecord, usage: []Usage{u(mHits, big)}, ago: 10 * time.Second, wantErr: ErrOverflow, current: []int64{big, big}},
				{op: opRecord, usage: []Usage{u(mHits, 1)}, wantErr: ErrOverflow, current: []int64{big, big}},
			}},
		{"record of a set in an older sub-bucket keeps the newer ones",
			[]Limit{lim(mHits, "sliding:1m", 100)},
			[]step{
				{op: opRecord, usage: []Usage{u(mHits, big-10)}, current: []int64{big - 10}},
				{op: opRecord, usage: []Usage{set(mHits, 11)}, ago: 30 * time.Second, wantErr: ErrOverflow, current: []int64{big - 10}},
				{op: opRecord, usage: []Usage{set(mHits, 10)}, ago: 30 * time.Second, current: []int64{big}},
			}},
		{"seed of a sliding window past MaxInt64",
			[]Limit{lim(mHits, "sliding:1m", 100)},
			[]step{
				{op: opSeed, metric: mHits, period: "sliding:1m", value: big, current: []int64{big}},
				{op: opSeed, metric: mHits, period: "sliding:1m", value: 1, wantErr: ErrOverflow, current: []int64{big}},
			}},
		{"seed of a calendar window at MaxInt64 stops further usage",
			[]Limit{lim(mHits, "day", 100)},
			[]step{
				{op: opSeed, metric: mHits, period: "day", value: big, current: []int64{big}},
				{op: opDo, mode: ModeReport, usage: []Usage{u(mHits, 1)}, wantErr: ErrOverflow, current: []int64{big}},
				{op: opDo, mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, wantAllowed: false, current: []int64{big}},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock("2026-05-15 10:30:20")
			l := New(Options{Clock: clock.Now})
			const app AppKey = 42
			var d Decision
			for i, s := range tc.steps {
				var err error
				switch s.op {
				case opDo:
					l.Do(&Request{App: app, Limits: tc.limits, Parents: modelParents, Usage: s.usage, Mode: s.mode}, &d)
					err = d.Err
					if d.Allowed != (s.wantAllowed && s.wantErr == nil) {
						t.Errorf("step %d: allowed %v, want %v", i, d.Allowed, s.wantAllowed && s.wantErr == nil)
					}
				case opRecord:
					err = l.Record(app, tc.limits, modelParents, s.usage, false, clock.Now().Add(-s.ago))
				case opSeed:
					p := mustPeriod(s.period)
					start, _ := WindowBounds(p, clock.Now())
					if p.Unit == Sliding {
						start = clock.Now().Add(-s.ago).Unix()
					}
					err = l.Seed(app, s.metric, p, start, s.value)
				}
				if !errors.Is(err, s.wantErr) || (err == nil) != (s.wantErr == nil) {
					t.Errorf("step %d: error %v, want %v", i, err, s.wantErr)
				}
				l.Do(&Request{App: app, Limits: tc.limits, Parents: modelParents, Mode: ModeAuthorize}, &d)
				got := currents(&d)
				for j, v := range got {
					if v < 0 {
						t.Fatalf("step %d: counter %v is negative: %d", i, tc.limits[j], v)
					}
				}
				if len(got) != len(s.current) {
					t.Fatalf("step %d: %d reports, want %d", i, len(got), len(s.current))
				}
				for j := range got {
					if got[j] != s.current[j] {
						t.Errorf("step %d: counters %v, want %v", i, got, s.current)
						break
					}
				}
			}
		})
	}
}

// TestSlidingSumSaturates checks the read side of the invariant: a window
// that spans more usage than any single earlier window (the clock went
// back) reads MaxInt64, not a wrapped negative sum.
func TestSlidingSumSaturates(t *testing.T) {
	c := make([]uint64, slidingWords)
	c[1] = 20 // head
	for i := range ringSize {
		c[2+i] = math.MaxInt64 / 3
	}
	cases := []struct {
		name   string
		lo, hi int64
		want   int64
	}{
		{"two buckets fit", 19, 20, 2 * (math.MaxInt64 / 3)},
		{"three buckets fit", 18, 20, 3 * (math.MaxInt64 / 3)},
		{"four buckets saturate", 17, 20, math.MaxInt64},
		{"the whole ring saturates, past 2^64", 13, 20, math.MaxInt64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := slidingSum(c, tc.lo, tc.hi); got != tc.want {
				t.Errorf("slidingSum(%d, %d) = %d, want %d", tc.lo, tc.hi, got, tc.want)
			}
		})
	}
}

// TestCheckUsage checks the early validation callers run before Do or
// Record: the metric it names, and that it agrees with what Do refuses.
func TestCheckUsage(t *testing.T) {
	const big = math.MaxInt64
	u := func(m MetricID, v int64) Usage { return Usage{Metric: m, Value: v} }
	set := func(m MetricID, v int64) Usage { return Usage{Metric: m, Value: v, Set: true} }
	cases := []struct {
		name    string
		usage   []Usage
		setMode bool
		metric  MetricID
		err     error
	}{
		{"nothing", nil, false, 0, nil},
		{"one value of MaxInt64", []Usage{u(mFast, big)}, false, 0, nil},
		{"unrelated metrics may each reach MaxInt64", []Usage{u(mFast, big), u(mOther, big)}, false, 0, nil},
		{"siblings' sum passes at their parent", []Usage{u(mOther, 1), u(mSearch, big), u(mHits, 1)}, false, mHits, ErrOverflow},
		{"a grandchild and its grandparent", []Usage{u(mHits, big-4), u(mFast, 5)}, false, mHits, ErrOverflow},
		{"child and parent exactly at MaxInt64", []Usage{u(mSearch, big-5), u(mFast, 5)}, false, 0, nil},
		{"a set does not propagate", []Usage{set(mSearch, big), u(mHits, 1)}, true, 0, nil},
		{"a set plus a child passes", []Usage{set(mSearch, big), u(mFast, 1)}, true, mSearch, ErrOverflow},
		{"without setMode a set is a plain value", []Usage{set(mSearch, big), u(mHits, 1)}, false, mHits, ErrOverflow},
		{"a negative value", []Usage{u(mOther, 3), u(mHits, -1)}, false, 0, ErrNegative},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := CheckUsage(tc.usage, modelParents, tc.setMode)
			if err != tc.err || (err != nil && m != tc.metric) {
				t.Fatalf("CheckUsage = %d, %v; want %d, %v", m, err, tc.metric, tc.err)
			}
			// Do, which reads sets as sets in every mode, refuses exactly
			// what CheckUsage refuses in setMode (its only other refusal is
			// a counter's own overflow).
			if !tc.setMode {
				return
			}
			limits := []Limit{lim(mHits, "day", big), lim(mSearch, "day", big), lim(mFast, "day", big), lim(mOther, "day", big)}
			for _, mode := range []Mode{ModeReport, ModeAuthRep, ModeAuthorize} {
				var d Decision
				New(Options{}).Do(&Request{App: 1, Limits: limits, Parents: modelParents, Usage: tc.usage, Mode: mode}, &d)
				if d.Err != tc.err {
					t.Errorf("mode %v: Do refused with %v, CheckUsage with %v", mode, d.Err, tc.err)
				}
			}
		})
	}
}
