package limiter

import (
	"encoding/binary"
	"math/bits"
	"runtime"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Clock returns the current time. Tests inject their own; the default is
// time.Now.
type Clock func() time.Time

// Options configure a Limiter. The zero value is ready to use.
type Options struct {
	// Shards is the number of independently locked shards, rounded up to a
	// power of two. Default: the larger of 256 and 4×GOMAXPROCS, enough that
	// two calls rarely wait for the same lock. Fewer shards save a little
	// memory in tiny deployments.
	Shards int
	// Clock is read once per call. Default: time.Now.
	Clock Clock
}

// Stats are cumulative figures for /metrics.
type Stats struct {
	Shards    int    // number of shards
	Apps      int64  // applications with live counters
	Contended uint64 // lock acquisitions that had to wait for another call
	Dropped   uint64 // applications dropped by the sweeper since start
}

// Limiter holds usage counters for many applications. All methods are safe
// for concurrent use.
type Limiter struct {
	shards []shard
	mask   uint64
	clock  Clock
}

// sweepEvery and sweepBudget pace the incremental sweeper: after every
// sweepEvery calls on a shard it examines sweepBudget records, so a shard's
// dead apps are found within about n*sweepEvery/sweepBudget calls to it.
const (
	sweepEvery  = 64
	sweepBudget = 8
)

// New returns an empty Limiter.
func New(opts Options) *Limiter {
	n := opts.Shards
	if n <= 0 {
		n = max(256, 4*runtime.GOMAXPROCS(0))
	}
	n = 1 << bits.Len(uint(n-1)) // round up to a power of two
	l := &Limiter{shards: make([]shard, n), mask: uint64(n - 1), clock: opts.Clock}
	if l.clock == nil {
		l.clock = time.Now
	}
	for i := range l.shards {
		l.shards[i].idx = make(map[AppKey]uint32)
	}
	return l
}

func (l *Limiter) shardFor(k AppKey) *shard {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(k))
	return &l.shards[xxhash.Sum64(b[:])&l.mask]
}

// Stats returns the limiter's statistics. It takes no lock.
func (l *Limiter) Stats() Stats {
	s := Stats{Shards: len(l.shards)}
	for i := range l.shards {
		sh := &l.shards[i]
		s.Apps += sh.apps.Load()
		s.Contended += sh.contended.Load()
		s.Dropped += sh.dropped.Load()
	}
	return s
}

// Sweep drops, shard by shard, every application whose counters are all
// dead (closed windows, zeros, empty sliding windows; an eternity counter
// with a value is never dead). Calls sweep incrementally on their own; Sweep
// is for a background ticker, so that shards without traffic shrink too. It
// holds one shard's lock at a time, for at most a few thousand records.
func (l *Limiter) Sweep() {
	t := instantOf(l.clock())
	for i := range l.shards {
		sh := &l.shards[i]
		sh.lock()
		n := int(sh.n)
		sh.mu.Unlock()
		for done := 0; done < n; {
			sh.lock()
			done += max(1, sh.sweep(t, min(n-done, 4096)))
			sh.mu.Unlock()
		}
	}
}

// usageFor sums the request's usage that counts toward metric m: entries on
// m itself and, unless flat, on its descendants. With setMode, a Set entry
// on m itself sets the counter (the last one wins; other entries add on top)
// and Set entries do not propagate to ancestors; without setMode a Set entry
// is a plain value.
func usageFor(usage []Usage, parents []MetricID, flat bool, m MetricID, setMode bool) (delta int64, touched, set bool, setVal int64) {
	for i := range usage {
		u := &usage[i]
		if u.Metric == m {
			touched = true
			if u.Set && setMode {
				set, setVal = true, u.Value
			} else {
				delta += u.Value
			}
			continue
		}
		if flat || (u.Set && setMode) {
			continue
		}
		if isAncestor(parents, m, u.Metric) {
			touched = true
			delta += u.Value
		}
	}
	return delta, touched, set, setVal
}

// maxDepth bounds the walk up a hierarchy, so that a cycle in a malformed
// parent table cannot hang a call.
const maxDepth = 16

