package rollup

import (
	"math"
	"unsafe"

	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
)

// Hierarchy tells the rollup a metric's ancestors, from the configuration in
// force when the rollup runs (the integrator implements it over the catalog).
// Ancestors calls fn for the parent, the grandparent and so on, nearest
// first; nothing for a root or unknown metric. It must be safe for concurrent
// use and should not allocate.
type Hierarchy interface {
	Ancestors(tenant, service, metric string, fn func(parent string))
}

// NoHierarchy is a Hierarchy where every metric is a root.
type NoHierarchy struct{}

// Ancestors calls nothing.
func (NoHierarchy) Ancestors(string, string, string, func(string)) {}

// MapHierarchy is a static Hierarchy: child metric name -> parent metric name,
// the same for every tenant and service. Handy in tests and tools.
type MapHierarchy map[string]string

// Ancestors walks the map up to a root (stops after 16 steps on a cycle).
func (m MapHierarchy) Ancestors(_, _, metric string, fn func(string)) {
	for i := 0; i < 16; i++ {
		p, ok := m[metric]
		if !ok || p == "" {
			return
		}
		fn(p)
		metric = p
	}
}

// aggKey is one rollup row's key at any grain; t is the bucket start in unix
// seconds.
type aggKey struct {
	tenant, service, app, plan, metric, reason, region string
	code                                               int16
	t                                                  int64
}

// setRow is one "#N" usage.
type setRow struct {
	tenant, service, app, plan, metric string
	tsMS, value                        int64
	kp                                 int32
	ko                                 int64
}

// aggregator folds decoded events into minute rows, set rows and (optionally)
// raw rows. It is reused across batches.
type aggregator struct {
	hier    Hierarchy
	raw     bool
	minute  map[aggKey]int64
	sets    []setRow
	rawCols rawColumns
	clamped uint64 // events whose usage time was out of DateTime's range

	// total is the batch's usage so far, while it fits in an int64: until
	// then no row can pass MaxInt64 (a row sums distinct entries, each
	// counted once per row), so adds need no check. wide is set when it
	// would not; from then on every add saturates.
	total     int64
	wide      bool
	negative  uint64 // usage entries below zero, dropped
	saturated uint64 // adds that would have taken a row past MaxInt64

	// scratch for the hierarchy callback, so it does not allocate
	cur   aggKey
	value int64
	addFn func(string)
}

func newAggregator(h Hierarchy, raw bool) *aggregator {
	if h == nil {
		h = NoHierarchy{}
	}
	a := &aggregator{hier: h, raw: raw, minute: make(map[aggKey]int64, 4096)}
	a.addFn = a.addParent
	return a
}

func (a *aggregator) reset() {
	a.clamped = 0
	a.total, a.wide, a.negative, a.saturated = 0, false, 0, 0
	clear(a.minute)
	a.sets = a.sets[:0]
	a.rawCols.reset()
}

func (a *aggregator) addParent(parent string) {
	k := a.cur
	k.metric = parent
	a.addRow(k, a.value)
}

// count notes that an entry of value v (>= 0) is about to be added to rows.
func (a *aggregator) count(v int64) {
	if v > math.MaxInt64-a.total {
		a.wide = true
		return
	}
	a.total += v
}

// addRow adds v (>= 0) to the minute row k. Rows never wrap: past MaxInt64
// a row stays at MaxInt64, which readers present as "at least that" (see
// chschema.SaturatingSum).
func (a *aggregator) addRow(k aggKey, v int64) {
	if !a.wide {
		a.minute[k] += v
		return
	}
	s, ok := addSat(a.minute[k], v)
	if !ok {
		a.saturated++
	}
	a.minute[k] = s
}

// addSat returns s+v (both >= 0), or MaxInt64 and false if that passes it.
func addSat(s, v int64) (int64, bool) {
	if v > math.MaxInt64-s {
		return math.MaxInt64, false
	}
	return s + v, true
}

func floorDiv(x, d int64) int64 {
	q := x / d
	if x%d != 0 && x < 0 {
		q--
	}
	return q
}

// maxDateTimeMS is the last millisecond a ClickHouse DateTime can hold.
const maxDateTimeMS = (1<<32 - 1) * 1000

// usageTime returns the event's usage time, or its receive time when the
// usage time cannot be stored in a DateTime (before 1970 or after 2106): an
// event ClickHouse cannot store would otherwise fail its batch forever.
func usageTime(e *event.Event) (ms int64, clamped bool) {
	if e.TS >= 0 && e.TS <= maxDateTimeMS {
		return e.TS, false
	}
	if e.Received >= 0 && e.Received <= maxDateTimeMS {
		return e.Received, true
	}
	return 0, true
}

// add folds one event read from Kafka partition kp at offset ko.
func (a *aggregator) add(e *event.Event, kp int32, ko int64) {
	ts, clamped := usageTime(e)
	if clamped {
		a.clamped++
		e.TS = ts
	}
	minute := floorDiv(ts, 60_000) * 60
	if a.raw {
		a.rawCols.add(e, kp, ko)
	}
	k := aggKey{tenant: e.TenantID, service: e.ServiceID, app: e.AppID, plan: e.PlanID,
		region: e.Region, code: e.Code, t: minute}
	if e.Kind == event.KindDenied {
		k.reason = e.Reason
		a.count(1)
		a.addRow(k, 1)
		return
	}
	for i := range e.Usage {
		u := &e.Usage[i]
		if u.Value < 0 {
			// The API never accepts one; only a foreign or broken producer
			// can write it. Usage is never negative: drop it (logged).
			a.negative++
			continue
		}
		if u.Set {
			a.sets = append(a.sets, setRow{e.TenantID, e.ServiceID, e.AppID, e.PlanID, u.Metric, e.TS, u.Value, kp, ko})
			continue
		}
		k.metric = u.Metric
		a.count(u.Value)
		a.addRow(k, u.Value)
		if u.Flat {
			// The caller already counted it in the ancestors.
			continue
		}
		a.cur, a.value = k, u.Value
		a.hier.Ancestors(e.TenantID, e.ServiceID, u.Metric, a.addFn)
	}
}

