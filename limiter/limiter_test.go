package limiter

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock, safe for concurrent readers.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(s string) *fakeClock {
	c := &fakeClock{}
	v, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		panic(err)
	}
	c.ns.Store(v.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func currents(d *Decision) (out []int64) {
	for _, r := range d.Reports {
		out = append(out, r.Current)
	}
	return out
}

func TestSemantics(t *testing.T) {
	type step struct {
		mode   Mode
		usage  []Usage
		flat   bool
		after  time.Duration // clock advance before the call
		limits []Limit       // nil: the case's limits

		allowed     bool
		current     []int64
		constrained int
		remaining   int64
		reset       int64
	}
	u := func(m MetricID, v int64) Usage { return Usage{Metric: m, Value: v} }
	set := func(m MetricID, v int64) Usage { return Usage{Metric: m, Value: v, Set: true} }
	tests := []struct {
		name   string
		limits []Limit
		steps  []step
	}{
		{"authrep counts up to max, then denies; authorize records nothing",
			[]Limit{lim(mHits, "minute", 2)},
			[]step{
				{mode: ModeAuthorize, usage: []Usage{u(mHits, 1)}, allowed: true, current: []int64{0}, constrained: 0, remaining: 2, reset: 40},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, allowed: true, current: []int64{1}, constrained: 0, remaining: 1, reset: 40},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, allowed: true, current: []int64{2}, constrained: 0, remaining: 0, reset: 40},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, allowed: false, current: []int64{2}, constrained: 0, remaining: 0, reset: 40},
				{mode: ModeAuthorize, allowed: true, current: []int64{2}, constrained: 0, remaining: 0, reset: 40},
				{mode: ModeReport, usage: []Usage{u(mHits, 5)}, allowed: true, current: []int64{7}, constrained: 0, remaining: 0, reset: 40},
				{mode: ModeAuthorize, allowed: false, current: []int64{7}, constrained: 0, remaining: 0, reset: 40},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, after: 40 * time.Second, allowed: true, current: []int64{1}, constrained: 0, remaining: 1, reset: 60},
			}},
		{"child usage counts toward ancestors unless flat",
			[]Limit{lim(mHits, "day", 10), lim(mSearch, "day", 10), lim(mFast, "day", 10), lim(mOther, "day", 10)},
			[]step{
				// Equal remaining (4 calls of 2) on equal periods: the first limit.
				{mode: ModeAuthRep, usage: []Usage{u(mFast, 2)}, allowed: true, current: []int64{2, 2, 2, 0}, constrained: 0, remaining: 4, reset: 48400},
				// hits (10-4)/2 = 3, search (10-4)/2 = 3, fast (10-3)/1 = 7.
				{mode: ModeAuthRep, usage: []Usage{u(mSearch, 1), u(mFast, 1)}, allowed: true, current: []int64{4, 4, 3, 0}, constrained: 0, remaining: 3, reset: 48400},
				{mode: ModeAuthRep, flat: true, usage: []Usage{u(mHits, 5), u(mSearch, 1)}, allowed: true, current: []int64{9, 5, 3, 0}, constrained: 0, remaining: 0, reset: 48400},
				{mode: ModeAuthRep, usage: []Usage{u(mFast, 1)}, allowed: true, current: []int64{10, 6, 4, 0}, constrained: 0, remaining: 0, reset: 48400},
				{mode: ModeAuthRep, usage: []Usage{u(mFast, 1)}, allowed: false, current: []int64{10, 6, 4, 0}, constrained: 0, remaining: 0, reset: 48400},
				{mode: ModeAuthRep, usage: []Usage{u(mOther, 1)}, allowed: true, current: []int64{10, 6, 4, 1}, constrained: 3, remaining: 9, reset: 48400},
			}},
		{"max 0 disables a metric when usage touches it; no usage checks current <= max",
			[]Limit{lim(mHits, "minute", 0), lim(mOther, "minute", 5)},
			[]step{
				{mode: ModeAuthorize, allowed: true, current: []int64{0, 0}, constrained: 0, remaining: 0, reset: 40},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 0)}, allowed: false, current: []int64{0, 0}, constrained: 0, remaining: 0, reset: 40},
				{mode: ModeAuthRep, usage: []Usage{u(mSearch, 1)}, allowed: false, current: []int64{0, 0}, constrained: 0, remaining: 0, reset: 40},
				{mode: ModeAuthRep, usage: []Usage{u(mOther, 2)}, allowed: true, current: []int64{0, 2}, constrained: 1, remaining: 1, reset: 40},
			}},
		{"remaining counts calls of the same usage; ties go to the longer period",
			[]Limit{lim(mHits, "minute", 10), lim(mHits, "eternity", 10), lim(mHits, "hour", 100)},
			[]step{
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 3)}, allowed: true, current: []int64{3, 3, 3}, constrained: 1, remaining: 2, reset: -1},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 3)}, after: time.Minute, allowed: true, current: []int64{3, 6, 6}, constrained: 1, remaining: 1, reset: -1},
			}},
		{"set replaces the counter in every mode, without propagating; authorize and authrep check it",
			[]Limit{lim(mHits, "month", 100), lim(mSearch, "month", 100), lim(mSearch, "sliding:1m", 100)},
			[]step{
				{mode: ModeReport, usage: []Usage{u(mSearch, 7)}, allowed: true, current: []int64{7, 7, 7}, constrained: 0, remaining: 13, reset: 1430800},
				{mode: ModeReport, usage: []Usage{set(mSearch, 2)}, allowed: true, current: []int64{7, 2, 2}, constrained: 1, remaining: 98, reset: 1430800},
				{mode: ModeAuthRep, usage: []Usage{set(mSearch, 3)}, allowed: true, current: []int64{7, 3, 3}, constrained: 1, remaining: 97, reset: 1430800},
				{mode: ModeAuthorize, usage: []Usage{set(mSearch, 101)}, allowed: false, current: []int64{7, 3, 3}, constrained: 1, remaining: 97, reset: 1430800},
				{mode: ModeAuthRep, usage: []Usage{set(mSearch, 91), u(mSearch, 10)}, allowed: false, current: []int64{7, 3, 3}, constrained: 0, remaining: 9, reset: 1430800},
				{mode: ModeAuthRep, usage: []Usage{set(mSearch, 90), u(mSearch, 10)}, allowed: true, current: []int64{17, 100, 100}, constrained: 1, remaining: 0, reset: 1430800},
				{mode: ModeAuthRep, usage: []Usage{set(mSearch, 0)}, allowed: true, current: []int64{17, 0, 0}, constrained: 1, remaining: 100, reset: 1430800},
			}},
		{"a plan listing one counter twice counts once",
			[]Limit{lim(mHits, "minute", 3), lim(mHits, "minute", 10)},
			[]step{
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 2)}, allowed: true, current: []int64{2, 2}, constrained: 0, remaining: 0, reset: 40},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 2)}, allowed: false, current: []int64{2, 2}, constrained: 0, remaining: 0, reset: 40},
			}},
		{"a plan change keeps the usage of shared counters",
			[]Limit{lim(mHits, "day", 10)},
			[]step{
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 4)}, allowed: true, current: []int64{4}, constrained: 0, remaining: 1, reset: 48400},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, limits: []Limit{lim(mHits, "minute", 10), lim(mHits, "day", 5)}, allowed: true, current: []int64{1, 5}, constrained: 1, remaining: 0, reset: 48400},
			}},
		{"no limits",
			nil,
			[]step{{mode: ModeAuthRep, usage: []Usage{u(mHits, 4)}, allowed: true, current: nil, constrained: -1, remaining: -1, reset: -1}},
		},
		{"usage touching no limit",
			[]Limit{lim(mOther, "minute", 1)},
			[]step{{mode: ModeAuthRep, usage: []Usage{u(mHits, 4)}, allowed: true, current: []int64{0}, constrained: -1, remaining: -1, reset: -1}},
		},
		{"sliding window reset is when the oldest usage leaves it",
			// sliding:7s has sub-buckets of exactly 1s; usage at t counts until t+8s.
			[]Limit{lim(mHits, "sliding:7s", 2)},
			[]step{
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, allowed: true, current: []int64{1}, constrained: 0, remaining: 1, reset: 8},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, after: 3 * time.Second, allowed: true, current: []int64{2}, constrained: 0, remaining: 0, reset: 5},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, after: 3 * time.Second, allowed: false, current: []int64{2}, constrained: 0, remaining: 0, reset: 2},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, after: time.Second, allowed: false, current: []int64{2}, constrained: 0, remaining: 0, reset: 1},
				{mode: ModeAuthRep, usage: []Usage{u(mHits, 1)}, after: 1500 * time.Millisecond, allowed: true, current: []int64{2}, constrained: 0, remaining: 0, reset: 3},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock("2024-05-15 10:33:20") // 40s to the minute's end; sliding sub-buckets of 1m: 60/7s
			l := New(Options{Clock: clock.Now})
			var d Decision
			for i, s := range tt.steps {
				clock.Add(s.after)
				limits := tt.limits
				if s.limits != nil {
					limits = s.limits
				}
				l.Do(&Request{App: 7, Limits: limits, Parents: modelParents, Usage: s.usage, Flat: s.flat, Mode: s.mode}, &d)
				got := currents(&d)
				if d.Allowed != s.allowed || !equalInts(got, s.current) || d.Constrained != s.constrained || d.Remaining != s.remaining || d.Reset != s.reset {
					t.Fatalf("step %d: allowed %v current %v constrained %d remaining %d reset %d; want %v %v %d %d %d",
						i, d.Allowed, got, d.Constrained, d.Remaining, d.Reset, s.allowed, s.current, s.constrained, s.remaining, s.reset)
				}
				for _, r := range d.Reports {
					if r.Exceeded != (r.Current > r.Limit.Max) {
						t.Fatalf("step %d: %+v: Exceeded wrong", i, r)
					}
				}
			}
		})
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestConcurrentAuthRepAdmitsExactly hammers one app from many goroutines
// (run it with -race): exactly as many units as the limit allows get in.
func TestConcurrentAuthRepAdmitsExactly(t *testing.T) {
	const (
		limit      = 1000
		goroutines = 8
		attempts   = 400
	)
	for _, value := range []int64{1, 3} {
		clock := newFakeClock("2024-02-29 23:59:30")
		l := New(Options{Clock: clock.Now})
		limits := []Limit{lim(mHits, "minute", limit), lim(mSearch, "month", 10*limit), lim(mHits, "sliding:1m", limit)}
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var d Decision
				req := Request{App: 42, Limits: limits, Parents: modelParents, Usage: []Usage{{Metric: mFast, Value: value}}, Mode: ModeAuthRep}
				other := Request{Limits: limits, Parents: modelParents, Usage: []Usage{{Metric: mHits, Value: 1}}, Mode: ModeAuthRep}
				for i := range attempts {
					l.Do(&req, &d)
					if d.Allowed {
						admitted.Add(1)
					}
					other.App = AppKey(1000 + g*attempts + i) // other apps in the same shards, growing tables
					l.Do(&other, &d)
				}
			}()
		}
		wg.Wait()
		want := int64(limit / value)
		if got := admitted.Load(); got != want {
			t.Errorf("usage %d: admitted %d calls, want exactly %d", value, got, want)
		}
		var d Decision
		l.Do(&Request{App: 42, Limits: limits, Parents: modelParents}, &d)
		if got := currents(&d); got[0] != want*value || got[1] != want*value || got[2] != want*value {
			t.Errorf("usage %d: counters %v, want %d each", value, got, want*value)
		}
		if s := l.Stats(); s.Apps != goroutines*attempts+1 {
			t.Errorf("stats: %+v", s)
		}
	}
}

