package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/limiter"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestMark(t *testing.T) {
	for _, c := range []struct {
		name string
		max  int64
		pct  uint16
		want int64
		ok   bool
	}{
		{"half of ten", 10, 50, 5, true},
		{"rounds up", 3, 50, 2, true},
		{"one unit at 50 %", 1, 50, 1, true},
		{"80 % of 10", 10, 80, 8, true},
		{"120 % of 10", 10, 120, 12, true},
		{"300 % of 7", 7, 300, 21, true},
		{"all of the largest max", math.MaxInt64, 100, math.MaxInt64, true},
		{"half of the largest max", math.MaxInt64, 50, math.MaxInt64/2 + 1, true},
		{"past the largest int64", math.MaxInt64, 101, 0, false},
		{"large max times 300", math.MaxInt64 / 2, 300, 0, false},
		{"max 0 is a disabled metric", 0, 50, 0, false},
		{"negative max", -5, 50, 0, false},
		{"no threshold", 10, 0, 0, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := Mark(c.max, c.pct)
			if got != c.want || ok != c.ok {
				t.Fatalf("Mark(%d, %d) = %d, %v; want %d, %v", c.max, c.pct, got, ok, c.want, c.ok)
			}
		})
	}
}

// TestMarkAgainstDivision checks Mark against the definition, value*100 >=
// max*pct, over small values.
func TestMarkAgainstDivision(t *testing.T) {
	for max := int64(1); max <= 300; max++ {
		for _, pct := range []uint16{1, 33, 50, 80, 99, 100, 101, 150, 300, 10000} {
			m, ok := Mark(max, pct)
			if !ok || m*100 < max*int64(pct) || (m-1)*100 >= max*int64(pct) {
				t.Fatalf("Mark(%d, %d) = %d, %v: not the least value reaching %d %%", max, pct, m, ok, pct)
			}
		}
	}
}

func TestCrossed(t *testing.T) {
	th := catalog.DefaultAlertThresholds
	if lo, hi := Crossed(nil, 100, 0, 100); lo != hi {
		t.Fatalf("no thresholds: crossed [%d, %d)", lo, hi)
	}
	for _, c := range []struct {
		name          string
		max           int64
		before, after int64
		want          []uint16
	}{
		{"below every mark", 100, 0, 49, nil},
		{"onto the first mark", 100, 49, 50, []uint16{50}},
		{"already past it", 100, 50, 79, nil},
		{"several at once", 100, 10, 120, []uint16{50, 80, 90, 100, 120}},
		{"to the last", 100, 200, 300, []uint16{300}},
		{"past the last", 100, 300, 1000, nil},
		{"no growth", 100, 80, 80, nil},
		{"a set that lowered the counter", 100, 95, 10, nil},
		{"max 0", 0, 0, 5, nil},
		{"small max", 1, 0, 3, []uint16{50, 80, 90, 100, 120, 150, 200, 300}},
		{"a huge max", math.MaxInt64, 0, math.MaxInt64, []uint16{50, 80, 90, 100}},
		{"from the middle", 100, 85, 95, []uint16{90}},
		{"onto a mark from just below", 100, 119, 120, []uint16{120}},
	} {
		t.Run(c.name, func(t *testing.T) {
			lo, hi := Crossed(th, c.max, c.before, c.after)
			got := th[lo:hi]
			if len(got) == 0 {
				got = nil
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("crossed %v, want %v", got, c.want)
			}
		})
	}
}

