package limiter

import (
	"sync"
	"sync/atomic"
)

// inlineWords is the counter space inside an app record: exactly a minute, a
// month and a sliding counter (2+2+10 words), or up to seven calendar
// counters. Apps whose plans need more spill into their shard's overflow map.
const inlineWords = 14

// app is one application's record: 128 bytes, two cache lines. Records live
// inline in their shard's hash table, so finding an app and its counters
// costs one trip to memory. It holds no pointers, so the garbage collector
// never scans the tables.
type app struct {
	key  AppKey
	meta uint64 // metaUsed | metaOverflow | words of w in use
	w    [inlineWords]uint64
}

const (
	metaUsed     = 1 << 63 // the slot holds an app
	metaOverflow = 1 << 62 // more counters in shard.overflow[key]
	metaWords    = 1<<16 - 1
)

func (a *app) used() bool      { return a.meta&metaUsed != 0 }
func (a *app) n() int          { return int(a.meta & metaWords) }
func (a *app) ovf() bool       { return a.meta&metaOverflow != 0 }
func (a *app) setN(n int)      { a.meta = a.meta&^metaWords | uint64(n) }
func (a *app) words() []uint64 { return a.w[:a.n()] }

// Table sizing: linear probing, grown by half when more than 4/5 full, so
// the load stays between 8/15 and 4/5 (between 160 and 240 bytes per app).
const (
	minSlots   = 64
	maxLoadNum = 4
	maxLoadDen = 5
)

// shard owns the apps whose key hashes to it. Every field is guarded by mu
// except the statistics, which Stats reads without locking.
type shard struct {
	mu        sync.Mutex
	slots     []app // open addressing, linear probing, home slot from the key's hash
	used      int
	overflow  map[AppKey][]uint64
	sweepPos  int // next slot the incremental sweeper looks at
	ops       uint32
	touch     uint64 // sink for get's early load
	hugePages bool   // Options.HugePages

	contended atomic.Uint64
	dropped   atomic.Uint64
	apps      atomic.Int64

	_ [64]byte // keep neighbouring shards' locks off this cache line
}

func (sh *shard) lock() {
	if !sh.mu.TryLock() {
		sh.contended.Add(1)
		sh.mu.Lock()
	}
}

// home maps a key's hash onto the table (multiply-shift: any table size).
func home(h uint64, n int) int {
	return int((h >> 32) * uint64(n) >> 32)
}

// get returns the app with key k (hash h), or nil.
func (sh *shard) get(k AppKey, h uint64) *app {
	n := len(sh.slots)
	if n == 0 {
		return nil
	}
	i := home(h, n)
	// Touch the home slot's second cache line now: its address does not
	// depend on the first line, so both misses overlap instead of the
	// counter walk finding the second line only after the first arrived.
	sh.touch += sh.slots[i].w[inlineWords-1]
	for {
		a := &sh.slots[i]
		if !a.used() {
			return nil
		}
		if a.key == k {
			return a
		}
		if i++; i == n {
			i = 0
		}
	}
}

// lookup is get, with the common case inline: the app in its home slot.
func (sh *shard) lookup(k AppKey, h uint64) *app {
	if n := len(sh.slots); n > 0 {
		i := home(h, n)
		a := &sh.slots[i]
		// Touch the second cache line now, as get does, and the next slot,
		// where linear probing finds the app a third of the time.
		if a.w[inlineWords-1] == 1<<64-1 {
			sh.touch++
		}
		if j := i + 1; j < n && sh.slots[j].key == 1<<64-1 {
			sh.touch++
		}
		if a.key == k && a.used() {
			return a
		}
	}
	return sh.get(k, h)
}

// create adds an app with key k (hash h), which must not be present.
func (sh *shard) create(k AppKey, h uint64) *app {
	if (sh.used+1)*maxLoadDen > len(sh.slots)*maxLoadNum {
		sh.grow()
	}
	n := len(sh.slots)
	i := home(h, n)
	for sh.slots[i].used() {
		if i++; i == n {
			i = 0
		}
	}
	a := &sh.slots[i]
	*a = app{key: k, meta: metaUsed}
	sh.used++
	sh.apps.Add(1)
	return a
}

func (sh *shard) grow() { sh.resize(max(minSlots, len(sh.slots)+len(sh.slots)/2)) }

// shrink gives memory back when the sweeper has emptied the table to below
// a quarter: memory follows the active apps, not their past peak.
func (sh *shard) shrink() {
	if len(sh.slots) > minSlots && sh.used*4 < len(sh.slots) {
		sh.resize(max(minSlots, sh.used*2))
		sh.sweepPos = 0
	}
}

