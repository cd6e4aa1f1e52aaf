package limiter

import (
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// Counters live in flat []uint64 words inside an app record (see app). The
// first word of a counter identifies it and says how many words it spans:
//
//	calendar, eternity: metric<<48 | unit<<40 | window start (uint32 unix s); value     (2 words)
//	sliding:            metric<<48 | unit<<40 | window (ms); newest sub-bucket; 8 buckets (10 words)
//
// Counter identity is (metric, period), never the limit's position in a plan,
// so a plan change keeps the usage of the limits it shares with the old plan.
// Calendar window starts are kept as 32-bit unix seconds (good until 2106).

// SubBuckets is K, the number of sub-buckets a sliding window of length W is
// cut into: each spans g = ceil(W/K). A ring of K+1 buckets holds every
// bucket that overlaps [now-W, now]. K+1 is a power of two so that the ring
// index is a mask.
const SubBuckets = 7

const (
	ringSize      = SubBuckets + 1
	ringMask      = ringSize - 1
	calendarWords = 2
	slidingWords  = 2 + ringSize
	lowMask       = 1<<40 - 1
)

// slidingWindow clamps a sliding window to what ParsePeriod accepts and
// truncates it to whole milliseconds, the precision counters are keyed by.
func slidingWindow(d time.Duration) time.Duration {
	if d < MinSlidingWindow {
		d = MinSlidingWindow
	}
	if d > MaxSlidingWindow {
		d = MaxSlidingWindow
	}
	return d - d%time.Millisecond
}

// counterID is the first word of the counter of (m, p), with a zero window
// start for calendar periods.
func counterID(m MetricID, p Period) uint64 {
	k := uint64(m)<<48 | uint64(p.Unit)<<40
	if p.Unit == Sliding {
		k |= uint64(slidingWindow(p.Window) / time.Millisecond)
	}
	return k
}

func keyUnit(k uint64) Unit { return Unit(k >> 40) }

func keySize(k uint64) int {
	if keyUnit(k) == Sliding {
		return slidingWords
	}
	return calendarWords
}

// matches reports whether the counter whose first word is w has identity id.
func matches(w, id uint64) bool {
	if w>>40 != id>>40 {
		return false
	}
	return keyUnit(id) != Sliding || w == id
}

// slide holds a sliding window's length and sub-bucket width in nanoseconds.
type slide struct{ w, g int64 }

func slideOf(k uint64) slide {
	w := int64(k&lowMask) * int64(time.Millisecond)
	return slide{w: w, g: (w + SubBuckets - 1) / SubBuckets}
}

// span returns the sub-buckets [lo, hi] that overlap [ns-w, ns]. Since
// g*K >= w, hi-lo <= K: they all fit in the ring.
//
// It divides once: with ns = hi*g + r and w = K*g - e (0 <= e < K),
// floor((ns-w)/g) = hi - K + floor((r+e)/g), and r+e < 2g.
func (s slide) span(ns int64) (lo, hi int64) {
	hi = floorDiv(ns, s.g)
	lo = hi - SubBuckets
	if ns-hi*s.g+s.g*SubBuckets-s.w >= s.g {
		lo++
	}
	return lo, hi
}

// instant is the clock reading of one call, taken once.
type instant struct {
	sec int64 // unix seconds
	ns  int64 // unix nanoseconds
}

func instantOf(t time.Time) instant { return instant{sec: t.Unix(), ns: t.UnixNano()} }

// slidingSum adds the buckets with index in [lo, hi] still held by ring c,
// saturating at MaxInt64. Every call that adds keeps the window's sum at
// most MaxInt64, so saturation is only reached when the clock went back and
// a window spans buckets no single earlier window did: the sum is then still
// at least every limit's max, never a wrapped negative.
func slidingSum(c []uint64, lo, hi int64) int64 {
	ring := (*[ringSize]uint64)(c[2:])
	head := int64(c[1])
	from, to := max(lo, head-SubBuckets), min(hi, head)
	var s, carry uint64
	if from == head-SubBuckets && to == head {
		for _, v := range ring {
			var cy uint64
			s, cy = bits.Add64(s, v, 0)
			carry |= cy
		}
	} else {
		for i := from; i <= to; i++ {
			var cy uint64
			s, cy = bits.Add64(s, ring[i&ringMask], 0)
			carry |= cy
		}
	}
	if carry != 0 || s > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(s)
}

// ringSum is slidingSum for a window that spans the whole ring, the
// common case, without a loop: c is a sliding counter.
func ringSum(c []uint64) int64 {
	r := (*[slidingWords]uint64)(c)
	// A tree of additions: three deep instead of seven.
	a, c0 := bits.Add64(r[2], r[3], 0)
	b, c1 := bits.Add64(r[4], r[5], 0)
	d, c2 := bits.Add64(r[6], r[7], 0)
	e, c3 := bits.Add64(r[8], r[9], 0)
	a, c4 := bits.Add64(a, b, 0)
	d, c5 := bits.Add64(d, e, 0)
	s, c6 := bits.Add64(a, d, 0)
	if c0|c1|c2|c3|c4|c5|c6 != 0 || s > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(s)
}

// slidingAdvance makes bucket b the newest one, clearing the buckets it
// reuses. It never moves the ring backwards.
func slidingAdvance(c []uint64, b int64) {
	head := int64(c[1])
	if b <= head {
		return
	}
	ring := (*[ringSize]uint64)(c[2:])
	if b-head >= ringSize {
		clear(ring[:])
	} else {
		for i := head + 1; i <= b; i++ {
			ring[i&ringMask] = 0
		}
	}
	c[1] = uint64(b)
}

// slidingAdd adds delta to bucket b if the ring still holds it.
func slidingAdd(c []uint64, b, delta int64) {
	slidingAdvance(c, b)
	if b < int64(c[1])-SubBuckets {
		return
	}
	c[2+b&ringMask] += uint64(delta)
}

// slidingSet makes everything up to bucket b count v in total, in bucket b.
func slidingSet(c []uint64, b, v int64) {
	slidingAdvance(c, b)
	head := int64(c[1])
	if b < head-SubBuckets {
		return
	}
	for i := head - SubBuckets; i <= b; i++ {
		c[2+i&ringMask] = 0
	}
	c[2+b&ringMask] = uint64(v)
}

// slidingReset returns the seconds (rounded up) until the oldest non-empty
// bucket in the window leaves it, or 0 if the window is empty.
func slidingReset(c []uint64, s slide, ns int64) int64 {
	lo, hi := s.span(ns)
	return slidingResetIn(c, lo, hi, s, ns)
}

// slidingResetIn is slidingReset with the window's sub-buckets [lo, hi] at
// ns already known.
func slidingResetIn(c []uint64, lo, hi int64, s slide, ns int64) int64 {
	head := int64(c[1])
	for i := max(lo, head-SubBuckets); i <= min(hi, head); i++ {
		if c[2+i&ringMask] != 0 {
			leaves := (i+1)*s.g + s.w // first instant at which lo > i
			return ceilDiv(leaves-ns, int64(time.Second))
		}
	}
	return 0
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

// initCounter writes a fresh, empty counter with identity id into c, for
// calendar window start (ignored for sliding) at instant t.
func initCounter(c []uint64, id uint64, start int64, t instant) {
	if keyUnit(id) == Sliding {
		c[0], c[1] = id, uint64(floorDiv(t.ns, slideOf(id).g))
		clear(c[2:slidingWords])
		return
	}
	c[0], c[1] = id|uint64(uint32(start)), 0
}

// counterValue is the counter's value at t; start is the calendar window
// open at t (ignored for sliding counters).
func counterValue(c []uint64, start int64, t instant) int64 {
	k := c[0]
	if keyUnit(k) == Sliding {
		lo, hi := slideOf(k).span(t.ns)
		return slidingSum(c, lo, hi)
	}
	if uint32(k) != uint32(start) {
		return 0
	}
	return int64(c[1])
}

// counterDead reports whether the counter holds nothing that can matter at
// t or later: zero, a closed calendar window, or an empty sliding window. An
// eternity counter is dead only when zero.
func (l *Limiter) counterDead(c []uint64, t instant) bool {
	k := c[0]
	if keyUnit(k) == Sliding {
		lo, hi := slideOf(k).span(t.ns)
		return slidingSum(c, lo, max(hi, int64(c[1]))) == 0
	}
	if c[1] == 0 {
		return true
	}
	start, _ := l.bounds(keyUnit(k), t.sec)
	return uint32(k) != uint32(start)
}

// counterApply adds delta, after setting the value to setVal when set, to
// the counter for usage at instant at, seen at t. Calendar counters roll to
// window start (the window open at t; the caller checked that at falls in
// it); sliding counters put the usage in at's sub-bucket if it still
// overlaps the window.
func counterApply(c []uint64, start int64, at, t instant, delta int64, set bool, setVal int64) {
	k := c[0]
	if keyUnit(k) == Sliding {
		s := slideOf(k)
		lo, b := s.span(t.ns)
		if at.ns != t.ns {
			b = floorDiv(at.ns, s.g)
		}
		slidingApply(c, lo, b, delta, set, setVal)
		return
	}
	if uint32(k) != uint32(start) {
		c[0], c[1] = k&^(1<<32-1)|uint64(uint32(start)), 0
	}
	if set {
		c[1] = uint64(setVal)
	}
	c[1] += uint64(delta)
}

// slidingApply is counterApply for a sliding counter whose window at t
// starts at sub-bucket lo, for usage in sub-bucket b.
func slidingApply(c []uint64, lo, b, delta int64, set bool, setVal int64) {
	if b < lo {
		return
	}
	if set {
		slidingSet(c, b, setVal)
	}
	slidingAdd(c, b, delta)
}

// fitsAfterApply reports whether counterApply(c, start, at, t, delta, set,
// setVal) would leave the counter's value at t within MaxInt64. c is the
// counter with identity id, or nil when it does not exist yet (it would be
// created empty). delta and setVal are >= 0.
func fitsAfterApply(c []uint64, id uint64, start int64, at, t instant, delta int64, set bool, setVal int64) bool {
	base := int64(0)
	if set {
		base = setVal
	}
	if c == nil {
		return delta <= math.MaxInt64-base
	}
	if keyUnit(id) != Sliding {
		if !set {
			base = counterValue(c, start, t)
		}
		return delta <= math.MaxInt64-base
	}
	s := slideOf(id)
	lo, hi := s.span(t.ns)
	b := hi
	if at.ns != t.ns {
		b = floorDiv(at.ns, s.g)
	}
	return slidingFits(c, lo, hi, b, delta, set, setVal)
}

// slidingFits is fitsAfterApply for an existing sliding counter whose
// window at t spans sub-buckets [lo, hi], for usage in sub-bucket b.
func slidingFits(c []uint64, lo, hi, b, delta int64, set bool, setVal int64) bool {
	base := int64(0)
	if set {
		base = setVal
	}
	if b < lo {
		return true // slidingApply ignores it
	}
	if set {
		// slidingSet empties the buckets up to b; later ones stay.
		rest := slidingSum(c, b+1, hi)
		if rest > math.MaxInt64-base {
			return false
		}
		base += rest
	} else {
		base = slidingSum(c, lo, hi)
	}
	return delta <= math.MaxInt64-base
}

// calCache remembers the month and year bounds of one UTC day, so that
// calls do not redo the civil-date arithmetic (~50ns). It is a seqlock: a
// reader that sees a write in progress, or another day, computes the bounds
// itself and offers them to the cache; one writer at a time, chosen by
// TryLock, so readers never wait.
type calCache struct {
	seq                          atomic.Uint64 // odd while a write is in progress
	day                          atomic.Int64
	month0, month1, year0, year1 atomic.Int64
	mu                           sync.Mutex
}

func (c *calCache) get(day int64) (m0, m1, y0, y1 int64) {
	if s := c.seq.Load(); s&1 == 0 && c.day.Load() == day {
		m0, m1, y0, y1 = c.month0.Load(), c.month1.Load(), c.year0.Load(), c.year1.Load()
		if c.seq.Load() == s {
			return m0, m1, y0, y1
		}
	}
	m0, m1 = calBounds(Month, day*86400)
	y0, y1 = calBounds(Year, day*86400)
	if c.mu.TryLock() {
		c.seq.Add(1)
		c.day.Store(day)
		c.month0.Store(m0)
		c.month1.Store(m1)
		c.year0.Store(y0)
		c.year1.Store(y1)
		c.seq.Add(1)
		c.mu.Unlock()
	}
	return m0, m1, y0, y1
}

// bounds is calBounds with the month and year bounds cached per day.
func (l *Limiter) bounds(u Unit, sec int64) (start, end int64) {
	switch u {
	case Month:
		m0, m1, _, _ := l.cal.get(floorDiv(sec, 86400))
		return m0, m1
	case Year:
		_, _, y0, y1 := l.cal.get(floorDiv(sec, 86400))
		return y0, y1
	}
	return calBounds(u, sec)
}