func isAncestor(parents []MetricID, a, m MetricID) bool {
	for range maxDepth {
		if int(m) >= len(parents) {
			return false
		}
		m = parents[m]
		if m == a {
			return true
		}
		if m == NoParent {
			return false
		}
	}
	return false
}

// firstOfCounter reports whether limits[i] is the first limit of the plan on
// its counter (metric and period): a plan that lists the same counter twice
// must count usage once.
func firstOfCounter(limits []Limit, i int) bool {
	for j := range i {
		if limits[j].Metric == limits[i].Metric && samePeriod(limits[j].Period, limits[i].Period) {
			return false
		}
	}
	return true
}

func samePeriod(a, b Period) bool {
	return a.Unit == b.Unit && (a.Unit != Sliding || slidingWindow(a.Window) == slidingWindow(b.Window))
}

// Do applies req and fills d: d.Reports is reset to d.Reports[:0] and gets
// one report per req.Limits entry, in the same order. It never blocks on I/O
// and does not allocate once d.Reports has capacity (apart from growing the
// app's shard when it sees a new app).
//
// With usage, only the limits whose metric the usage touches (directly or,
// unless req.Flat, through a descendant) are checked; without usage, all
// are. A checked limit passes when current+delta <= Max, and a touched limit
// with Max <= 0 always fails: 3scale's "metric disabled".
func (l *Limiter) Do(req *Request, d *Decision) {
	t := instantOf(l.clock())
	d.Reports = d.Reports[:0]
	sh := l.shardFor(req.App)
	sh.lock()
	a := sh.get(req.App)
	setMode := req.Mode == ModeReport
	noUsage := len(req.Usage) == 0
	allowed := true
	for i := range req.Limits {
		lim := &req.Limits[i]
		var cur, start, end int64
		if lim.Period.Unit == Sliding {
			start, end = (t.ns-int64(slidingWindow(lim.Period.Window)))/int64(time.Second), t.sec
		} else {
			start, end = calBounds(lim.Period.Unit, t.sec)
		}
		if a != nil {
			if c := sh.find(a, counterKey(lim.Metric, lim.Period)); c != nil {
				cur = counterValue(c, t)
			}
		}
		d.Reports = append(d.Reports, Report{Limit: *lim, Start: start, End: end, Current: cur})
		if setMode || !allowed {
			continue
		}
		if noUsage {
			allowed = cur <= lim.Max
			continue
		}
		delta, touched, _, _ := usageFor(req.Usage, req.Parents, req.Flat, lim.Metric, false)
		if touched && delta >= 0 && (lim.Max <= 0 || delta > lim.Max-cur) {
			allowed = false
		}
	}
	if allowed && req.Mode != ModeAuthorize && !noUsage {
		for i := range req.Limits {
			lim := &req.Limits[i]
			delta, touched, set, setVal := usageFor(req.Usage, req.Parents, req.Flat, lim.Metric, setMode)
			if !touched || (!set && delta == 0) {
				continue
			}
			r := &d.Reports[i]
			if set {
				r.Current = setVal
			}
			r.Current += delta
			if !firstOfCounter(req.Limits, i) {
				continue
			}
			if a == nil {
				a = sh.create(req.App)
			}
			counterApply(sh.findOrCreate(a, counterKey(lim.Metric, lim.Period), t), t, t, delta, set, setVal)
		}
	}
	d.Allowed = allowed || setMode
	l.constrained(sh, a, req, d, t)
	if sh.ops++; sh.ops%sweepEvery == 0 {
		sh.sweep(t, sweepBudget)
	}
	sh.mu.Unlock()
}

