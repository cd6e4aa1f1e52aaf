package limiter

import "time"

// Counters live in flat []uint64 words inside an app record (see app). Each
// counter starts with its key word, which also says how many words it spans:
//
//	calendar and eternity: key, window start (unix s), value                 (3 words)
//	sliding:               key, newest sub-bucket index, SubBuckets+1 buckets (2+SubBuckets+1 words)
//
// A key is metric<<48 | unit<<40 | window in milliseconds (sliding only):
// counter identity is (metric, period), never the limit's position in a plan,
// so a plan change keeps the usage of the limits it shares with the old plan.

// SubBuckets is K, the number of sub-buckets a sliding window of length W is
// cut into: each spans g = ceil(W/K). A ring of K+1 buckets holds every
// bucket that overlaps [now-W, now].
const SubBuckets = 8

const (
	ringSize      = SubBuckets + 1
	calendarWords = 3
	slidingWords  = 2 + ringSize
	windowMask    = 1<<40 - 1
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

func counterKey(m MetricID, p Period) uint64 {
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

// slide holds a sliding window's length and sub-bucket width in nanoseconds.
type slide struct{ w, g int64 }

func slideOf(k uint64) slide {
	w := int64(k&windowMask) * int64(time.Millisecond)
	return slide{w: w, g: (w + SubBuckets - 1) / SubBuckets}
}

// span returns the sub-buckets [lo, hi] that overlap [ns-w, ns]. Since
// g*K >= w, hi-lo <= K: they all fit in the ring.
func (s slide) span(ns int64) (lo, hi int64) {
	return floorDiv(ns-s.w, s.g), floorDiv(ns, s.g)
}

// instant is the clock reading of one call, taken once.
type instant struct {
	sec int64 // unix seconds
	ns  int64 // unix nanoseconds
}

func instantOf(t time.Time) instant { return instant{sec: t.Unix(), ns: t.UnixNano()} }

// slidingSum adds the buckets with index in [lo, hi] still held by ring c.
func slidingSum(c []uint64, lo, hi int64) int64 {
	head := int64(c[1])
	from, to := max(lo, head-SubBuckets), min(hi, head)
	if from == head-SubBuckets && to == head {
		var s int64
		for _, v := range c[2 : 2+ringSize] {
			s += int64(v)
		}
		return s
	}
	var s int64
	for i := from; i <= to; i++ {
		s += int64(c[2+floorMod(i, ringSize)])
	}
	return s
}

// slidingAdvance makes bucket b the newest one, clearing the buckets it
// reuses. It never moves the ring backwards.
func slidingAdvance(c []uint64, b int64) {
	head := int64(c[1])
	if b <= head {
		return
	}
	if b-head >= ringSize {
		clear(c[2 : 2+ringSize])
	} else {
		for i := head + 1; i <= b; i++ {
			c[2+floorMod(i, ringSize)] = 0
		}
	}
	c[1] = uint64(b)
}

// slidingAdd adds delta to bucket b if the ring still holds it.
func slidingAdd(c []uint64, b, delta int64) {
	slidingAdvance(c, b)
	head := int64(c[1])
	if b < head-SubBuckets {
		return
	}
	c[2+floorMod(b, ringSize)] += uint64(delta)
}

// slidingSet makes everything up to bucket b count v in total, in bucket b.
func slidingSet(c []uint64, b, v int64) {
	slidingAdvance(c, b)
	head := int64(c[1])
	if b < head-SubBuckets {
		return
	}
	for i := head - SubBuckets; i <= b; i++ {
		c[2+floorMod(i, ringSize)] = 0
	}
	c[2+floorMod(b, ringSize)] = uint64(v)
}

// slidingReset returns the seconds (rounded up) until the oldest non-empty
// bucket in the window leaves it, or 0 if the window is empty.
func slidingReset(c []uint64, s slide, ns int64) int64 {
	lo, hi := s.span(ns)
	head := int64(c[1])
	for i := max(lo, head-SubBuckets); i <= min(hi, head); i++ {
		if c[2+floorMod(i, ringSize)] != 0 {
			leaves := (i+1)*s.g + s.w // first instant at which lo > i
			return ceilDiv(leaves-ns, int64(time.Second))
		}
	}
	return 0
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }

// initCounter writes a fresh counter with key k for instant t into c.
func initCounter(c []uint64, k uint64, t instant) {
	c[0] = k
	if keyUnit(k) == Sliding {
		c[1] = uint64(floorDiv(t.ns, slideOf(k).g))
		clear(c[2:slidingWords])
		return
	}
	start, _ := calBounds(keyUnit(k), t.sec)
	c[1], c[2] = uint64(start), 0
}

// counterValue is the counter's value in the window containing t.
func counterValue(c []uint64, t instant) int64 {
	k := c[0]
	if keyUnit(k) == Sliding {
		lo, hi := slideOf(k).span(t.ns)
		return slidingSum(c, lo, hi)
	}
	start, _ := calBounds(keyUnit(k), t.sec)
	if int64(c[1]) != start {
		return 0
	}
	return int64(c[2])
}

// counterDead reports whether the counter holds nothing that can matter at
// t or later: a closed calendar window, zero, or an empty sliding window. An
// eternity counter is dead only when zero.
func counterDead(c []uint64, t instant) bool {
	k := c[0]
	if keyUnit(k) == Sliding {
		lo, hi := slideOf(k).span(t.ns)
		return slidingSum(c, lo, max(hi, int64(c[1]))) == 0
	}
	if c[2] == 0 {
		return true
	}
	start, _ := calBounds(keyUnit(k), t.sec)
	return int64(c[1]) < start
}

// counterApply adds delta (after setting the value to setVal when set) to
// the counter's window containing usage time at, as seen at t. Usage whose
// window closed before t is ignored.
func counterApply(c []uint64, at, t instant, delta int64, set bool, setVal int64) {
	k := c[0]
	if keyUnit(k) == Sliding {
		s := slideOf(k)
		b := floorDiv(at.ns, s.g)
		if lo, _ := s.span(t.ns); b < lo {
			return
		}
		if set {
			slidingSet(c, b, setVal)
		}
		slidingAdd(c, b, delta)
		return
	}
	start, _ := calBounds(keyUnit(k), t.sec)
	if at.sec != t.sec {
		if atStart, _ := calBounds(keyUnit(k), at.sec); atStart != start {
			return
		}
	}
	if int64(c[1]) != start {
		c[1], c[2] = uint64(start), 0
	}
	if set {
		c[2] = uint64(setVal)
	}
	c[2] += uint64(delta)
}
