package limiter

import (
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"time"
)

// Clock returns the current time. Tests inject their own; the default (see
// Options.Clock) is a shared millisecond clock.
type Clock func() time.Time

// Options configure a Limiter. The zero value is ready to use.
type Options struct {
	// Shards is the number of independently locked shards, rounded up to a
	// power of two. Default: the larger of 256 and 4×GOMAXPROCS, enough that
	// two calls rarely wait for the same lock. Fewer shards save a little
	// memory in tiny deployments.
	Shards int
	// Clock is read once per call. Default: a process-wide clock refreshed
	// every millisecond by a goroutine that runs only while limiters read it
	// (it stops after 100ms without a read), so that a call reads an atomic
	// instead of calling clock_gettime, which costs 60-200ns on virtual
	// machines (bench/RESULTS.md). Limits are at least a second long: a call
	// at most a millisecond late in its window changes nothing a client can
	// tell. Tests inject their own clock.
	Clock Clock
	// HugePages asks Linux for transparent huge pages under the app tables
	// of at least 256 KiB, sparing most calls a TLB miss: 10-20 % faster
	// calls with a million apps (bench/RESULTS.md). Off by default because
	// the advice covers the 2 MiB-aligned range around each table, so a
	// process may hold a little more resident memory than it uses, and
	// khugepaged may reassemble huge pages the Go runtime returned to the OS.
	// Without effect outside Linux or with THP disabled.
	HugePages bool
}

// Stats are cumulative figures for /metrics.
type Stats struct {
	Shards    int    // number of shards
	Apps      int64  // applications held: with live counters, or dead and not yet swept
	Contended uint64 // lock acquisitions that had to wait for another call
	Dropped   uint64 // applications dropped by the sweeper since start
}

// Limiter holds usage counters for many applications. All methods are safe
// for concurrent use.
type Limiter struct {
	shards []shard
	mask   uint64
	clock  Clock // nil: sharedClock
	cal    calCache
}

// sweepEvery and sweepBudget pace the incremental sweeper: after every
// sweepEvery calls on a shard it examines sweepBudget slots, so that a
// shard's dead apps are found within about slots*sweepEvery/sweepBudget
// calls to it.
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
	l.cal.day.Store(math.MinInt64)
	for i := range l.shards {
		l.shards[i].hugePages = opts.HugePages && hugePagesWork
	}
	return l
}

// hashKey mixes the key's 64 bits (the finalizer of MurmurHash3: a
// bijection in which every input bit flips each output bit with probability
// about 1/2), so that consecutive keys spread evenly. Its low bits pick the
// shard, its high bits the slot in the shard's table. Keys come from the
// catalog, never from clients, so a keyed hash buys nothing here, and two
// multiplications cost a third of xxhash's 8-byte path.
func hashKey(k AppKey) uint64 {
	h := uint64(k)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
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
// holds one shard's lock at a time, for at most 4096 slots.
func (l *Limiter) Sweep() {
	t := l.now()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.lock()
		n := len(sh.slots)
		sh.mu.Unlock()
		for done := 0; done < n; {
			sh.lock()
			if len(sh.slots) == 0 {
				done = n
			} else {
				done += l.sweep(sh, t, min(n-done, 4096))
			}
			sh.mu.Unlock()
		}
	}
}

// usageFor sums the request's usage that counts toward metric m: entries on
// m itself and, unless flat, on its descendants. With setMode, a Set entry
// on m itself sets the counter (the last one wins; the call's other entries
// add on top) and Set entries do not propagate to ancestors (a caller that
// wants an ancestor set names it, so that the events say so too); without
// setMode a Set entry is a plain value. Do and Record use setMode; CheckUsage
// lets its caller choose. overflow reports a sum past MaxInt64 (delta
// is then meaningless). Values must not be negative (callers check).
func usageFor(usage []Usage, parents []MetricID, flat bool, m MetricID, setMode bool) (delta int64, touched, set bool, setVal int64, overflow bool) {
	for i := range usage {
		u := &usage[i]
		if u.Metric == m {
			touched = true
			if u.Set && setMode {
				set, setVal = true, u.Value
				continue
			}
		} else if flat || (u.Set && setMode) || !isAncestor(parents, m, u.Metric) {
			continue
		}
		touched = true
		// Both are >= 0, so the difference cannot overflow itself.
		if u.Value > math.MaxInt64-delta {
			overflow = true
		} else {
			delta += u.Value
		}
	}
	return delta, touched, set, setVal, overflow
}

