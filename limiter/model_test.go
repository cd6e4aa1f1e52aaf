package limiter

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// The property test drives the limiter and a naive reference model (a list
// of every recorded usage event with its time, per counter) with the same
// random calls while an injected clock walks across minute, hour, day, week,
// month and year boundaries, leap days and new years. Calendar results must
// be identical; sliding windows must keep the documented guarantees.

// Metrics of the test service: fast is a child of search, a child of hits.
const (
	mHits MetricID = iota
	mSearch
	mFast
	mOther
	numMetrics
)

var modelParents = []MetricID{NoParent, mHits, mSearch, NoParent}

func mustPeriod(s string) Period {
	p, err := ParsePeriod(s)
	if err != nil {
		panic(err)
	}
	return p
}

func lim(m MetricID, period string, max int64) Limit {
	return Limit{Metric: m, Period: mustPeriod(period), Max: max}
}

var modelPlans = [][]Limit{
	{ // A: every period, a duplicate counter, a disabled metric; more counters than fit inline
		lim(mHits, "minute", 12), lim(mHits, "minute", 15), lim(mHits, "hour", 40), lim(mSearch, "day", 60),
		lim(mSearch, "week", 90), lim(mFast, "month", 100), lim(mHits, "year", 400), lim(mFast, "eternity", 150),
		lim(mHits, "sliding:10s", 6), lim(mSearch, "sliding:1m", 10), lim(mOther, "minute", 0), lim(mOther, "day", 8),
	},
	{ // B shares some counters with A (a plan change keeps them)
		lim(mHits, "minute", 5), lim(mSearch, "day", 30), lim(mHits, "sliding:10s", 4), lim(mOther, "day", 3),
		lim(mSearch, "sliding:45s", 7),
	},
	{}, // C: no limits at all
}

type refEvent struct {
	ns     int64
	delta  int64
	set    bool
	setVal int64
}

type refKey struct {
	app    AppKey
	metric MetricID
	period Period
}

type refModel struct {
	events map[refKey][]refEvent // in time order: the clock never goes back
}

// ancestorsOf lists m's ancestors, from an explicit walk of the table.
func ancestorsOf(m MetricID) map[MetricID]bool {
	out := map[MetricID]bool{}
	for p := modelParents[m]; p != NoParent; p = modelParents[p] {
		out[p] = true
	}
	return out
}

// refUsage is the usage of a call on metric m, straight from the spec
// (setMode: a Set entry sets its own metric only, as in every mode of Do).
func refUsage(usage []Usage, flat bool, m MetricID, setMode bool) (delta int64, touched, set bool, setVal int64) {
	for _, u := range usage {
		switch {
		case u.Metric == m && u.Set && setMode:
			touched, set, setVal = true, true, u.Value
		case u.Metric == m:
			touched = true
			delta += u.Value
		case !flat && !(u.Set && setMode) && ancestorsOf(u.Metric)[m]:
			touched = true
			delta += u.Value
		}
	}
	return
}

// fold replays the events with time in [from, to] in order: sets replace
// the value, deltas add.
func fold(evs []refEvent, from, to int64) int64 {
	i := sort.Search(len(evs), func(i int) bool { return evs[i].ns >= from })
	var v int64
	for ; i < len(evs) && evs[i].ns <= to; i++ {
		if evs[i].set {
			v = evs[i].setVal
		}
		v += evs[i].delta
	}
	return v
}

// slidingG is a sliding window's sub-bucket width, the documented bound on
// over-counting: the limiter counts usage at most W+W/K old.
func slidingG(w time.Duration) int64 { return (int64(w) + SubBuckets - 1) / SubBuckets }

// value is the reference counter value at now.
func (m *refModel) value(k refKey, now time.Time) int64 {
	evs := m.events[k]
	switch k.period.Unit {
	case Eternity:
		return fold(evs, 0, now.UnixNano())
	case Sliding:
		// Exactly what sub-buckets count: everything since the start of the
		// oldest sub-bucket overlapping [now-W, now].
		g := slidingG(k.period.Window)
		lo := floorDiv(now.UnixNano()-int64(k.period.Window), g)
		return fold(evs, lo*g, now.UnixNano())
	}
	s, e := refBounds(k.period.Unit, now)
	return fold(evs, s.UnixNano(), e.UnixNano()-1)
}

