package metrics

import (
	"bytes"
	"sync"
	"testing"
)

func TestWritePrometheus(t *testing.T) {
	r := NewRegistry()
	a := r.Counter("req_total", "Requests by endpoint.", "endpoint", "authrep", "outcome", "ok")
	b := r.Counter("req_total", "Requests by endpoint.", "endpoint", "report", "outcome", "ok")
	g := r.Gauge("active", "Active things.")
	r.GaugeFunc("answer", "Computed at scrape.", func() float64 { return 42 })
	r.CounterFunc("ext_total", "Kept elsewhere.", func() uint64 { return 7 }, "k", "v")
	h := r.Histogram("lat_seconds", "Latency.", []float64{0.001, 0.01}, "endpoint", "x\"y")
	a.Inc()
	a.Add(2)
	b.Inc()
	g.Set(1.5)
	g.Add(-0.5)
	h.Observe(0.0005)
	h.Observe(0.005)
	h.Observe(5)

	var buf bytes.Buffer
	if err := r.WritePrometheus(&buf); err != nil {
		t.Fatal(err)
	}
	want := `# HELP req_total Requests by endpoint.
# TYPE req_total counter
req_total{endpoint="authrep",outcome="ok"} 3
req_total{endpoint="report",outcome="ok"} 1
# HELP active Active things.
# TYPE active gauge
active 1
# HELP answer Computed at scrape.
# TYPE answer gauge
answer 42
# HELP ext_total Kept elsewhere.
# TYPE ext_total counter
ext_total{k="v"} 7
# HELP lat_seconds Latency.
# TYPE lat_seconds histogram
lat_seconds_bucket{endpoint="x\"y",le="0.001"} 1
lat_seconds_bucket{endpoint="x\"y",le="0.01"} 2
lat_seconds_bucket{endpoint="x\"y",le="+Inf"} 3
lat_seconds_sum{endpoint="x\"y"} 5.0055
lat_seconds_count{endpoint="x\"y"} 3
`
	if got := buf.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestTypeClashPanics(t *testing.T) {
	r := NewRegistry()
	r.Counter("x", "")
	defer func() {
		if recover() == nil {
			t.Fatal("registering x as a gauge after a counter did not panic")
		}
	}()
	r.Gauge("x", "")
}

func TestConcurrentUpdates(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c", "")
	h := r.Histogram("h", "", DefaultLatencyBuckets)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				c.Inc()
				h.Observe(0.001)
			}
		}()
	}
	wg.Wait()
	if c.Value() != 8000 || h.Count() != 8000 {
		t.Fatalf("counter %d, histogram count %d; want 8000 each", c.Value(), h.Count())
	}
}

func TestUpdatesDoNotAllocate(t *testing.T) {
	r := NewRegistry()
	c := r.Counter("c", "")
	g := r.Gauge("g", "")
	h := r.Histogram("h", "", DefaultLatencyBuckets)
	n := testing.AllocsPerRun(100, func() {
		c.Inc()
		g.Add(1)
		h.Observe(0.0003)
	})
	if n != 0 {
		t.Fatalf("updates allocate %v times per run", n)
	}
}