// CheckUsage returns the error that usage alone, whatever the counters
// hold, makes Do and Record refuse: ErrNegative for a negative value, or
// ErrOverflow with the first metric whose entries, summed with its
// descendants' (and, in setMode, added to its set value), pass MaxInt64.
// It always propagates children into parents, as the rollups do, even where
// a Flat request would not. With setMode a Set entry counts on its own
// metric only (ModeReport); otherwise it is a plain value. Callers that
// validate input use it to refuse a call early and name the metric. It
// does not allocate, and costs one compare per entry unless the entries'
// sum passes MaxInt64.
func CheckUsage(usage []Usage, parents []MetricID, setMode bool) (MetricID, error) {
	if err := checkValues(usage); err != nil {
		return 0, err
	}
	var total int64
	fits := true
	for i := range usage {
		if usage[i].Value > math.MaxInt64-total {
			fits = false
			break
		}
		total += usage[i].Value
	}
	if fits {
		return 0, nil // every metric's sum is part of the total
	}
	for i := range usage {
		m := usage[i].Metric
		for range maxDepth + 1 {
			delta, _, set, setVal, overflow := usageFor(usage, parents, false, m, setMode)
			if overflow || (set && delta > math.MaxInt64-setVal) {
				return m, ErrOverflow
			}
			if int(m) >= len(parents) || parents[m] == NoParent {
				break
			}
			m = parents[m]
		}
	}
	return 0, nil
}

// checkValues returns ErrNegative if a usage value is below zero.
func checkValues(usage []Usage) error {
	for i := range usage {
		if usage[i].Value < 0 {
			return ErrNegative
		}
	}
	return nil
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
	id := counterID(limits[i].Metric, limits[i].Period)
	for j := range i {
		if counterID(limits[j].Metric, limits[j].Period) == id {
			return false
		}
	}
	return true
}

// windowOf returns the bounds reported for p at t: the calendar window, or
// (t-window, t) for sliding windows, in unix seconds.
func (l *Limiter) windowOf(p Period, t instant) (start, end int64) {
	if p.Unit == Sliding {
		return floorDiv(t.ns-int64(slidingWindow(p.Window)), int64(time.Second)), t.sec
	}
	return l.bounds(p.Unit, t.sec)
}

// stackLimits is the largest plan whose per-limit state Do keeps on its
// stack; larger plans use scratch space kept in the Decision.
const stackLimits = 8

// limitState is what Do works out once per limit of a request.
type limitState struct {
	id       uint64 // counter identity
	cur      int64  // counter value before the call
	delta    int64  // the call's usage on the limit's metric (with descendants unless flat)
	setVal   int64
	lo, hi   int64 // sliding: the sub-buckets overlapping [now-window, now]
	off      int32 // word offset of the counter in the app's inline words; -1: none or overflow
	touched  bool  // the usage names the metric or one of its descendants
	set      bool  // a Set entry names the metric (ModeReport only)
	first    bool  // first limit of the plan on this counter
	overflow bool  // delta would pass MaxInt64
}

// Do applies req and fills d: d.Reports is reset to d.Reports[:0] and gets
// one report per req.Limits entry, in the same order. It never blocks on I/O
// and does not allocate once d.Reports has capacity (apart from growing the
// shard's table when it meets a new app, and, for plans of more than
// stackLimits limits, scratch space kept in d on its first such call).
//
// With usage, only the limits whose metric the usage touches (directly or,
// unless req.Flat, through a descendant) are checked; without usage, all
// are. A checked limit passes when current+delta <= Max, and a limit touched
// by usage with Max <= 0 always fails: 3scale's "metric disabled".
//
// Whatever the mode, a request with a negative value (ErrNegative), with
// usage that sums past MaxInt64 for one metric, or, in ModeReport, that
// would take a counter past MaxInt64 (ErrOverflow) is refused: d.Err says
// why, d.Allowed is false and no counter changes. In ModeAuthRep a counter
// cannot pass MaxInt64, since current+delta <= Max is checked first.
func (l *Limiter) Do(req *Request, d *Decision) {
	if len(req.Limits) <= stackLimits && plain(req.Usage) {
		l.doPlan(req, d)
		return
	}
	l.doGeneral(req, d)
}

