package limiter

import (
	"math"
	"time"
)

// compiled is a plan (Request.Limits) worked out once into what a call
// needs: each limit's counter identity, whether it is the plan's first limit
// on that counter, its sliding constants and its length for the
// most-constrained tie break. Beside them it keeps what only changes with the
// clock: the calendar window of the current second and the current sliding
// sub-bucket, so that a call within the same second (sub-bucket) divides
// nothing. A Decision holds the last plan it was used with; Do compares the
// request's limits with the copy kept here (a few word compares) and
// compiles again when they differ, so callers need no plan handle and a plan
// edited in place is never served stale.
type compiled struct {
	n      int
	limits [stackLimits]Limit // the plan compiled
	pl     [stackLimits]planLimit
	st     [stackLimits]callState
}

// planLimit is one limit of a compiled plan.
type planLimit struct {
	id     uint64 // counter identity
	plen   int64  // periodSeconds
	metric MetricID
	unit   Unit
	first  bool // first limit of the plan on its counter

	// Calendar (and eternity): the window open during second sec.
	sec, start, end int64
	// Sliding: window and sub-bucket width in ns, and the span of the
	// sub-bucket hi, which covers [b0, b2): the window's oldest counted
	// sub-bucket is hi-K before b1 and hi-K+1 from b1 on (see slide.span).
	w, g       int64
	b0, b1, b2 int64
	hi         int64
}

// callState is what one call works out per limit.
type callState struct {
	cur      int64 // counter value before the call
	delta    int64 // the call's usage on the limit's metric (with descendants unless flat)
	setVal   int64
	lo, hi   int64 // sliding: the sub-buckets overlapping [now-window, now]
	off      int   // word offset of the counter in the app's inline words; -1: none or overflow
	touched  bool  // the usage names the metric or one of its descendants
	set      bool  // a Set entry names the metric (ModeReport only)
	overflow bool  // delta would pass MaxInt64
}

// same reports whether limits is the plan p was compiled from.
func (p *compiled) same(limits []Limit) bool {
	if len(limits) != p.n {
		return false
	}
	for i := range limits {
		if limits[i] != p.limits[i] {
			return false
		}
	}
	return true
}

// compile makes p the plan limits (at most stackLimits of them).
func (p *compiled) compile(limits []Limit) {
	p.n = len(limits)
	for i := range limits {
		lim := &limits[i]
		p.limits[i] = *lim
		pl := &p.pl[i]
		*pl = planLimit{
			id:     counterID(lim.Metric, lim.Period),
			plen:   periodSeconds(lim.Period),
			metric: lim.Metric,
			unit:   lim.Period.Unit,
			first:  true,
			sec:    math.MinInt64,
			b0:     1, // b0 > b2: no sub-bucket cached yet
		}
		for j := range i {
			if p.pl[j].id == pl.id {
				pl.first = false
				break
			}
		}
		if pl.unit == Sliding {
			s := slideOf(pl.id)
			pl.w, pl.g = s.w, s.g
		}
	}
}

// span is slide.span for the limit's window, dividing only when ns has left
// the sub-bucket of the previous call.
func (pl *planLimit) span(ns int64) (lo, hi int64) {
	if ns < pl.b0 || ns >= pl.b2 {
		pl.hi = floorDiv(ns, pl.g)
		pl.b0 = pl.hi * pl.g
		pl.b2 = pl.b0 + pl.g
		pl.b1 = pl.b2 - (pl.g*SubBuckets - pl.w)
	}
	if ns < pl.b1 {
		return pl.hi - SubBuckets, pl.hi
	}
	return pl.hi - SubBuckets + 1, pl.hi
}

// credit adds an entry's value v to every limit on metric m not already in
// done (the limits this entry has counted toward), and returns done with them.
func (p *compiled) credit(m MetricID, v int64, done uint32) uint32 {
	for j := range p.n {
		if p.pl[j].metric != m || done&(1<<j) != 0 {
			continue
		}
		done |= 1 << j
		st := &p.st[j]
		st.touched = true
		// Both are >= 0 (negative values take doGeneral).
		if v > math.MaxInt64-st.delta {
			st.overflow = true
		} else {
			st.delta += v
		}
	}
	return done
}