type logged struct {
	app    AppKey
	at     time.Time
	limits []Limit
	usage  []Usage
	flat   bool
}

// TestRestore checks that a limiter rebuilt from a snapshot (Seed) plus the
// replayed tail of the event log (Record), or from the whole log alone,
// reports what the live limiter that saw the calls reports.
func TestRestore(t *testing.T) {
	clock := newFakeClock("2024-02-29 23:20:00")
	live := New(Options{Clock: clock.Now})
	r := rand.New(rand.NewPCG(7, 7))
	var log []logged
	apps := []AppKey{1, 2, 3}
	var d Decision
	for range 3000 {
		clock.Add(time.Duration(r.IntN(6000)) * time.Millisecond)
		req := randomCall(r, apps[r.IntN(len(apps))])
		if req.Mode == ModeAuthorize {
			req.Mode = ModeAuthRep
		}
		for i := range req.Usage {
			req.Usage[i].Set = false // snapshots are sums
		}
		live.Do(&req, &d)
		if d.Allowed {
			log = append(log, logged{req.App, clock.Now(), req.Limits, req.Usage, req.Flat})
		}
	}
	end := clock.Now()
	if end.Month() != time.March || end.Hour() < 1 {
		t.Fatalf("the calls should cross into March 1st, 01:00: end %v", end)
	}
	snapshot := end.Add(-10 * time.Minute) // longer than every sliding window

	// Every counter any plan has.
	type counter struct {
		metric MetricID
		period Period
	}
	var counters []counter
	seen := map[counter]bool{}
	for _, plan := range modelPlans {
		for _, l := range plan {
			if c := (counter{l.Metric, l.Period}); !seen[c] {
				seen[c] = true
				counters = append(counters, c)
			}
		}
	}

	replayAll := New(Options{Clock: func() time.Time { return end }})
	seeded := New(Options{Clock: func() time.Time { return end }})
	for _, app := range apps {
		for _, c := range counters {
			if c.period.Unit == Sliding {
				continue
			}
			// What ClickHouse would sum: usage with the hierarchy applied,
			// in the window open at end, before the snapshot.
			ws, _ := WindowBounds(c.period, end)
			var sum int64
			for _, e := range log {
				if e.app == app && e.at.Unix() >= ws && e.at.Before(snapshot) && planHas(e.limits, c.metric, c.period) {
					delta, _, _, _ := refUsage(e.usage, e.flat, c.metric, false)
					sum += delta
				}
			}
			seeded.Seed(app, c.metric, c.period, ws, sum)
			seeded.Seed(app, c.metric, c.period, ws-1, 1_000_000) // a closed window: ignored
		}
	}
	for _, e := range log {
		app := e.app
		replayAll.Record(app, e.limits, modelParents, e.usage, e.flat, e.at)
		if !e.at.Before(snapshot) {
			seeded.Record(app, e.limits, modelParents, e.usage, e.flat, e.at)
		}
	}
	clock.Set(end)
	for _, app := range apps {
		for _, plan := range modelPlans {
			var want, got1, got2 Decision
			req := Request{App: app, Limits: plan, Parents: modelParents, Mode: ModeAuthorize}
			live.Do(&req, &want)
			replayAll.Do(&req, &got1)
			seeded.Do(&req, &got2)
			for i := range want.Reports {
				if got1.Reports[i] != want.Reports[i] || got2.Reports[i] != want.Reports[i] {
					t.Errorf("app %d %v: live %+v\nreplayed %+v\nseeded %+v", app, plan[i], want.Reports[i], got1.Reports[i], got2.Reports[i])
				}
			}
		}
	}
}