// plain reports whether usage has neither a negative value nor a set entry
// ("#N"): the requests the compiled path (doPlan) decides. The others, rare,
// take doGeneral, which refuses negatives and gives sets their semantics in
// every mode.
func plain(usage []Usage) bool {
	for i := range usage {
		if usage[i].Value < 0 || usage[i].Set {
			return false
		}
	}
	return true
}

// doGeneral is Do for plans of more than stackLimits limits, for requests
// with a set entry and for requests refused for a negative value: it works
// everything out per call.
func (l *Limiter) doGeneral(req *Request, d *Decision) {
	t := l.now()
	n := len(req.Limits)
	if cap(d.Reports) < n {
		d.Reports = make([]Report, n)
	}
	d.Reports = d.Reports[:n]
	var local [stackLimits]limitState
	var sc []limitState
	if n <= stackLimits {
		sc = local[:n]
	} else {
		if cap(d.scratch) < n {
			d.scratch = make([]limitState, n)
		}
		sc = d.scratch[:n]
	}
	report := req.Mode == ModeReport
	noUsage := len(req.Usage) == 0
	refused := checkValues(req.Usage)

	// Find the app first, then do the work that does not need its record:
	// the CPU runs that work while the record's cache lines are on their way
	// from memory (with a million apps they nearly always miss the cache).
	h := hashKey(req.App)
	sh := &l.shards[h&l.mask]
	sh.lock()
	a := sh.get(req.App, h)
	for i := range req.Limits {
		lim, st, r := &req.Limits[i], &sc[i], &d.Reports[i]
		st.id = counterID(lim.Metric, lim.Period)
		st.first = true
		for j := range i {
			if sc[j].id == st.id {
				st.first = false
				break
			}
		}
		if u := req.Usage; len(u) == 1 && u[0].Metric == lim.Metric && !u[0].Set {
			st.delta, st.touched, st.set, st.setVal, st.overflow = u[0].Value, true, false, 0, false // the common call
		} else {
			st.delta, st.touched, st.set, st.setVal, st.overflow = usageFor(req.Usage, req.Parents, req.Flat, lim.Metric, true)
		}
		if lim.Period.Unit == Sliding {
			st.lo, st.hi = slideOf(st.id).span(t.ns)
		}
		// Field by field: a composite literal is built on the stack and
		// copied with wide loads that stall on store forwarding.
		r.Limit.Metric, r.Limit.Period.Unit, r.Limit.Period.Window, r.Limit.Max = lim.Metric, lim.Period.Unit, lim.Period.Window, lim.Max
		r.Start, r.End = l.windowOf(lim.Period, t)
		r.Current, r.Exceeded = 0, false
	}
	allowed := true
	for i := range sc {
		st, r := &sc[i], &d.Reports[i]
		st.cur, st.off = 0, -1
		if a != nil {
			if off := findOff(a.words(), st.id); off >= 0 {
				st.off = int32(off)
				if c := a.w[off:]; keyUnit(st.id) == Sliding {
					st.cur = slidingSum(c, st.lo, st.hi)
				} else if uint32(c[0]) == uint32(r.Start) {
					st.cur = int64(c[1])
				}
			} else if a.ovf() {
				if c := findIn(sh.overflow[a.key], st.id); c != nil {
					st.cur = counterValue(c, r.Start, t)
				}
			}
		}
		r.Current, r.Before = st.cur, st.cur
		// cur is in [0, MaxInt64] (slidingSum saturates) and Max and delta
		// are >= 0, so none of these differences overflows.
		switch {
		case refused != nil: // a negative value: the sums below mean nothing
		case st.overflow:
			refused = ErrOverflow
		case st.set && st.delta > math.MaxInt64-st.setVal:
			refused = ErrOverflow
		case report:
			if st.touched && !st.set && st.delta > math.MaxInt64-st.cur {
				refused = ErrOverflow
			}
		case !allowed:
		case noUsage:
			allowed = st.cur <= r.Limit.Max
		case st.set:
			// The counter becomes setVal plus the call's other usage of
			// the metric, whatever it holds now.
			allowed = r.Limit.Max > 0 && st.delta <= r.Limit.Max-st.setVal
		case st.touched && (r.Limit.Max <= 0 || st.delta > r.Limit.Max-st.cur):
			allowed = false
		}
	}
	if refused != nil {
		allowed = false
	}
	if allowed && req.Mode != ModeAuthorize && !noUsage {
		created := false // counters may have moved: offsets are stale
		for i := range sc {
			st, r := &sc[i], &d.Reports[i]
			if !st.touched || (!st.set && st.delta == 0) {
				continue
			}
			if st.set {
				r.Current = st.setVal
			}
			r.Current += st.delta
			if !st.first {
				continue
			}
			var c []uint64
			if st.off >= 0 && !created {
				c = a.w[st.off:]
				if keyUnit(st.id) == Sliding && !st.set {
					slidingAdd(c, st.hi, st.delta) // the window's newest sub-bucket
					continue
				}
			} else {
				if a == nil {
					a = sh.create(req.App, h)
				}
				c = l.findOrCreate(sh, a, st.id, r.Start, t)
				created = true
			}
			counterApply(c, r.Start, t, t, st.delta, st.set, st.setVal)
		}
	}
	d.Allowed = allowed || (report && refused == nil)
	d.Err = refused
	constrained(sh, a, req, d, sc, t)
	if sh.ops++; sh.ops%sweepEvery == 0 {
		l.sweep(sh, t, sweepBudget)
	}
	sh.mu.Unlock()
}

