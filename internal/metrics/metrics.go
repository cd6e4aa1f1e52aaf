// Package metrics is a tiny Prometheus text-format registry: counters,
// gauges and fixed-bucket histograms whose updates are single atomic
// operations that never allocate, so hot paths can count freely.
//
// Labels are fixed when a series is registered: a caller registers one
// series per label combination it will ever use (requests{endpoint="authrep",
// outcome="authorized"}, ...) and keeps the returned pointer. There is no
// label lookup at update time, which is what keeps updates free of maps,
// locks and allocation. Registration and scraping take a mutex; updates never do.
//
// The output follows the Prometheus text exposition format 0.0.4: one HELP
// and TYPE line per family, then its series in registration order.
package metrics

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds metric families and writes them in the text format. The
// zero value is not usable; call NewRegistry.
type Registry struct {
	mu       sync.Mutex
	families []*family
	byName   map[string]*family
}

type kind uint8

const (
	kindCounter kind = iota
	kindGauge
	kindHistogram
)

func (k kind) String() string {
	switch k {
	case kindCounter:
		return "counter"
	case kindGauge:
		return "gauge"
	default:
		return "histogram"
	}
}

type family struct {
	name, help string
	kind       kind
	series     []series
}

type series interface {
	// write appends the series' sample lines; name is the family name.
	write(dst []byte, name string) []byte
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byName: make(map[string]*family)}
}

// add registers s under the family name, creating the family on first use. It
// panics when a name is reused with a different type: that is a programming
// error that must surface at startup, not on a scrape.
func (r *Registry) add(name, help string, k kind, s series) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.byName[name]
	if f == nil {
		f = &family{name: name, help: help, kind: k}
		r.byName[name] = f
		r.families = append(r.families, f)
	} else if f.kind != k {
		panic("metrics: " + name + " registered as both " + f.kind.String() + " and " + k.String())
	}
	f.series = append(f.series, s)
}

// labelText renders name/value pairs as `{a="x",b="y"}` once, at registration.
func labelText(labels []string) string {
	if len(labels)%2 != 0 {
		panic("metrics: labels must be name/value pairs")
	}
	if len(labels) == 0 {
		return ""
	}
	b := []byte{'{'}
	for i := 0; i < len(labels); i += 2 {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, labels[i]...)
		b = append(b, '=', '"')
		b = appendLabelValue(b, labels[i+1])
		b = append(b, '"')
	}
	return string(append(b, '}'))
}

func appendLabelValue(dst []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '"':
			dst = append(dst, '\\', '"')
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// Counter is a monotonically increasing count.
type Counter struct {
	labels string
	v      atomic.Uint64
	fn     func() uint64
}

// Counter registers and returns a counter series with the given label
// name/value pairs.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	c := &Counter{labels: labelText(labels)}
	r.add(name, help, kindCounter, c)
	return c
}

// Inc adds one. It never allocates or blocks.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n. It never allocates or blocks.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value returns the current count.
func (c *Counter) Value() uint64 {
	if c.fn != nil {
		return c.fn()
	}
	return c.v.Load()
}

// CounterFunc registers a counter whose value is fn(), called at scrape
// time: for cumulative figures another component already keeps. fn must be
// safe for concurrent use, fast and monotonic.
func (r *Registry) CounterFunc(name, help string, fn func() uint64, labels ...string) {
	r.add(name, help, kindCounter, &Counter{labels: labelText(labels), fn: fn})
}

func (c *Counter) write(dst []byte, name string) []byte {
	v := c.v.Load()
	if c.fn != nil {
		v = c.fn()
	}
	dst = append(dst, name...)
	dst = append(dst, c.labels...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, v, 10)
	return append(dst, '\n')
}

// Gauge is a value that goes up and down.
type Gauge struct {
	labels string
	bits   atomic.Uint64 // float64 bits
	fn     func() float64
}

// Gauge registers and returns a gauge series with the given label pairs.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	g := &Gauge{labels: labelText(labels)}
	r.add(name, help, kindGauge, g)
	return g
}

// GaugeFunc registers a gauge whose value is fn(), called at scrape time. fn
// must be safe for concurrent use and fast.
func (r *Registry) GaugeFunc(name, help string, fn func() float64, labels ...string) {
	r.add(name, help, kindGauge, &Gauge{labels: labelText(labels), fn: fn})
}

