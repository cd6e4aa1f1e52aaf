package limiter

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks model the target: authrep calls touching three
// limits (minute, month, sliding:1m) of 1,000,000 applications picked at
// random, so that nearly every call misses the CPU caches like production.
const (
	benchApps  = 1_000_000
	benchPicks = 1 << 21 // pre-generated random app choices, cycled
)

var benchLimits = []Limit{
	{Metric: 0, Period: Period{Unit: Minute}, Max: 1 << 50},
	{Metric: 0, Period: Period{Unit: Month}, Max: 1 << 50},
	{Metric: 0, Period: Period{Unit: Sliding, Window: time.Minute}, Max: 1 << 50},
}

var benchParents = []MetricID{NoParent, 0}

type benchFixture struct {
	l     *Limiter
	picks []AppKey
}

var (
	fixtureOnce, hugeOnce sync.Once
	fixture, hugeFixture  benchFixture
)

// populate makes every app of [0, n) active with one authrep.
func populate(l *Limiter, n int) {
	req := Request{Limits: benchLimits, Parents: benchParents, Usage: []Usage{{Metric: 1, Value: 1}}, Mode: ModeAuthRep}
	d := Decision{Reports: make([]Report, 0, 8)}
	for i := range n {
		req.App = AppKey(i)
		l.Do(&req, &d)
	}
}

func benchSetup() *benchFixture {
	fixtureOnce.Do(func() { fixture = newFixture(Options{}) })
	return &fixture
}

func newFixture(opts Options) benchFixture {
	f := benchFixture{l: New(opts)}
	populate(f.l, benchApps)
	r := rand.New(rand.NewPCG(1, 2))
	f.picks = make([]AppKey, benchPicks)
	for i := range f.picks {
		f.picks[i] = AppKey(r.IntN(benchApps))
	}
	return f
}

func BenchmarkCheckAndIncrement(b *testing.B) {
	f := benchSetup()
	b.ReportAllocs()
	req := Request{Limits: benchLimits, Parents: benchParents, Usage: []Usage{{Metric: 0, Value: 1}}, Mode: ModeAuthRep}
	d := Decision{Reports: make([]Report, 0, 8)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.App = f.picks[i&(benchPicks-1)]
		f.l.Do(&req, &d)
	}
	if !d.Allowed {
		b.Fatal("denied")
	}
}

func BenchmarkCheckAndIncrementParallel(b *testing.B) {
	f := benchSetup()
	b.ReportAllocs()
	var goroutines atomic.Uint64
	before := f.l.Stats().Contended
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := Request{Limits: benchLimits, Parents: benchParents, Usage: []Usage{{Metric: 0, Value: 1}}, Mode: ModeAuthRep}
		d := Decision{Reports: make([]Report, 0, 8)}
		i := goroutines.Add(1) * 104729 // each goroutine walks its own stretch of picks
		for pb.Next() {
			req.App = f.picks[i&(benchPicks-1)]
			f.l.Do(&req, &d)
			i++
		}
	})
	b.ReportMetric(float64(f.l.Stats().Contended-before)/float64(b.N), "waits/op")
}

func BenchmarkMemoryPerApp(b *testing.B) {
	b.ReportAllocs()
	var perApp float64
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := New(Options{})
		populate(l, benchApps)
		runtime.GC()
		runtime.ReadMemStats(&after)
		if got := l.Stats().Apps; got != benchApps {
			b.Fatalf("%d apps active, want %d", got, benchApps)
		}
		perApp = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / benchApps
		runtime.KeepAlive(l)
	}
	b.ReportMetric(perApp, "bytes/app")
}

func BenchmarkCalBounds(b *testing.B) {
	sec := time.Date(2026, 5, 15, 10, 30, 20, 0, time.UTC).Unix()
	var sink int64
	for i := 0; i < b.N; i++ {
		s, e := calBounds(Month, sec+int64(i))
		sink += s + e
	}
	_ = sink
}

