package region

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// Shares is this region's part of the strict global limits: in each window
// of a strict limit, this region admits at most its share of max (see the
// package doc). It implements smapi.Caps.
//
// A region's own usage of a window is its counter (every region's usage)
// less the peers' usage applied to it, which Shares sums as the tails apply
// it; so "own + delta <= share" is the limiter's own atomic check of
// "counter + delta <= share + peers' usage", and Cap only lowers the max the
// limiter checks against. The peers' usage only grows, so a Cap that reads
// it a moment early is stricter, never laxer.
type Shares struct {
	index, regions int64 // this region's position among the sorted names, and their number
	shards         [64]shareShard

	// Decisions in flight, by epoch parity: a rebalance that lowers a
	// share flips the epoch and waits for the decisions of the old one
	// (which may have read the higher share) to finish.
	epoch    atomic.Uint32
	inflight [2]atomic.Int64
}

type shareShard struct {
	mu sync.RWMutex
	m  map[shareKey]*window
}

// window is what this region knows of one window of one strict limit.
type window struct {
	peers  atomic.Int64 // the peers' usage applied to it
	recv   atomic.Int64 // units the peers granted this region
	given  atomic.Int64 // units this region granted the peers (or is granting)
	demand atomic.Int64 // calls that touched it since the last rebalance

	// Set once when the window is first seen, for the records that name it.
	app   *catalog.App
	limit limiter.Limit
}

// shareKey names one window of one strict limit of one application.
type shareKey struct {
	app    limiter.AppKey
	metric limiter.MetricID
	unit   limiter.Unit
	start  int64 // the window's start, unix seconds (0 for eternity)
}

// NewShares returns the shares of region self among self and peers: every
// region must name the same set.
func NewShares(self string, peers []Peer) *Shares {
	names := []string{self}
	for _, p := range peers {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	s := &Shares{index: int64(slices.Index(names, self)), regions: int64(len(names))}
	for i := range s.shards {
		s.shards[i].m = make(map[shareKey]*window)
	}
	return s
}

// Share is this region's share of a strict limit of max: max/N, the first
// max mod N regions by name one unit more, so that the shares add up to max.
func (s *Shares) Share(max int64) int64 {
	share := max / s.regions
	if s.index < max%s.regions {
		share++
	}
	return share
}

func (s *Shares) shard(k shareKey) *shareShard {
	h := xxhash.Sum64(unsafeKeyBytes(k))
	return &s.shards[h&uint64(len(s.shards)-1)]
}

// unsafeKeyBytes packs k for hashing without allocating.
func unsafeKeyBytes(k shareKey) []byte {
	var b [8 + 2 + 1 + 8]byte
	for i := range 8 {
		b[i] = byte(uint64(k.app) >> (8 * i))
		b[11+i] = byte(uint64(k.start) >> (8 * i))
	}
	b[8], b[9], b[10] = byte(k.metric), byte(k.metric>>8), byte(k.unit)
	return b[:]
}

// get returns k's window, nil if unknown.
func (s *Shares) get(k shareKey) *window {
	sh := s.shard(k)
	sh.mu.RLock()
	w := sh.m[k]
	sh.mu.RUnlock()
	return w
}

// window returns k's window, adding it (for app's limit l) if unknown.
func (s *Shares) window(k shareKey, app *catalog.App, l limiter.Limit) *window {
	if w := s.get(k); w != nil {
		return w
	}
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	w := sh.m[k]
	if w == nil {
		w = &window{app: app, limit: l}
		sh.m[k] = w
	}
	return w
}

// share is this region's share of w: its base share plus what the peers
// granted it less what it granted them.
func (s *Shares) share(w *window) int64 {
	return s.Share(w.limit.Max) + w.recv.Load() - w.given.Load()
}

// Cap lowers the max of each strict limit of app's plan in dst (a copy of
// the plan's limits) to this region's share plus the peers' usage applied
// to the window open at now, and returns the token to give Done once the
// limiter has decided. The first call of a window adds it (one allocation
// per application, strict limit and window); the others neither block nor
// allocate.
func (s *Shares) Cap(dst []limiter.Limit, app *catalog.App, now time.Time) ([]limiter.Limit, uint32) {
	e := s.epoch.Load() & 1
	s.inflight[e].Add(1)
	plan := app.Plan()
	if plan == nil {
		return dst, e
	}
	for _, i := range plan.Strict {
		if i >= len(dst) {
			continue
		}
		l := &dst[i]
		start, _ := limiter.WindowBounds(l.Period, now)
		w := s.window(shareKey{app: app.Key, metric: l.Metric, unit: l.Period.Unit, start: start}, app, *l)
		w.demand.Add(1)
		// The peers' usage first: usage the limiter counts meanwhile then
		// makes the check stricter, never laxer.
		peers := w.peers.Load()
		share := max(s.share(w), 0)
		limit := share + peers
		if peers > math.MaxInt64-share {
			limit = math.MaxInt64
		}
		l.Max = min(l.Max, limit)
	}
	return dst, e
}

// Done ends a decision Cap began.
func (s *Shares) Done(token uint32) { s.inflight[token&1].Add(-1) }

// addPeer adds the usage of a peer's event, counted already toward app's
// global limits, to the windows of app's strict limits it falls in. Sets
// ("#N") are not usage and are not added.
func (s *Shares) addPeer(app *catalog.App, ev *event.Event) {
	svc := app.Service
	at := time.UnixMilli(ev.TS)
	plan := app.Plan()
	if plan == nil {
		return
	}
	for _, i := range plan.Strict {
		if i >= len(plan.Limits) {
			continue
		}
		l := plan.Limits[i]
		var delta int64
		for _, u := range ev.Usage {
			m, ok := svc.MetricIndex[u.Metric]
			if !ok || u.Set || u.Value <= 0 || !descends(svc.Parents, m, l.Metric) {
				continue
			}
			delta = min(delta, math.MaxInt64-u.Value) + u.Value // saturating
		}
		if delta == 0 {
			continue
		}
		start, _ := limiter.WindowBounds(l.Period, at)
		w := s.window(shareKey{app: app.Key, metric: l.Metric, unit: l.Period.Unit, start: start}, app, l)
		addSaturating(&w.peers, delta)
	}
}

// addSaturating adds delta (> 0) to c, stopping at the largest int64; the
// tails of several peers may add to one window at once.
func addSaturating(c *atomic.Int64, delta int64) {
	for {
		v := c.Load()
		if c.CompareAndSwap(v, v+min(delta, math.MaxInt64-v)) {
			return
		}
	}
}

// descends reports whether metric m is limit or one of its descendants.
func descends(parents []limiter.MetricID, m, limit limiter.MetricID) bool {
	for range len(parents) + 1 {
		if m == limit {
			return true
		}
		if int(m) >= len(parents) || parents[m] == limiter.NoParent {
			return false
		}
		m = parents[m]
	}
	return false
}

// Sweep drops the windows that ended before now.
func (s *Shares) Sweep(now time.Time) {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k := range sh.m {
			if k.unit == limiter.Eternity {
				continue
			}
			if _, end := limiter.CalendarBounds(k.unit, k.start); end <= now.Unix() {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}