// constrained fills d.Constrained, d.Remaining and d.Reset from d.Reports,
// and each report's Exceeded.
func constrained(sh *shard, a *app, req *Request, d *Decision, sc []limitState, t instant) {
	best, bestRem, bestLen := -1, int64(0), int64(0)
	noUsage := len(req.Usage) == 0
	for i := range d.Reports {
		r, st := &d.Reports[i], &sc[i]
		r.Exceeded = r.Current > r.Limit.Max
		if !noUsage && !st.touched {
			continue
		}
		rem := r.Limit.Max - r.Current
		if st.delta > 1 {
			rem /= st.delta
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
			id := sc[best].id
			if c := sh.find(a, id); c != nil {
				d.Reset = slidingReset(c, slideOf(id), t.ns)
			}
		}
	default:
		d.Reset = r.End - t.sec
	}
}

// Record applies usage that happened at time at, without checking limits:
// the replay of the event log on restart, and reports carrying timestamps.
// The usage counts into every window of the app's limits that contains at
// and is still open now (for sliding windows: the sub-bucket of at, if it
// still overlaps the window); windows already closed ignore it, and usage
// dated after now counts as now. Set entries set the counter, as in
// ModeReport. Parents and flat are as in Request.
//
// Record is all or nothing: it returns an error wrapping ErrNegative for a
// negative value, or ErrOverflow when the usage summed for a metric or a
// counter would pass MaxInt64, and then changes no counter.
func (l *Limiter) Record(app AppKey, limits []Limit, parents []MetricID, usage []Usage, flat bool, at time.Time) error {
	return l.record(app, limits, parents, usage, flat, at, nil)
}

// RecordChanges is Record that also appends to *changes one Change per
// calendar or eternity counter it moved (nothing when it returns an error).
// It does not allocate once *changes has capacity for the plan's limits.
func (l *Limiter) RecordChanges(app AppKey, limits []Limit, parents []MetricID, usage []Usage, flat bool, at time.Time, changes *[]Change) error {
	return l.record(app, limits, parents, usage, flat, at, changes)
}

