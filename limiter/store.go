package limiter

import (
	"sync"
	"sync/atomic"
)

// inlineWords is the counter space inside an app record: a minute, a month
// and a sliding counter (3+3+11 words) plus one more calendar counter. Apps
// whose plans need more spill into their shard's overflow map.
const inlineWords = 20

// app is one application's record. It holds no pointers, so the shard's
// record chunks are not scanned by the garbage collector.
type app struct {
	key  AppKey
	n    uint16 // words of w in use
	used bool   // false: on the free list
	ovf  bool   // more counters in shard.overflow[key]
	w    [inlineWords]uint64
}

const (
	chunkShift = 8
	chunkSize  = 1 << chunkShift
)

// shard owns the apps whose key hashes to it. Every field is guarded by mu
// except the statistics, which Stats reads without locking.
type shard struct {
	mu       sync.Mutex
	idx      map[AppKey]uint32 // app key -> record index
	chunks   [][]app           // records, chunkSize per chunk, never moved
	n        uint32            // records handed out (high-water mark)
	free     []uint32          // indexes of dropped records
	overflow map[AppKey][]uint64
	sweepPos uint32 // next record the incremental sweeper looks at
	ops      uint32

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

func (sh *shard) rec(i uint32) *app {
	return &sh.chunks[i>>chunkShift][i&(chunkSize-1)]
}

func (sh *shard) get(k AppKey) *app {
	i, ok := sh.idx[k]
	if !ok {
		return nil
	}
	return sh.rec(i)
}

func (sh *shard) create(k AppKey) *app {
	var i uint32
	if n := len(sh.free); n > 0 {
		i = sh.free[n-1]
		sh.free = sh.free[:n-1]
	} else {
		i = sh.n
		if int(i>>chunkShift) == len(sh.chunks) {
			sh.chunks = append(sh.chunks, make([]app, chunkSize))
		}
		sh.n++
	}
	a := sh.rec(i)
	*a = app{key: k, used: true}
	sh.idx[k] = i
	sh.apps.Add(1)
	return a
}

// drop forgets record i.
func (sh *shard) drop(i uint32) {
	a := sh.rec(i)
	delete(sh.idx, a.key)
	if a.ovf {
		delete(sh.overflow, a.key)
	}
	*a = app{}
	sh.free = append(sh.free, i)
	sh.apps.Add(-1)
	sh.dropped.Add(1)
}

// find returns the words of a's counter with key k, or nil.
func (sh *shard) find(a *app, k uint64) []uint64 {
	if c := findIn(a.w[:a.n], k); c != nil {
		return c
	}
	if a.ovf {
		return findIn(sh.overflow[a.key], k)
	}
	return nil
}

func findIn(w []uint64, k uint64) []uint64 {
	for i := 0; i < len(w); {
		h := w[i]
		sz := keySize(h)
		if h == k {
			return w[i : i+sz : i+sz]
		}
		i += sz
	}
	return nil
}

// findOrCreate returns a's counter with key k, creating it for instant t.
// Creating may move other counters of a: callers hold no other counter.
func (sh *shard) findOrCreate(a *app, k uint64, t instant) []uint64 {
	if c := sh.find(a, k); c != nil {
		return c
	}
	sz := keySize(k)
	if int(a.n)+sz > inlineWords {
		a.n = uint16(compact(a.w[:a.n], t))
	}
	if int(a.n)+sz <= inlineWords {
		c := a.w[a.n : int(a.n)+sz : int(a.n)+sz]
		a.n += uint16(sz)
		initCounter(c, k, t)
		return c
	}
	if sh.overflow == nil {
		sh.overflow = make(map[AppKey][]uint64)
	}
	ov := sh.overflow[a.key]
	ov = ov[:compact(ov, t)]
	ov = append(ov, make([]uint64, sz)...)
	sh.overflow[a.key] = ov
	a.ovf = true
	c := ov[len(ov)-sz:]
	initCounter(c, k, t)
	return c
}

// compact removes dead counters from w, returning the words kept.
func compact(w []uint64, t instant) int {
	out := 0
	for i := 0; i < len(w); {
		sz := keySize(w[i])
		if !counterDead(w[i:i+sz], t) {
			copy(w[out:], w[i:i+sz])
			out += sz
		}
		i += sz
	}
	return out
}

// appDead reports whether every counter of a is dead at t.
func (sh *shard) appDead(a *app, t instant) bool {
	for i := 0; i < int(a.n); {
		sz := keySize(a.w[i])
		if !counterDead(a.w[i:i+sz], t) {
			return false
		}
		i += sz
	}
	if a.ovf {
		ov := sh.overflow[a.key]
		for i := 0; i < len(ov); {
			sz := keySize(ov[i])
			if !counterDead(ov[i:i+sz], t) {
				return false
			}
			i += sz
		}
	}
	return true
}

// sweep looks at up to budget records from the sweeper's cursor and drops
// the apps whose counters are all dead. It returns the records looked at.
func (sh *shard) sweep(t instant, budget int) int {
	seen := 0
	for ; seen < budget && sh.n > 0; seen++ {
		if sh.sweepPos >= sh.n {
			sh.sweepPos = 0
		}
		i := sh.sweepPos
		sh.sweepPos++
		if a := sh.rec(i); a.used && sh.appDead(a, t) {
			sh.drop(i)
		}
	}
	return seen
}