func planHas(limits []Limit, m MetricID, p Period) bool {
	for _, l := range limits {
		if l.Metric == m && l.Period == p {
			return true
		}
	}
	return false
}

// TestRecordFuture checks that usage dated after now counts as now: it
// neither escapes the limits nor pushes a sliding window ahead.
func TestRecordFuture(t *testing.T) {
	clock := newFakeClock("2024-12-31 23:59:50")
	l := New(Options{Clock: clock.Now})
	limits := []Limit{lim(mHits, "sliding:1m", 10), lim(mHits, "day", 10)}
	var d Decision
	l.Do(&Request{App: 1, Limits: limits, Parents: modelParents, Usage: []Usage{{Metric: mHits, Value: 4}}, Mode: ModeAuthRep}, &d)
	l.Record(1, limits, modelParents, []Usage{{Metric: mHits, Value: 5}}, false, clock.Now().Add(30*time.Minute))
	l.Do(&Request{App: 1, Limits: limits, Parents: modelParents, Mode: ModeAuthorize}, &d)
	if got := currents(&d); got[0] != 9 || got[1] != 9 {
		t.Errorf("after a future-dated record: %v, want 9 9", got)
	}
	l.Do(&Request{App: 1, Limits: limits, Parents: modelParents, Usage: []Usage{{Metric: mHits, Value: 2}}, Mode: ModeAuthRep}, &d)
	if d.Allowed {
		t.Errorf("9+2 > 10 admitted: %+v", d.Reports)
	}
}

// TestDoDoesNotAllocate checks Do's promise: no allocation once d.Reports
// has capacity (for an app already known, so that no table grows).
func TestDoDoesNotAllocate(t *testing.T) {
	l := New(Options{})
	req := &Request{App: 5, Limits: benchLimits, Parents: benchParents, Usage: []Usage{{Metric: 1, Value: 1}}, Mode: ModeAuthRep}
	var warm Decision
	l.Do(req, &warm)
	d := &Decision{Reports: make([]Report, 0, len(benchLimits))}
	if n := testing.AllocsPerRun(100, func() { l.Do(req, d) }); n != 0 {
		t.Errorf("Do allocates %v times per call", n)
	}
}