// BenchmarkCheckAndIncrementCoarseClock is BenchmarkCheckAndIncrement with
// a CoarseClock instead of time.Now: the cost of reading the clock.
func BenchmarkCheckAndIncrementCoarseClock(b *testing.B) {
	f := benchSetup()
	c := NewCoarseClock(time.Millisecond)
	defer c.Stop()
	f.l.clock = c.Now
	defer func() { f.l.clock = time.Now }()
	b.ReportAllocs()
	req := Request{Limits: benchLimits, Parents: benchParents, Usage: []Usage{{Metric: 0, Value: 1}}, Mode: ModeAuthRep}
	d := Decision{Reports: make([]Report, 0, 8)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.App = f.picks[i&(benchPicks-1)]
		f.l.Do(&req, &d)
	}
}

// BenchmarkCheckAndIncrementOneApp is the same call on one app, whose
// record stays in the CPU cache: the cost of the computation alone.
func BenchmarkCheckAndIncrementOneApp(b *testing.B) {
	l := New(Options{})
	b.ReportAllocs()
	req := Request{App: 1, Limits: benchLimits, Parents: benchParents, Usage: []Usage{{Metric: 0, Value: 1}}, Mode: ModeAuthRep}
	d := Decision{Reports: make([]Report, 0, 8)}
	for i := 0; i < b.N; i++ {
		l.Do(&req, &d)
	}
}

var floorSink uint64

// BenchmarkLookupFloor measures the least any call must do over the same
// 1,000,000 apps: hash, lock, find the app's record and read both its cache
// lines, unlock. It is the memory-latency floor under the benchmarks above;
// WithClock adds one time.Now per call.
func BenchmarkLookupFloor(b *testing.B) {
	for _, withClock := range []bool{false, true} {
		name := "NoClock"
		if withClock {
			name = "WithClock"
		}
		b.Run(name, func(b *testing.B) {
			f := benchSetup()
			b.ReportAllocs()
			b.ResetTimer()
			var s uint64
			for i := 0; i < b.N; i++ {
				k := f.picks[i&(benchPicks-1)]
				if withClock {
					s += uint64(time.Now().UnixNano())
				}
				h := hashKey(k)
				sh := &f.l.shards[h&f.l.mask]
				sh.lock()
				a := sh.get(k, h)
				s += a.w[inlineWords-1] + a.w[0]
				sh.mu.Unlock()
			}
			floorSink = s
		})
	}
}

// BenchmarkCheckAndIncrementHugePages is BenchmarkCheckAndIncrement with
// Options.HugePages.
func BenchmarkCheckAndIncrementHugePages(b *testing.B) {
	hugeOnce.Do(func() { hugeFixture = newFixture(Options{HugePages: true}) })
	f := &hugeFixture
	b.ReportAllocs()
	req := Request{Limits: benchLimits, Parents: benchParents, Usage: []Usage{{Metric: 0, Value: 1}}, Mode: ModeAuthRep}
	d := Decision{Reports: make([]Report, 0, 8)}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.App = f.picks[i&(benchPicks-1)]
		f.l.Do(&req, &d)
	}
}

// BenchmarkRecordOneApp is Record as batch reports call it, once per
// transaction, on one app whose record stays in the CPU cache: the same
// limits and usage as BenchmarkCheckAndIncrementOneApp, dated a second ago.
func BenchmarkRecordOneApp(b *testing.B) {
	l := New(Options{})
	b.ReportAllocs()
	usage := []Usage{{Metric: 0, Value: 1}}
	var at time.Time
	changes := make([]Change, 0, 8)
	for i := 0; i < b.N; i++ {
		if i%1024 == 0 {
			at = time.Now().Add(-time.Second)
		}
		changes = changes[:0]
		if err := l.RecordChanges(1, benchLimits, benchParents, usage, false, at, &changes); err != nil {
			b.Fatal(err)
		}
	}
}