// testService is a service of tenant acme with metrics hits and search.
func testService(t *testing.T, thresholds ...int64) *catalog.Service {
	t.Helper()
	doc := &catalog.Document{Tenants: []catalog.TenantSpec{{
		ID: "acme", AdminToken: "adm-alerts-test-0001",
		Services: []catalog.ServiceSpec{{
			ID: "svc", Tokens: []string{"st-alerts-test-0001"},
			Metrics:         []catalog.MetricSpec{{Name: "hits"}, {Name: "search", Parent: "hits"}},
			Plans:           []catalog.PlanSpec{{ID: "p", Limits: []catalog.LimitSpec{{Metric: "hits", Period: "minute", Max: 10}, {Metric: "search", Period: "sliding:1m", Max: 10}, {Metric: "hits", Period: "eternity", Max: 10}}}},
			Applications:    []catalog.AppSpec{{ID: "app1", Plan: "p", UserKey: "uk-alerts-test-01"}},
			AlertThresholds: thresholds,
		}},
	}}}
	snap, err := catalog.Build(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return snap.Services["svc"]
}

// queued drains d's queue.
func queued(d *Detector) []pending {
	var out []pending
	for {
		select {
		case p := <-d.q:
			out = append(out, p)
		default:
			return out
		}
	}
}

func TestObserveReports(t *testing.T) {
	svc := testService(t, 50, 100)
	app := svc.App("app1")
	lims := app.Plan().Limits
	now := time.Date(2026, 12, 4, 10, 11, 12, 0, time.UTC)
	d := &Detector{o: DetectorOptions{Clock: func() time.Time { return now }, Node: "n1"}, q: make(chan pending, 8)}
	start := now.Truncate(time.Minute).Unix()
	reports := []limiter.Report{
		{Limit: lims[0], Start: start, Before: 4, Current: 5},       // hits/minute: 50 %
		{Limit: lims[1], Start: start - 60, Before: 4, Current: 10}, // sliding: never
		{Limit: lims[2], Start: 0, Before: 9, Current: 10},          // eternity: 100 %
	}
	d.ObserveReports(svc, app, reports)
	got := queued(d)
	if len(got) != 2 || got[0].pct != 50 || got[0].lim.Period.Unit != limiter.Minute || got[1].pct != 100 || got[1].lim.Period.Unit != limiter.Eternity {
		t.Fatalf("queued %+v, want minute@50 and eternity@100", got)
	}
	a := alertOf(&got[0], "n1")
	if a.ID != KeyOf("acme", "svc", "app1", "hits", "minute", start, 50) || a.Value != 5 || a.Max != 10 || a.WindowEnd.Unix() != start+60 || !a.Time.Equal(now) {
		t.Fatalf("alert %+v", a)
	}
	if e := alertOf(&got[1], "n1"); !e.WindowEnd.IsZero() || e.WindowStart.Unix() != 0 {
		t.Fatalf("eternity alert has a window end: %+v", e)
	}

	// Nothing moves below the lowest mark, and a full queue drops and counts.
	d.ObserveReports(svc, app, []limiter.Report{{Limit: lims[0], Start: start, Before: 1, Current: 4}})
	if got := queued(d); len(got) != 0 {
		t.Fatalf("queued %+v below every mark", got)
	}
	small := &Detector{o: d.o, q: make(chan pending, 1)}
	small.ObserveChanges(svc, app, lims, []limiter.Change{{Limit: 0, Start: start, Before: 0, After: 10}})
	if len(queued(small)) != 1 || small.dropped.Load() != 1 || small.seen.Load() != 2 {
		t.Fatalf("full queue: seen %d dropped %d", small.seen.Load(), small.dropped.Load())
	}
	// A change naming a limit the plan does not have is ignored.
	d.ObserveChanges(svc, app, lims, []limiter.Change{{Limit: 7, Before: 0, After: 10}})
	if got := queued(d); len(got) != 0 {
		t.Fatalf("queued %+v for an unknown limit", got)
	}
}

// TestObserveDoesNotAllocate: the detector is on the authrep hot path.
func TestObserveDoesNotAllocate(t *testing.T) {
	svc := testService(t)
	app := svc.App("app1")
	d := &Detector{o: DetectorOptions{Clock: time.Now}, q: make(chan pending, 1)}
	reports := []limiter.Report{{Limit: app.Plan().Limits[0], Before: 4, Current: 5}, {Limit: app.Plan().Limits[2], Before: 1, Current: 2}}
	allocs := testing.AllocsPerRun(1000, func() {
		d.ObserveReports(svc, app, reports)
		select {
		case <-d.q:
		default:
		}
	})
	if allocs != 0 {
		t.Fatalf("ObserveReports allocates %v times per call", allocs)
	}
}

// TestAlertGolden pins the alert's JSON form, its id and its signature:
// receivers and the query API read them.
func TestAlertGolden(t *testing.T) {
	start := time.Date(2025, 12, 4, 0, 0, 0, 0, time.UTC).Unix()
	a := Alert{
		ID: KeyOf("acme", "svc", "app1", "hits", "minute", start, 80), TenantID: "acme", ServiceID: "svc", AppID: "app1",
		Metric: "hits", Period: "minute", WindowStart: time.Unix(start, 0).UTC(), WindowEnd: time.Unix(start+60, 0).UTC(),
		Threshold: 80, Value: 8, Max: 10, Time: time.Date(2025, 12, 4, 0, 0, 31, 250e6, time.UTC), Node: "api-1",
	}
	// The id computed independently (Python's hashlib over the same fields).
	if a.ID != "40868110bdcf40ba86df6a61c145946e" {
		t.Fatalf("KeyOf = %s", a.ID)
	}
	body, err := json.Marshal(&a)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "alert.json")
	if *update {
		if err := os.WriteFile(golden, append(body, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(body)+"\n" != string(want) {
		t.Fatalf("alert JSON\n got %s\nwant %s", body, want)
	}
	back, err := Decode(body)
	if err != nil || *back != a {
		t.Fatalf("Decode = %+v, %v", back, err)
	}
	// A tampered alert (a field changed, the id kept) is refused.
	tampered := strings.Replace(string(body), `"threshold":80`, `"threshold":90`, 1)
	if _, err := Decode([]byte(tampered)); err == nil {
		t.Fatal("Decode accepted an alert whose id is not its key")
	}
}

func TestSignature(t *testing.T) {
	secret, body := []byte("whsec-0123456789abcdef"), []byte(`{"id":"x"}`)
	// Computed independently with Python's hmac module.
	const want = "sha256=7e4cf357730683f905ad63ead74bb981f3043c0aee9b731ca36c6e3d4d98285e"
	if got := Sign(secret, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	for _, c := range []struct {
		name   string
		secret string
		body   string
		header string
		ok     bool
	}{
		{"valid", string(secret), string(body), want, true},
		{"other secret", "whsec-ffffffffffffffff", string(body), want, false},
		{"other body", string(secret), `{"id":"y"}`, want, false},
		{"no prefix", string(secret), string(body), strings.TrimPrefix(want, "sha256="), false},
		{"empty", string(secret), string(body), "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Verify([]byte(c.secret), []byte(c.body), c.header); got != c.ok {
				t.Fatalf("Verify = %v, want %v", got, c.ok)
			}
		})
	}
}

// hookServer answers each POST with the next status of script (the last
// one repeated) and records the requests.
type hookServer struct {
	mu     sync.Mutex
	script []int
	calls  []http.Header
}

func (h *hookServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, r.Header.Clone())
	st := h.script[min(len(h.calls), len(h.script))-1]
	if st == http.StatusFound {
		w.Header().Set("Location", "http://elsewhere.invalid/")
	}
	w.WriteHeader(st)
}

func TestDeliver(t *testing.T) {
	fast := Retry{Attempts: 4, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Timeout: 5 * time.Second}
	for _, c := range []struct {
		name     string
		script   []int
		attempts int
		ok       bool
	}{
		{"first try", []int{200}, 1, true},
		{"after two refusals", []int{503, 500, 204}, 3, true},
		{"rate limited then accepted", []int{429, 408, 200}, 3, true},
		{"always down", []int{503}, 4, false},
		{"a client error is final", []int{400}, 1, false},
		{"a redirect is not followed", []int{302}, 1, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := &hookServer{script: c.script}
			srv := httptest.NewServer(h)
			defer srv.Close()
			target := srv.URL + "/hook/tok-in-path?token=tok-in-query"
			body := []byte(`{"id":"abc"}`)
			n, err := deliver(context.Background(), newClient(), fast, target, "whsec-0123456789abcdef", "abc", body)
			if n != c.attempts || (err == nil) != c.ok {
				t.Fatalf("deliver = %d attempts, %v; want %d, ok %v", n, err, c.attempts, c.ok)
			}
			if err != nil && (strings.Contains(err.Error(), "tok-in") || strings.Contains(err.Error(), "whsec")) {
				t.Fatalf("error names the URL's path or query or the secret: %v", err)
			}
			if len(h.calls) != c.attempts {
				t.Fatalf("server saw %d calls, want %d", len(h.calls), c.attempts)
			}
			for i, hd := range h.calls {
				if hd.Get(SignatureHeader) != Sign([]byte("whsec-0123456789abcdef"), body) || hd.Get(IDHeader) != "abc" ||
					hd.Get(AttemptHeader) != string(rune('1'+i)) || hd.Get("Content-Type") != "application/json" {
					t.Fatalf("call %d headers %v", i, hd)
				}
			}
		})
	}
}

