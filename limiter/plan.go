package limiter

import (
	"math"
	"time"
)

// compiled is a plan (Request.Limits) worked out once into what a call
// needs: each limit's counter identity, whether it is the plan's first limit
// on that counter, its sliding constants, its length for the
// most-constrained tie break, and the plan's distinct metrics, which the
// usage is credited to. Beside them it keeps what only changes with the
// clock: the calendar window of the current second and the current sliding
// sub-bucket, so that a call within the same second (sub-bucket) divides
// nothing; and the arrangement of counters in the last record it read
// (layout), so that a call on a record arranged alike finds its counters
// without searching. A Decision holds the last plan it was used with; Do
// compares the request's limits with the copy kept here (a few word
// compares) and compiles again when they differ, so callers need no plan
// handle and a plan edited in place is never served stale.
type compiled struct {
	n      int
	limits [stackLimits]Limit // the plan compiled
	pl     [stackLimits]planLimit
	nm     int                   // distinct metrics
	metric [stackLimits]MetricID // the plan's distinct metrics
	delta  [stackLimits]int64    // a call's usage of each (see doPlan)
	lay    layout
}

// planLimit is one limit of a compiled plan.
type planLimit struct {
	id    uint64 // counter identity
	plen  int64  // periodSeconds
	unit  Unit
	m     uint8  // index of the limit's metric in compiled.metric
	bit   uint32 // 1<<m
	first bool   // first limit of the plan on its counter

	// Calendar (and eternity): the window open during second sec.
	sec, start, end int64
	// Sliding: window and sub-bucket width in ns, and the span of the
	// sub-bucket hi, which covers [b0, b2): the window's oldest counted
	// sub-bucket is hi-K before b1 and hi-K+1 from b1 on (see slide.span).
	w, g       int64
	b0, b1, b2 int64
	hi         int64
}

// layout is the arrangement of the counters in the app record a plan's
// call last read: its meta word (overflow flag and words in use), the
// first word of every counter in order (masked to its identity), and where
// each limit's counter sits. A record with the same meta word and the same
// identities at the same offsets has every limit's counter at the same
// offset: the offsets follow from the sizes, which follow from the
// identities. Apps on one plan usually create their counters in the same
// order, so one compare per counter replaces a search per limit.
type layout struct {
	meta uint64 // 0 (no record has it): nothing learnt
	cnt  int
	hdr  [inlineWords / calendarWords]uint64
	msk  [inlineWords / calendarWords]uint64
	pos  [inlineWords / calendarWords]uint8
	off  [stackLimits]int8 // word offset of each limit's counter; -1: absent
}

// limitDiff is zero if and only if *a == *b, without a branch per field.
func limitDiff(a, b *Limit) uint64 {
	return uint64(a.Metric^b.Metric) | uint64(a.Period.Unit^b.Period.Unit) |
		uint64(a.Period.Window^b.Period.Window) | uint64(a.Max^b.Max)
}

// compile makes p the plan limits (at most stackLimits of them).
func (p *compiled) compile(limits []Limit) {
	p.n, p.nm = len(limits), 0
	p.lay.meta = 0
	for i := range limits {
		lim := &limits[i]
		p.limits[i] = *lim
		pl := &p.pl[i]
		*pl = planLimit{
			id:    counterID(lim.Metric, lim.Period),
			plen:  periodSeconds(lim.Period),
			unit:  lim.Period.Unit,
			first: true,
			sec:   math.MinInt64,
			b0:    1, // b0 > b2: no sub-bucket cached yet
		}
		for j := range i {
			if p.pl[j].id == pl.id {
				pl.first = false
				break
			}
		}
		pl.m = uint8(p.nm)
		for k := range p.nm {
			if p.metric[k] == lim.Metric {
				pl.m = uint8(k)
				break
			}
		}
		if int(pl.m) == p.nm {
			p.metric[p.nm] = lim.Metric
			p.nm++
		}
		pl.bit = 1 << pl.m
		if pl.unit == Sliding {
			s := slideOf(pl.id)
			pl.w, pl.g = s.w, s.g
		}
	}
}

// offsets returns whether a's counters are arranged as p.lay says.
func (p *compiled) offsets(a *app) bool {
	ly := &p.lay
	if a.meta != ly.meta {
		return false
	}
	for k := range ly.cnt {
		if (a.w[ly.pos[k]]^ly.hdr[k])&ly.msk[k] != 0 {
			return false
		}
	}
	return true
}