func (l *Limiter) record(app AppKey, limits []Limit, parents []MetricID, usage []Usage, flat bool, at time.Time, changes *[]Change) error {
	if err := checkValues(usage); err != nil {
		return fmt.Errorf("record: %w", err)
	}
	t := l.now()
	u := instantOf(at)
	if u.ns > t.ns {
		// Reports may carry timestamps a little ahead of this node's clock.
		// Counting them now keeps them in the limits (and a sliding ring
		// from jumping ahead and forgetting the present).
		u = t
	}
	h := hashKey(app)
	sh := &l.shards[h&l.mask]
	sh.lock()
	defer sh.mu.Unlock()
	a := sh.get(app, h)
	if len(limits) > stackLimits {
		return l.recordGeneral(sh, a, app, h, limits, parents, usage, flat, u, t, changes)
	}
	// Work out each limit once (its window, the sub-buckets and the counter's
	// place), check every counter before changing any, then apply. Applying
	// may move counters (creating one compacts the record), so the two
	// passes are separate, and the second finds a counter where the first
	// did only until one is created.
	var rs [stackLimits]recordState
	for i := range limits {
		lim, r := &limits[i], &rs[i]
		r.id = counterID(lim.Metric, lim.Period)
		var touched, overflow bool
		r.delta, touched, r.set, r.setVal, overflow = usageFor(usage, parents, flat, lim.Metric, true)
		if overflow {
			return fmt.Errorf("record: usage of metric %d: %w", lim.Metric, ErrOverflow)
		}
		r.apply = false
		if !touched || (!r.set && r.delta == 0) {
			continue
		}
		var open bool
		if r.window, open = l.landing(lim.Period, u, t); !open {
			continue
		}
		first := true
		for j := range i {
			if rs[j].id == r.id {
				first = false
				break
			}
		}
		if !first {
			continue
		}
		var c []uint64
		r.off = -1
		if a != nil {
			if r.off = findOff(a.words(), r.id); r.off >= 0 {
				sz := keySize(r.id)
				c = a.w[r.off : r.off+sz : r.off+sz]
			} else if a.ovf() {
				c = findIn(sh.overflow[a.key], r.id)
			}
		}
		var fits bool
		if c != nil && lim.Period.Unit == Sliding {
			fits = slidingFits(c, r.lo, r.hi, r.b, r.delta, r.set, r.setVal)
		} else {
			fits = fitsAfterApply(c, r.id, r.start, u, t, r.delta, r.set, r.setVal)
		}
		if !fits {
			return fmt.Errorf("record: counter of metric %d, period %s: %w", lim.Metric, lim.Period, ErrOverflow)
		}
		r.apply = true
	}
	created := false // counters may have moved: offsets are stale
	for i := range limits {
		r := &rs[i]
		if !r.apply {
			continue
		}
		var c []uint64
		if r.off >= 0 && !created {
			sz := keySize(r.id)
			c = a.w[r.off : r.off+sz : r.off+sz]
		} else {
			if a == nil {
				a = sh.create(app, h)
			}
			c = l.findOrCreate(sh, a, r.id, r.start, t)
			created = true
		}
		if keyUnit(r.id) == Sliding {
			slidingApply(c, r.lo, r.b, r.delta, r.set, r.setVal)
			continue
		}
		if changes == nil {
			counterApply(c, r.start, u, t, r.delta, r.set, r.setVal)
			continue
		}
		before := counterValue(c, r.start, t)
		counterApply(c, r.start, u, t, r.delta, r.set, r.setVal)
		*changes = append(*changes, Change{Limit: i, Start: r.start, Before: before, After: counterValue(c, r.start, t)})
	}
	return nil
}

// recordState is what Record works out once per limit: the usage, the
// calendar window start (start) or the sliding window's sub-buckets [lo, hi]
// and the usage's sub-bucket b, and where the counter was (off in the
// record's inline words, -1 if not there).
type recordState struct {
	id            uint64
	delta, setVal int64
	window        // start, or lo, hi and b
	off           int
	set, apply    bool
}

// recordGeneral is Record for plans of more than stackLimits limits: the
// same two passes, working each limit out in both.
func (l *Limiter) recordGeneral(sh *shard, a *app, app AppKey, h uint64, limits []Limit, parents []MetricID, usage []Usage, flat bool, u, t instant, changes *[]Change) error {
	// Check every counter before changing any. Applying may move counters
	// (creating one compacts the record), so the two passes are separate.
	for i := range limits {
		lim := &limits[i]
		delta, touched, set, setVal, overflow := usageFor(usage, parents, flat, lim.Metric, true)
		if overflow {
			return fmt.Errorf("record: usage of metric %d: %w", lim.Metric, ErrOverflow)
		}
		if !touched || (!set && delta == 0) || !firstOfCounter(limits, i) || !l.stillOpen(lim.Period, u, t) {
			continue
		}
		var c []uint64
		if a != nil {
			c = sh.find(a, counterID(lim.Metric, lim.Period))
		}
		start, _ := l.windowOf(lim.Period, t)
		if !fitsAfterApply(c, counterID(lim.Metric, lim.Period), start, u, t, delta, set, setVal) {
			return fmt.Errorf("record: counter of metric %d, period %s: %w", lim.Metric, lim.Period, ErrOverflow)
		}
	}
	for i := range limits {
		lim := &limits[i]
		delta, touched, set, setVal, _ := usageFor(usage, parents, flat, lim.Metric, true)
		if !touched || (!set && delta == 0) || !firstOfCounter(limits, i) || !l.stillOpen(lim.Period, u, t) {
			continue
		}
		if a == nil {
			a = sh.create(app, h)
		}
		start, _ := l.windowOf(lim.Period, t)
		c := l.findOrCreate(sh, a, counterID(lim.Metric, lim.Period), start, t)
		if changes == nil || lim.Period.Unit == Sliding {
			counterApply(c, start, u, t, delta, set, setVal)
			continue
		}
		before := counterValue(c, start, t)
		counterApply(c, start, u, t, delta, set, setVal)
		*changes = append(*changes, Change{Limit: i, Start: start, Before: before, After: counterValue(c, start, t)})
	}
	return nil
}