func TestDeliverStopsWithContext(t *testing.T) {
	h := &hookServer{script: []int{503}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	slow := Retry{Attempts: 100, Backoff: time.Second, MaxBackoff: time.Second, Timeout: time.Second}
	start := time.Now()
	_, err := deliver(ctx, newClient(), slow, srv.URL, "whsec-0123456789abcdef", "abc", []byte("{}"))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 900*time.Millisecond {
		t.Fatalf("deliver = %v after %v; want the context's end at once", err, time.Since(start))
	}
}

// TestCrossedAgainstDefinition compares Crossed with the definition, a
// threshold pct is crossed when before*100 < max*pct <= after*100, over
// random small counters.
func TestCrossedAgainstDefinition(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	th := []uint16{1, 33, 50, 80, 100, 101, 150, 300, 10000}
	for range 20000 {
		max := r.Int64N(500)
		before := r.Int64N(2000)
		after := before + r.Int64N(2000) - 200
		lo, hi := Crossed(th, max, before, after)
		for i, pct := range th {
			want := max > 0 && before*100 < max*int64(pct) && max*int64(pct) <= after*100
			if got := i >= lo && i < hi; got != want {
				t.Fatalf("max %d %d -> %d, %d %%: crossed %v, want %v", max, before, after, pct, got, want)
			}
		}
	}
}