func (sh *shard) resize(n int) {
	old := sh.slots
	sh.slots = make([]app, n)
	if sh.hugePages {
		adviseHuge(sh.slots)
	}
	for i := range old {
		a := &old[i]
		if !a.used() {
			continue
		}
		j := home(hashKey(a.key), n)
		for sh.slots[j].used() {
			if j++; j == n {
				j = 0
			}
		}
		sh.slots[j] = *a
	}
}

// drop removes the app in slot i and closes the gap by moving later apps of
// the probe run back (no tombstones, so lookups stay short).
func (sh *shard) drop(i int) {
	a := &sh.slots[i]
	if a.ovf() {
		delete(sh.overflow, a.key)
	}
	n := len(sh.slots)
	for j := i; ; {
		if j++; j == n {
			j = 0
		}
		b := &sh.slots[j]
		if !b.used() {
			break
		}
		// b may move to the hole at i unless its home lies cyclically in (i, j].
		h := home(hashKey(b.key), n)
		if (i <= j && (h <= i || h > j)) || (i > j && h <= i && h > j) {
			sh.slots[i] = *b
			i = j
		}
	}
	sh.slots[i] = app{}
	sh.used--
	sh.apps.Add(-1)
	sh.dropped.Add(1)
}

// find returns the words of a's counter with identity id, or nil.
func (sh *shard) find(a *app, id uint64) []uint64 {
	if c := findIn(a.words(), id); c != nil {
		return c
	}
	if a.ovf() {
		return findIn(sh.overflow[a.key], id)
	}
	return nil
}

func findIn(w []uint64, id uint64) []uint64 {
	if i := findOff(w, id); i >= 0 {
		sz := keySize(id)
		return w[i : i+sz : i+sz]
	}
	return nil
}

// findOff returns the word offset in w of the counter with identity id, or -1.
func findOff(w []uint64, id uint64) int {
	for i := 0; i < len(w); {
		h := w[i]
		if matches(h, id) {
			return i
		}
		i += keySize(h)
	}
	return -1
}

// findOrCreate returns a's counter with identity id, creating it empty
// (calendar window start at t). Creating may move other counters of a:
// callers hold no other counter.
func (l *Limiter) findOrCreate(sh *shard, a *app, id uint64, start int64, t instant) []uint64 {
	if c := sh.find(a, id); c != nil {
		return c
	}
	sz := keySize(id)
	if a.n()+sz > inlineWords {
		a.setN(l.compact(a.words(), t))
	}
	if n := a.n(); n+sz <= inlineWords {
		c := a.w[n : n+sz : n+sz]
		a.setN(n + sz)
		initCounter(c, id, start, t)
		return c
	}
	if sh.overflow == nil {
		sh.overflow = make(map[AppKey][]uint64)
	}
	ov := sh.overflow[a.key]
	ov = ov[:l.compact(ov, t)]
	ov = append(ov, make([]uint64, sz)...)
	sh.overflow[a.key] = ov
	a.meta |= metaOverflow
	c := ov[len(ov)-sz:]
	initCounter(c, id, start, t)
	return c
}

// compact removes dead counters from w, returning the words kept.
func (l *Limiter) compact(w []uint64, t instant) int {
	out := 0
	for i := 0; i < len(w); {
		sz := keySize(w[i])
		if !l.counterDead(w[i:i+sz], t) {
			copy(w[out:], w[i:i+sz])
			out += sz
		}
		i += sz
	}
	return out
}

// appDead reports whether every counter of a is dead at t.
// It compacts a's counters on the way.
func (l *Limiter) appDead(sh *shard, a *app, t instant) bool {
	a.setN(l.compact(a.words(), t))
	if !a.ovf() {
		return a.n() == 0
	}
	ov := sh.overflow[a.key]
	ov = ov[:l.compact(ov, t)]
	sh.overflow[a.key] = ov
	return a.n() == 0 && len(ov) == 0
}

// sweep looks at up to budget slots from the sweeper's cursor and drops the
// apps whose counters are all dead. It returns how far the cursor moved: a
// drop moves a later app into the slot, which is then looked at again.
func (l *Limiter) sweep(sh *shard, t instant, budget int) (advanced int) {
	for range budget {
		if len(sh.slots) == 0 {
			return advanced
		}
		if sh.sweepPos >= len(sh.slots) {
			sh.sweepPos = 0
		}
		i := sh.sweepPos
		if a := &sh.slots[i]; a.used() && l.appDead(sh, a, t) {
			sh.drop(i)
			continue
		}
		sh.sweepPos++
		advanced++
	}
	sh.shrink()
	return advanced
}