// doPlan is Do for plans of at most stackLimits limits and usage without
// negative values: the plan compiled once, the usage credited to the limits
// in one pass over its entries and the hierarchy, then one pass over the
// limits to check, one to apply when admitted, one for the constrained limit.
func (l *Limiter) doPlan(req *Request, d *Decision) {
	t := l.now()
	// Find the app first, then do the work that does not need its record:
	// the CPU runs that work while the record's cache lines are on their way
	// from memory (with a million apps they nearly always miss the cache).
	h := hashKey(req.App)
	sh := &l.shards[h&l.mask]
	sh.lock()
	a := sh.get(req.App, h)

	p := &d.plan
	if !p.same(req.Limits) {
		p.compile(req.Limits)
	}
	n := p.n
	if cap(d.Reports) < n {
		d.Reports = make([]Report, n)
	}
	d.Reports = d.Reports[:n]
	setMode := req.Mode == ModeReport
	noUsage := len(req.Usage) == 0

	for i := range n {
		st := &p.st[i]
		st.delta, st.setVal, st.touched, st.set, st.overflow = 0, 0, false, false, false
	}
	// No set entries here: Do sends those to doGeneral (see plain).
	for i := range req.Usage {
		u := &req.Usage[i]
		m := u.Metric
		done := p.credit(m, u.Value, 0)
		if req.Flat {
			continue
		}
		for range maxDepth {
			if int(m) >= len(req.Parents) {
				break
			}
			m = req.Parents[m]
			done = p.credit(m, u.Value, done)
			if m == NoParent {
				break
			}
		}
	}

	var refused error
	allowed := true
	for i := range n {
		pl, st, r := &p.pl[i], &p.st[i], &d.Reports[i]
		lim := &p.limits[i]
		// Field by field: a composite literal is built on the stack and
		// copied with wide loads that stall on store forwarding.
		r.Limit.Metric, r.Limit.Period.Unit, r.Limit.Period.Window, r.Limit.Max = lim.Metric, lim.Period.Unit, lim.Period.Window, lim.Max
		if pl.unit == Sliding {
			st.lo, st.hi = pl.span(t.ns)
			r.Start, r.End = floorDiv(t.ns-pl.w, int64(time.Second)), t.sec
		} else {
			if pl.sec != t.sec {
				pl.start, pl.end = l.bounds(pl.unit, t.sec)
				pl.sec = t.sec
			}
			r.Start, r.End = pl.start, pl.end
		}
		st.cur, st.off = 0, -1
		if a != nil {
			if off := findOff(a.words(), pl.id); off >= 0 {
				st.off = off
				if c := a.w[off:]; pl.unit == Sliding {
					st.cur = slidingSum(c, st.lo, st.hi)
				} else if uint32(c[0]) == uint32(r.Start) {
					st.cur = int64(c[1])
				}
			} else if a.ovf() {
				if c := findIn(sh.overflow[a.key], pl.id); c != nil {
					st.cur = counterValue(c, r.Start, t)
				}
			}
		}
		r.Current, r.Before, r.Exceeded = st.cur, st.cur, false
		// cur is in [0, MaxInt64] (slidingSum saturates) and Max and delta
		// are >= 0, so none of these differences overflows.
		switch {
		case refused != nil:
		case st.overflow:
			refused = ErrOverflow
		case setMode:
			base := st.cur
			if st.set {
				base = st.setVal
			}
			if st.touched && st.delta > math.MaxInt64-base {
				refused = ErrOverflow
			}
		case !allowed:
		case noUsage:
			allowed = st.cur <= lim.Max
		case st.touched && (lim.Max <= 0 || st.delta > lim.Max-st.cur):
			allowed = false
		}
	}
	if refused != nil {
		allowed = false
	}
	created := false // counters may have moved: offsets are stale
	if allowed && req.Mode != ModeAuthorize && !noUsage {
		for i := range n {
			pl, st, r := &p.pl[i], &p.st[i], &d.Reports[i]
			if !st.touched || (!st.set && st.delta == 0) {
				continue
			}
			if st.set {
				r.Current = st.setVal
			}
			r.Current += st.delta
			if !pl.first {
				continue
			}
			var c []uint64
			if st.off >= 0 && !created {
				c = a.w[st.off:]
				if pl.unit == Sliding && !st.set {
					slidingAdd(c, st.hi, st.delta) // the window's newest sub-bucket
					continue
				}
			} else {
				if a == nil {
					a = sh.create(req.App, h)
				}
				c = l.findOrCreate(sh, a, pl.id, r.Start, t)
				created = true
			}
			if pl.unit == Sliding {
				counterApply(c, r.Start, t, t, st.delta, st.set, st.setVal)
				continue
			}
			if uint32(c[0]) != uint32(r.Start) { // a new window: counterApply's roll, inline
				c[0], c[1] = c[0]&^(1<<32-1)|uint64(uint32(r.Start)), 0
			}
			if st.set {
				c[1] = uint64(st.setVal)
			}
			c[1] += uint64(st.delta)
		}
	}
	d.Allowed = allowed || (setMode && refused == nil)
	d.Err = refused

	// The most constrained limit: see Decision.
	best, bestRem, bestLen := -1, int64(0), int64(0)
	for i := range n {
		r, st := &d.Reports[i], &p.st[i]
		r.Exceeded = r.Current > r.Limit.Max
		if !noUsage && !st.touched {
			continue
		}
		rem := r.Limit.Max - r.Current
		if st.delta > 1 {
			rem /= st.delta
		}
		rem = max(rem, 0)
		if plen := p.pl[i].plen; best < 0 || rem < bestRem || (rem == bestRem && plen > bestLen) {
			best, bestRem, bestLen = i, rem, plen
		}
	}
	d.Constrained, d.Remaining, d.Reset = best, -1, -1
	if best >= 0 {
		d.Remaining = bestRem
		switch pl := &p.pl[best]; pl.unit {
		case Eternity:
		case Sliding:
			d.Reset = 0
			if a != nil {
				var c []uint64
				if st := &p.st[best]; st.off >= 0 && !created {
					c = a.w[st.off : st.off+slidingWords]
				} else {
					c = sh.find(a, pl.id)
				}
				if c != nil {
					d.Reset = slidingResetIn(c, p.st[best].lo, p.st[best].hi, slide{w: pl.w, g: pl.g}, t.ns)
				}
			}
		default:
			d.Reset = d.Reports[best].End - t.sec
		}
	}
	if sh.ops++; sh.ops%sweepEvery == 0 {
		l.sweep(sh, t, sweepBudget)
	}
	sh.mu.Unlock()
}