// learn finds every limit's counter in a's inline words and remembers the
// arrangement in p.lay, unless a has counters in the overflow map (the
// layout cannot tell those are absent).
func (p *compiled) learn(a *app) {
	ly := &p.lay
	ly.meta = 0
	for i := range p.n {
		ly.off[i] = int8(findOff(a.words(), p.pl[i].id))
	}
	if a.ovf() {
		return
	}
	w := a.words()
	ly.cnt = 0
	for o := 0; o < len(w); o += keySize(w[o]) {
		ly.hdr[ly.cnt], ly.pos[ly.cnt], ly.msk[ly.cnt] = w[o], uint8(o), ^uint64(lowMask)
		if keyUnit(w[o]) == Sliding {
			ly.msk[ly.cnt] = math.MaxUint64
		}
		ly.cnt++
	}
	ly.meta = a.meta
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
	return pl.cached(ns)
}

// cached is span for an ns that span has just been called with.
func (pl *planLimit) cached(ns int64) (lo, hi int64) {
	if ns < pl.b1 {
		return pl.hi - SubBuckets, pl.hi
	}
	return pl.hi - SubBuckets + 1, pl.hi
}

// credit adds an entry's value v to the plan's metric m, unless it is in
// done (the metrics this entry has counted toward), and returns done with
// it. touched and over say which metrics the usage touched, and which
// summed past MaxInt64; p.delta holds the sums of the touched ones.
func (p *compiled) credit(m MetricID, v int64, done, touched, over uint32) (uint32, uint32, uint32) {
	for k := range p.nm {
		if p.metric[k] != m || done&(1<<k) != 0 {
			continue
		}
		done |= 1 << k
		switch {
		case touched&(1<<k) == 0:
			touched |= 1 << k
			p.delta[k] = v
		case v > math.MaxInt64-p.delta[k]: // both are >= 0 (negative values take doGeneral)
			over |= 1 << k
		default:
			p.delta[k] += v
		}
	}
	return done, touched, over
}