// constrained fills d.Constrained, d.Remaining and d.Reset from d.Reports.
func (l *Limiter) constrained(sh *shard, a *app, req *Request, d *Decision, t instant) {
	best, bestRem, bestLen := -1, int64(0), int64(0)
	noUsage := len(req.Usage) == 0
	for i := range d.Reports {
		r := &d.Reports[i]
		r.Exceeded = r.Current > r.Limit.Max
		var delta int64
		if !noUsage {
			var touched bool
			delta, touched, _, _ = usageFor(req.Usage, req.Parents, req.Flat, r.Limit.Metric, false)
			if !touched {
				continue
			}
		}
		rem := r.Limit.Max - r.Current
		if delta > 0 {
			rem /= delta
		}
		rem = max(rem, 0)
		plen := periodSeconds(r.Limit.Period)
		if best < 0 || rem < bestRem || (rem == bestRem && plen > bestLen) {
			best, bestRem, bestLen = i, rem, plen
		}
	}
	d.Constrained, d.Remaining, d.Reset = best, -1, -1
	if best < 0 {
		return
	}
	d.Remaining = bestRem
	r := &d.Reports[best]
	switch r.Limit.Period.Unit {
	case Eternity:
	case Sliding:
		d.Reset = 0
		if a != nil {
			k := counterKey(r.Limit.Metric, r.Limit.Period)
			if c := sh.find(a, k); c != nil {
				d.Reset = slidingReset(c, slideOf(k), t.ns)
			}
		}
	default:
		d.Reset = r.End - t.sec
	}
}

// Record applies usage that happened at time at, without checking: the
// replay of the event log on restart, and reports carrying timestamps. The
// usage counts into every window of the app's limits that contains at and
// is still open now (for sliding windows: the sub-bucket of at, if it still
// overlaps the window); windows already closed ignore it. Set entries set
// the counter, as in ModeReport. Parents and flat are as in Request.
func (l *Limiter) Record(app AppKey, limits []Limit, parents []MetricID, usage []Usage, flat bool, at time.Time) {
	t := instantOf(l.clock())
	u := instantOf(at)
	sh := l.shardFor(app)
	sh.lock()
	defer sh.mu.Unlock()
	a := sh.get(app)
	for i := range limits {
		lim := &limits[i]
		delta, touched, set, setVal := usageFor(usage, parents, flat, lim.Metric, true)
		if !touched || (!set && delta == 0) || !firstOfCounter(limits, i) || !stillOpen(lim.Period, u, t) {
			continue
		}
		if a == nil {
			a = sh.create(app)
		}
		counterApply(sh.findOrCreate(a, counterKey(lim.Metric, lim.Period), t), u, t, delta, set, setVal)
	}
}

// stillOpen reports whether usage at u still counts in period p's window at t.
func stillOpen(p Period, u, t instant) bool {
	if p.Unit == Sliding {
		s := slideOf(counterKey(0, p))
		lo, _ := s.span(t.ns)
		return floorDiv(u.ns, s.g) >= lo
	}
	us, _ := calBounds(p.Unit, u.sec)
	ts, _ := calBounds(p.Unit, t.sec)
	return us == ts
}

// Seed restores a counter from a snapshot (sums from ClickHouse). For a
// calendar period it sets the counter of (app, metric, p) to value if the
// window starting at windowStart (unix seconds; 0 for eternity) is the one
// open now, and otherwise does nothing. For a sliding period it adds value
// to the sub-bucket containing windowStart if that sub-bucket still overlaps
// the window, so that several partial sums (say per minute) can be seeded
// one after another; replaying raw events with Record is more precise.
func (l *Limiter) Seed(app AppKey, metric MetricID, p Period, windowStart int64, value int64) {
	t := instantOf(l.clock())
	sh := l.shardFor(app)
	sh.lock()
	defer sh.mu.Unlock()
	k := counterKey(metric, p)
	a := sh.get(app)
	if p.Unit == Sliding {
		u := instant{sec: windowStart, ns: windowStart * int64(time.Second)}
		if value == 0 || !stillOpen(p, u, t) {
			return
		}
		if a == nil {
			a = sh.create(app)
		}
		counterApply(sh.findOrCreate(a, k, t), u, t, value, false, 0)
		return
	}
	if start, _ := calBounds(p.Unit, t.sec); start != windowStart {
		return
	}
	if a == nil {
		if value == 0 {
			return
		}
		a = sh.create(app)
	}
	counterApply(sh.findOrCreate(a, k, t), t, t, 0, true, value)
}