// expect computes the decision the spec requires, and records the usage.
func (m *refModel) expect(req *Request, now time.Time) Decision {
	report := req.Mode == ModeReport
	noUsage := len(req.Usage) == 0
	type st struct {
		delta, setVal int64
		touched, set  bool
	}
	sts := make([]st, len(req.Limits))
	before := make([]int64, len(req.Limits))
	allowed := true
	for i, l := range req.Limits {
		s := &sts[i]
		s.delta, s.touched, s.set, s.setVal = refUsage(req.Usage, req.Flat, l.Metric, true)
		cur := m.value(refKey{req.App, l.Metric, l.Period}, now)
		before[i] = cur
		switch {
		case report:
		case noUsage:
			if cur > l.Max {
				allowed = false
			}
		case s.set && (l.Max <= 0 || s.setVal+s.delta > l.Max):
			allowed = false
		case !s.set && s.touched && (l.Max <= 0 || cur+s.delta > l.Max):
			allowed = false
		}
	}
	if (allowed && req.Mode == ModeAuthRep) || report {
		done := map[refKey]bool{}
		for i, l := range req.Limits {
			s := sts[i]
			k := refKey{req.App, l.Metric, l.Period}
			if !s.touched || (!s.set && s.delta == 0) || done[k] {
				continue
			}
			done[k] = true
			m.events[k] = append(m.events[k], refEvent{ns: now.UnixNano(), delta: s.delta, set: s.set, setVal: s.setVal})
		}
	}
	d := Decision{Allowed: allowed || report, Constrained: -1, Remaining: -1, Reset: -1}
	var bestLen int64
	for i, l := range req.Limits {
		r := Report{Limit: l, Current: m.value(refKey{req.App, l.Metric, l.Period}, now), Before: before[i]}
		switch l.Period.Unit {
		case Eternity:
		case Sliding:
			r.Start, r.End = floorDiv(now.UnixNano()-int64(l.Period.Window), 1e9), now.Unix()
		default:
			s, e := refBounds(l.Period.Unit, now)
			r.Start, r.End = s.Unix(), e.Unix()
		}
		r.Exceeded = r.Current > l.Max
		d.Reports = append(d.Reports, r)
		if !noUsage && !sts[i].touched {
			continue
		}
		rem := l.Max - r.Current
		if sts[i].delta > 0 {
			rem /= sts[i].delta
		}
		rem = max(rem, 0)
		plen := nominalLength(l.Period)
		if d.Constrained < 0 || rem < d.Remaining || (rem == d.Remaining && plen > bestLen) {
			d.Constrained, d.Remaining, bestLen = i, rem, plen
		}
	}
	if d.Constrained >= 0 {
		switch r := d.Reports[d.Constrained]; r.Limit.Period.Unit {
		case Eternity:
		case Sliding:
			d.Reset = -2 // checked by bounds, not exactly
		default:
			d.Reset = r.End - now.Unix()
		}
	}
	return d
}

func nominalLength(p Period) int64 {
	switch p.Unit {
	case Sliding:
		return int64(p.Window / time.Second)
	case Eternity:
		return 1 << 62
	}
	s, e := refBounds(p.Unit, time.Date(2025, 6, 15, 0, 0, 0, 0, time.UTC))
	if p.Unit == Month || p.Unit == Year {
		return map[Unit]int64{Month: 2629746, Year: 31556952}[p.Unit]
	}
	return e.Unix() - s.Unix()
}

// checkSliding checks the documented sliding-window guarantees of one call:
// the reported value lies between the usage of [now-W, now] and that of
// [now-W-W/K, now]; an admitted authrep leaves no interval of length W
// ending now over max; a denial is justified by some limit even when
// sliding windows are read as W+W/K long.
func (m *refModel) checkSliding(t *testing.T, req *Request, d *Decision, now time.Time) {
	t.Helper()
	nowNs := now.UnixNano()
	for _, r := range d.Reports {
		if r.Limit.Period.Unit != Sliding {
			continue
		}
		evs := m.events[refKey{req.App, r.Limit.Metric, r.Limit.Period}]
		w := int64(r.Limit.Period.Window)
		lower, upper := fold(evs, nowNs-w, nowNs), fold(evs, nowNs-w-slidingG(r.Limit.Period.Window), nowNs)
		if r.Current < lower || r.Current > upper {
			t.Fatalf("%v at %v: current %d outside [%d, %d]", r.Limit, now, r.Current, lower, upper)
		}
		delta, touched, _, _ := refUsage(req.Usage, req.Flat, r.Limit.Metric, true)
		if req.Mode == ModeAuthRep && d.Allowed && touched && delta > 0 && lower > r.Limit.Max {
			t.Fatalf("%v at %v: admitted %+v, leaving %d in the last %v; events %+v", r.Limit, now, req.Usage, lower, r.Limit.Period.Window, evs)
		}
	}
	if req.Mode == ModeReport || d.Allowed {
		return
	}
	for _, r := range d.Reports {
		delta, touched, set, setVal := refUsage(req.Usage, req.Flat, r.Limit.Metric, true)
		if len(req.Usage) == 0 {
			touched, delta = true, 0
		}
		if !touched {
			continue
		}
		cur := r.Current
		if r.Limit.Period.Unit == Sliding {
			evs := m.events[refKey{req.App, r.Limit.Metric, r.Limit.Period}]
			cur = fold(evs, nowNs-int64(r.Limit.Period.Window)-slidingG(r.Limit.Period.Window), nowNs)
		}
		if set {
			cur = setVal // the counter becomes setVal plus the other usage
		}
		if cur+delta > r.Limit.Max || (len(req.Usage) > 0 && r.Limit.Max <= 0) {
			return
		}
	}
	t.Fatalf("denied at %v with no limit over, even reading sliding windows as W+W/K: %+v", now, d.Reports)
}