// stillOpen reports whether usage at u still counts in period p's window at t.
func (l *Limiter) stillOpen(p Period, u, t instant) bool {
	_, open := l.landing(p, u, t)
	return open
}

// window is where usage lands in a period's window at t: a calendar
// window's start, or the sliding window's sub-buckets [lo, hi] and the
// usage's own sub-bucket b.
type window struct {
	start, lo, hi, b int64
}

// landing works out where usage at u lands in period p's window at t, with
// at most one division per bound; open is false when that window no longer
// takes it.
func (l *Limiter) landing(p Period, u, t instant) (w window, open bool) {
	if p.Unit == Sliding {
		s := slideOf(counterID(0, p))
		w.lo, w.hi = s.span(t.ns)
		w.b = w.hi
		if u.ns != t.ns {
			w.b = floorDiv(u.ns, s.g)
		}
		return w, w.b >= w.lo
	}
	w.start, _ = l.bounds(p.Unit, t.sec)
	if u.sec != t.sec {
		if us, _ := l.bounds(p.Unit, u.sec); us != w.start {
			return w, false
		}
	}
	return w, true
}

// Seed restores a counter from a snapshot (sums from ClickHouse). For a
// calendar period it sets the counter of (app, metric, p) to value if the
// window starting at windowStart (unix seconds; 0 for eternity) is the one
// open now, and otherwise does nothing. For a sliding period it adds value
// to the sub-bucket containing windowStart if that sub-bucket still overlaps
// the window, so that several partial sums (say per minute) can be seeded
// one after another; replaying raw events with Record is more precise.
//
// A negative value is refused (ErrNegative), and so is a sliding seed that
// would take the window's sum past MaxInt64 (ErrOverflow); the counter is
// then unchanged.
func (l *Limiter) Seed(app AppKey, metric MetricID, p Period, windowStart int64, value int64) error {
	if value < 0 {
		return fmt.Errorf("seed of metric %d, period %s: %d: %w", metric, p, value, ErrNegative)
	}
	t := l.now()
	h := hashKey(app)
	sh := &l.shards[h&l.mask]
	sh.lock()
	defer sh.mu.Unlock()
	id := counterID(metric, p)
	a := sh.get(app, h)
	if p.Unit == Sliding {
		u := instant{sec: windowStart, ns: windowStart * int64(time.Second)}
		if u.ns > t.ns {
			u = t
		}
		if value == 0 || !l.stillOpen(p, u, t) {
			return nil
		}
		var c []uint64
		if a != nil {
			c = sh.find(a, id)
		}
		if !fitsAfterApply(c, id, 0, u, t, value, false, 0) {
			return fmt.Errorf("seed of metric %d, period %s: %w", metric, p, ErrOverflow)
		}
		if a == nil {
			a = sh.create(app, h)
		}
		counterApply(l.findOrCreate(sh, a, id, 0, t), 0, u, t, value, false, 0)
		return nil
	}
	start, _ := l.bounds(p.Unit, t.sec)
	if start != windowStart {
		return nil
	}
	if a == nil {
		if value == 0 {
			return nil
		}
		a = sh.create(app, h)
	}
	counterApply(l.findOrCreate(sh, a, id, start, t), start, t, t, 0, true, value)
	return nil
}