// grain truncates a minute bucket to a coarser one.
type grain func(minute int64) int64

func hourOf(t int64) int64  { return windowStart(limiter.Hour, t) }
func dayOf(t int64) int64   { return windowStart(limiter.Day, t) }
func monthOf(t int64) int64 { return windowStart(limiter.Month, t) }

func windowStart(u limiter.Unit, t int64) int64 {
	s, _ := limiter.CalendarBounds(u, t)
	return s
}

// regrain folds minute rows into dst at a coarser grain. Unless wide (the
// batch's usage passed MaxInt64; see aggregator.total) no coarser row can
// pass MaxInt64 either; if wide, rows saturate there, and regrain returns
// how many adds did.
func regrain(dst, minute map[aggKey]int64, g grain, wide bool) (saturated uint64) {
	clear(dst)
	for k, v := range minute {
		k.t = g(k.t)
		if !wide {
			dst[k] += v
			continue
		}
		s, ok := addSat(dst[k], v)
		if !ok {
			saturated++
		}
		dst[k] = s
	}
	return saturated
}

// rawColumns are events_raw's columns, built column by column so the insert
// does not go through reflection per row.
type rawColumns struct {
	t, tsMS, receivedMS []int64
	id                  []string
	kind                []uint8
	tenant, service     []string
	app, plan           []string
	metrics             [][]string
	values              [][]int64
	sets                [][]uint8
	code                []int16
	reason, region      []string
	node                []string
	kp                  []int32
	ko                  []int64

	// Arenas the per-row slices and ids point into, reused across batches
	// (rows are only read by the insert of the batch that built them).
	idBuf     []byte
	metricBuf []string
	valueBuf  []int64
	setBuf    []uint8
}

func (c *rawColumns) reset() {
	c.t, c.tsMS, c.receivedMS = c.t[:0], c.tsMS[:0], c.receivedMS[:0]
	c.id, c.kind = c.id[:0], c.kind[:0]
	c.tenant, c.service, c.app, c.plan = c.tenant[:0], c.service[:0], c.app[:0], c.plan[:0]
	c.metrics, c.values, c.sets = c.metrics[:0], c.values[:0], c.sets[:0]
	c.code, c.reason, c.region, c.node = c.code[:0], c.reason[:0], c.region[:0], c.node[:0]
	c.kp, c.ko = c.kp[:0], c.ko[:0]
	c.idBuf, c.metricBuf, c.valueBuf, c.setBuf = c.idBuf[:0], c.metricBuf[:0], c.valueBuf[:0], c.setBuf[:0]
}

// arenaID returns the id as a string backed by the arena. When the arena
// grows, earlier strings keep the old array alive, so they stay valid.
func (c *rawColumns) arenaID(id [16]byte) string {
	if cap(c.idBuf)-len(c.idBuf) < 16 {
		c.idBuf = make([]byte, 0, max(2*cap(c.idBuf), 16<<10))
	}
	n := len(c.idBuf)
	c.idBuf = append(c.idBuf, id[:]...)
	return unsafe.String(&c.idBuf[n], 16)
}

func (c *rawColumns) len() int { return len(c.ko) }

func (c *rawColumns) add(e *event.Event, kp int32, ko int64) {
	c.t = append(c.t, floorDiv(e.TS, 1000))
	c.tsMS = append(c.tsMS, e.TS)
	c.receivedMS = append(c.receivedMS, e.Received)
	c.id = append(c.id, c.arenaID(e.ID))
	c.kind = append(c.kind, uint8(e.Kind))
	c.tenant = append(c.tenant, e.TenantID)
	c.service = append(c.service, e.ServiceID)
	c.app = append(c.app, e.AppID)
	c.plan = append(c.plan, e.PlanID)
	m0, v0, s0 := len(c.metricBuf), len(c.valueBuf), len(c.setBuf)
	for _, u := range e.Usage {
		c.metricBuf = append(c.metricBuf, u.Metric)
		c.valueBuf = append(c.valueBuf, u.Value)
		var set uint8
		if u.Set {
			set = 1
		}
		c.setBuf = append(c.setBuf, set)
	}
	c.metrics = append(c.metrics, c.metricBuf[m0:len(c.metricBuf):len(c.metricBuf)])
	c.values = append(c.values, c.valueBuf[v0:len(c.valueBuf):len(c.valueBuf)])
	c.sets = append(c.sets, c.setBuf[s0:len(c.setBuf):len(c.setBuf)])
	c.code = append(c.code, e.Code)
	c.reason = append(c.reason, e.Reason)
	c.region = append(c.region, e.Region)
	c.node = append(c.node, e.Node)
	c.kp = append(c.kp, kp)
	c.ko = append(c.ko, ko)
}