func randomCall(r *rand.Rand, app AppKey) Request {
	req := Request{App: app, Parents: modelParents, Limits: modelPlans[0]}
	switch x := r.IntN(20); {
	case x < 3:
		req.Limits = modelPlans[1]
	case x < 4:
		req.Limits = modelPlans[2]
	}
	switch x := r.IntN(20); {
	case x < 11:
		req.Mode = ModeAuthRep
	case x < 16:
		req.Mode = ModeAuthorize
	default:
		req.Mode = ModeReport
	}
	req.Flat = r.IntN(10) == 0
	n := []int{0, 1, 1, 1, 1, 1, 2, 2, 3}[r.IntN(9)]
	for range n {
		u := Usage{Metric: MetricID(r.IntN(int(numMetrics))), Value: []int64{0, 1, 1, 1, 2, 3}[r.IntN(6)]}
		if r.IntN(12) == 0 {
			u.Set, u.Value = true, r.Int64N(6)
		}
		req.Usage = append(req.Usage, u)
	}
	return req
}

var modelEpochs = []string{
	"2023-12-31 23:58:50", // new year
	"2024-01-07 23:59:40", // Sunday to Monday
	"2024-02-28 23:59:40", // to the leap day
	"2024-02-29 23:59:40", // leap day to March
	"2024-03-31 23:59:40",
	"2024-04-30 22:59:40",
	"2024-12-31 23:59:40", // leap year to 2025
	"2025-02-28 23:59:40", // no leap day
	"2025-12-29 23:59:40", // a week spanning the new year
	"2025-12-31 23:59:40",
}

var modelSeeds = flag.Int("model.seeds", 6, "random call sequences TestModel runs")

func TestModel(t *testing.T) {
	seeds := *modelSeeds
	if testing.Short() {
		seeds = 2
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runModel(t, uint64(seed), 350) })
	}
}

func runModel(t *testing.T, seed uint64, callsPerEpoch int) {
	r := rand.New(rand.NewPCG(seed, 99))
	var now time.Time
	l := New(Options{Shards: 4, Clock: func() time.Time { return now }})
	m := &refModel{events: map[refKey][]refEvent{}}
	steps := []time.Duration{0, time.Millisecond, 137 * time.Millisecond, 900 * time.Millisecond, 2500 * time.Millisecond, 7 * time.Second}
	var d Decision
	calls, admitted, denied := 0, 0, 0
	for _, epoch := range modelEpochs {
		start, err := time.Parse("2006-01-02 15:04:05", epoch)
		if err != nil {
			t.Fatal(err)
		}
		now = start.Add(time.Duration(r.IntN(1000)) * time.Millisecond)
		for range callsPerEpoch {
			switch x := r.IntN(100); {
			case x == 0:
				now = now.Add(61 * time.Second)
			case x == 1:
				now = now.Add(59*time.Minute + 30*time.Second)
			default:
				now = now.Add(steps[r.IntN(len(steps))])
			}
			req := randomCall(r, AppKey(r.IntN(3)+100))
			want := m.expect(&req, now)
			l.Do(&req, &d)
			calls++
			if d.Allowed != want.Allowed || len(d.Reports) != len(want.Reports) {
				t.Fatalf("call %d at %v (%+v): allowed %v, want %v\n got %+v\nwant %+v", calls, now, req, d.Allowed, want.Allowed, d.Reports, want.Reports)
			}
			for i := range want.Reports {
				if d.Reports[i] != want.Reports[i] {
					t.Fatalf("call %d at %v (%+v): report %d\n got %+v\nwant %+v", calls, now, req, i, d.Reports[i], want.Reports[i])
				}
			}
			if d.Constrained != want.Constrained || d.Remaining != want.Remaining || (want.Reset != -2 && d.Reset != want.Reset) {
				t.Fatalf("call %d at %v (%+v): constrained %d remaining %d reset %d, want %d %d %d", calls, now, req,
					d.Constrained, d.Remaining, d.Reset, want.Constrained, want.Remaining, want.Reset)
			}
			if want.Reset == -2 {
				w := d.Reports[d.Constrained].Limit.Period.Window
				if d.Reset < 0 || time.Duration(d.Reset)*time.Second > w+w/SubBuckets+time.Second {
					t.Fatalf("call %d: sliding reset %d outside [0, %v]", calls, d.Reset, w+w/SubBuckets)
				}
			}
			m.checkSliding(t, &req, &d, now)
			if req.Mode == ModeAuthRep {
				if d.Allowed {
					admitted++
				} else {
					denied++
				}
			}
		}
	}
	t.Logf("%d calls, authreps admitted %d, denied %d", calls, admitted, denied)
	if admitted < calls/10 || denied < calls/10 {
		t.Errorf("the random calls do not exercise both outcomes: %d admitted, %d denied", admitted, denied)
	}
}