// Set sets the gauge to v. It never allocates or blocks.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds d (which may be negative). It never allocates; it retries on
// contention instead of locking.
func (g *Gauge) Add(d float64) {
	for {
		old := g.bits.Load()
		if g.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Value returns the gauge's current value.
func (g *Gauge) Value() float64 {
	if g.fn != nil {
		return g.fn()
	}
	return math.Float64frombits(g.bits.Load())
}

func (g *Gauge) write(dst []byte, name string) []byte {
	dst = append(dst, name...)
	dst = append(dst, g.labels...)
	dst = append(dst, ' ')
	dst = appendFloat(dst, g.Value())
	return append(dst, '\n')
}

func appendFloat(dst []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(dst, "+Inf"...)
	case math.IsInf(v, -1):
		return append(dst, "-Inf"...)
	case math.IsNaN(v):
		return append(dst, "NaN"...)
	}
	return strconv.AppendFloat(dst, v, 'g', -1, 64)
}

// DefaultLatencyBuckets are upper bounds in seconds suited to an in-memory
// API answering in microseconds to milliseconds.
var DefaultLatencyBuckets = []float64{
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1,
}

// Histogram counts observations in fixed cumulative buckets.
type Histogram struct {
	labels  string
	bounds  []float64
	le      []string        // rendered labels per bucket, including le="..."
	counts  []atomic.Uint64 // per bucket (not cumulative); last is +Inf
	count   atomic.Uint64
	sumBits atomic.Uint64 // float64 bits
}

// Histogram registers and returns a histogram series with the given upper
// bucket bounds (ascending; +Inf is implied) and label pairs.
func (r *Registry) Histogram(name, help string, bounds []float64, labels ...string) *Histogram {
	for i := 1; i < len(bounds); i++ {
		if bounds[i] <= bounds[i-1] {
			panic("metrics: histogram " + name + " bounds not ascending")
		}
	}
	h := &Histogram{
		labels: labelText(labels),
		bounds: append([]float64(nil), bounds...),
		counts: make([]atomic.Uint64, len(bounds)+1),
	}
	for i := 0; i <= len(bounds); i++ {
		le := "+Inf"
		if i < len(bounds) {
			le = string(appendFloat(nil, bounds[i]))
		}
		h.le = append(h.le, labelText(append(append([]string(nil), labels...), "le", le)))
	}
	r.add(name, help, kindHistogram, h)
	return h
}

// Observe records v. It never allocates; the sum is updated with a
// compare-and-swap loop rather than a lock.
func (h *Histogram) Observe(v float64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.count.Add(1)
	for {
		old := h.sumBits.Load()
		if h.sumBits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// ObserveDuration records d in seconds.
func (h *Histogram) ObserveDuration(d time.Duration) { h.Observe(d.Seconds()) }

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.count.Load() }

func (h *Histogram) write(dst []byte, name string) []byte {
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		dst = append(dst, name...)
		dst = append(dst, "_bucket"...)
		dst = append(dst, h.le[i]...)
		dst = append(dst, ' ')
		dst = strconv.AppendUint(dst, cum, 10)
		dst = append(dst, '\n')
	}
	dst = append(dst, name...)
	dst = append(dst, "_sum"...)
	dst = append(dst, h.labels...)
	dst = append(dst, ' ')
	dst = appendFloat(dst, math.Float64frombits(h.sumBits.Load()))
	dst = append(dst, '\n')
	dst = append(dst, name...)
	dst = append(dst, "_count"...)
	dst = append(dst, h.labels...)
	dst = append(dst, ' ')
	// The cumulative bucket total, not h.count: a scrape racing an Observe
	// must still show _count equal to the +Inf bucket.
	dst = strconv.AppendUint(dst, cum, 10)
	return append(dst, '\n')
}

// WritePrometheus writes every family in the text exposition format.
func (r *Registry) WritePrometheus(w io.Writer) error {
	r.mu.Lock()
	fams := append([]*family(nil), r.families...)
	r.mu.Unlock()
	bw := bufio.NewWriter(w)
	var b []byte
	for _, f := range fams {
		b = b[:0]
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = appendHelp(b, f.help)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.kind.String()...)
		b = append(b, '\n')
		r.mu.Lock()
		ss := append([]series(nil), f.series...)
		r.mu.Unlock()
		for _, s := range ss {
			b = s.write(b, f.name)
		}
		if _, err := bw.Write(b); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func appendHelp(dst []byte, h string) []byte {
	for i := 0; i < len(h); i++ {
		switch c := h[i]; c {
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// ContentType is the media type of WritePrometheus's output.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"