// doPlan is Do for plans of at most stackLimits limits and usage without
// negative values or set entries: the plan compiled once, the usage
// credited to the plan's metrics in one pass over its entries and the
// hierarchy, then one pass over the limits to read the counters and decide
// and one to apply when admitted, report and find the constrained limit.
// The reports' limits and windows are written only when they change: every
// store waits for the record's trip to memory before it can retire.
func (l *Limiter) doPlan(req *Request, d *Decision) {
	var t instant
	if ns, ok := sharedClock.fresh(); ok && l.clock == nil {
		t = instant{sec: floorDiv(ns, int64(time.Second)), ns: ns}
	} else {
		t = l.now()
	}
	// Find the app first, then do the work that does not need its record:
	// the CPU runs that work while the record's cache lines are on their way
	// from memory (with a million apps they nearly always miss the cache).
	h := hashKey(req.App)
	sh := &l.shards[h&l.mask]
	sh.lock()
	a := sh.lookup(req.App, h)

	// The compiled plan must be the request's, and the reports must carry
	// its limits: one compare of each limit with both.
	p := &d.plan
	limits := req.Limits
	n := len(limits)
	if cap(d.Reports) < n {
		d.Reports = make([]Report, n)
	}
	reports := d.Reports[:n]
	d.Reports = reports
	stale, rewrite := n != p.n, false
	if !stale {
		var x, y uint64
		for i := range limits {
			lim := &limits[i]
			x |= limitDiff(lim, &p.limits[i])
			y |= limitDiff(lim, &reports[i].Limit)
		}
		stale, rewrite = x != 0, y != 0
	}
	if stale {
		p.compile(limits)
	}
	if stale || rewrite {
		for i := range limits {
			reports[i].Limit = limits[i]
		}
	}
	setMode := req.Mode == ModeReport
	noUsage := len(req.Usage) == 0

	// The usage of each of the plan's metrics (with descendants unless
	// flat); p.delta[k] is meaningful only for the metrics in touched.
	var touched, over uint32
	for i := range req.Usage {
		u := &req.Usage[i]
		m := u.Metric
		done, t1, o1 := p.credit(m, u.Value, 0, touched, over)
		touched, over = t1, o1
		if req.Flat {
			continue
		}
		for range maxDepth {
			if int(m) >= len(req.Parents) {
				break
			}
			m = req.Parents[m]
			done, touched, over = p.credit(m, u.Value, done, touched, over)
			if m == NoParent {
				break
			}
		}
	}

	// Read every counter and decide. off is where the limits' counters sit
	// in the record (p.lay.off), or nil: look each one up.
	var off *[stackLimits]int8
	if a != nil {
		if !p.offsets(a) {
			p.learn(a)
		}
		off = &p.lay.off
	}
	refused, allowed := false, true
	for i := range n {
		pl, r := &p.pl[i], &reports[i]
		var start, end int64
		if pl.unit == Sliding {
			pl.span(t.ns)
			start, end = floorDiv(t.ns-pl.w, int64(time.Second)), t.sec
		} else {
			if pl.sec != t.sec {
				pl.start, pl.end = l.bounds(pl.unit, t.sec)
				pl.sec = t.sec
			}
			start, end = pl.start, pl.end
		}
		if r.Start != start || r.End != end {
			r.Start, r.End = start, end
		}
		var cur int64
		if off != nil {
			if o := int(off[i]); o >= 0 {
				if c := a.w[o:]; pl.unit == Sliding {
					lo, hi := pl.cached(t.ns)
					if c := c[:slidingWords]; int64(c[1]) == hi && lo == hi-SubBuckets {
						cur = ringSum(c)
					} else {
						cur = slidingSum(c, lo, hi)
					}
				} else if uint32(c[0]) == uint32(r.Start) {
					cur = int64(c[1])
				}
			} else if a.ovf() {
				if c := findIn(sh.overflow[a.key], pl.id); c != nil {
					cur = counterValue(c, r.Start, t)
				}
			}
		}
		r.Before = cur
		bit := pl.bit
		dl := p.delta[pl.m&(stackLimits-1)]
		// cur is in [0, MaxInt64] (slidingSum saturates) and Max and delta
		// are >= 0, so none of these differences overflows.
		switch max := r.Limit.Max; {
		case over&bit != 0:
			refused = true
		case setMode:
			if touched&bit != 0 && dl > math.MaxInt64-cur {
				refused = true
			}
		case noUsage:
			allowed = allowed && cur <= max
		case touched&bit != 0 && (max <= 0 || dl > max-cur):
			allowed = false
		}
	}
	allowed = allowed && !refused
	apply := allowed && req.Mode != ModeAuthorize && !noUsage

	// Apply when admitted, report, and pick the most constrained limit
	// (see Decision).
	created := false // counters may have moved: offsets are stale
	best, bestRem, bestLen := -1, int64(0), int64(0)
	for i := range n {
		pl, r := &p.pl[i], &reports[i]
		cur := r.Before
		bit := pl.bit
		dl := p.delta[pl.m&(stackLimits-1)]
		if touched&bit == 0 {
			dl = 0
		}
		if apply && dl != 0 {
			cur += dl
			if pl.first {
				o := -1
				if off != nil && !created {
					o = int(off[i])
				}
				if o >= 0 {
					c := a.w[o:]
					if pl.unit == Sliding {
						// The window's newest sub-bucket.
						if _, hi := pl.cached(t.ns); int64(c[1]) == hi {
							c[2+hi&ringMask] += uint64(dl)
						} else {
							slidingAdd(c, hi, dl)
						}
					} else {
						if uint32(c[0]) != uint32(r.Start) { // a new window: counterApply's roll, inline
							c[0], c[1] = c[0]&^(1<<32-1)|uint64(uint32(r.Start)), 0
						}
						c[1] += uint64(dl)
					}
				} else {
					if a == nil {
						a = sh.create(req.App, h)
					}
					counterApply(l.findOrCreate(sh, a, pl.id, r.Start, t), r.Start, t, t, dl, false, 0)
					created = true
				}
			}
		}
		r.Current = cur
		r.Exceeded = cur > r.Limit.Max
		if !noUsage && touched&bit == 0 {
			continue
		}
		rem := r.Limit.Max - cur
		if dl > 1 {
			rem /= dl
		}
		rem = max(rem, 0)
		if best < 0 || rem < bestRem || (rem == bestRem && pl.plen > bestLen) {
			best, bestRem, bestLen = i, rem, pl.plen
		}
	}
	if !refused {
		if d.Err != nil {
			d.Err = nil
		}
	} else {
		d.Err = ErrOverflow
	}
	d.Allowed = allowed || (setMode && !refused)
	d.Constrained, d.Remaining, d.Reset = best, -1, -1
	if best >= 0 {
		d.Remaining = bestRem
		switch pl := &p.pl[best]; pl.unit {
		case Eternity:
		case Sliding:
			d.Reset = 0
			if a != nil {
				var c []uint64
				if o := p.lay.off[best]; off != nil && o >= 0 && !created {
					c = a.w[o : o+slidingWords]
				} else {
					c = sh.find(a, pl.id)
				}
				if c != nil {
					lo, hi := pl.cached(t.ns)
					d.Reset = slidingResetIn(c, lo, hi, slide{w: pl.w, g: pl.g}, t.ns)
				}
			}
		default:
			d.Reset = reports[best].End - t.sec
		}
	}
	if sh.ops++; sh.ops%sweepEvery == 0 {
		l.sweep(sh, t, sweepBudget)
	}
	sh.mu.Unlock()
}
