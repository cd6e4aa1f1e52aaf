package catalog

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/limiter"
)

// counterDoc has one service, s1, with metrics [x, hits, search (child of
// hits), y], plan basic with a day limit on each and an eternity limit on
// hits, plan gold with two of those limits in another order, and one
// application a1 on basic.
func counterDoc() *Document {
	day := func(m string) LimitSpec { return LimitSpec{Metric: m, Period: "day", Max: 1000} }
	return &Document{Tenants: []TenantSpec{{
		ID: "t1", AdminToken: "adm-t1",
		Services: []ServiceSpec{{
			ID: "s1", Tokens: []string{"st-1"}, AuthMode: ModeAppID,
			Metrics: []MetricSpec{{Name: "x"}, {Name: "hits"}, {Name: "search", Parent: "hits"}, {Name: "y"}},
			Plans: []PlanSpec{
				{ID: "basic", Limits: []LimitSpec{day("x"), day("hits"), day("search"), day("y"),
					{Metric: "hits", Period: "eternity", Max: 1000}}},
				{ID: "gold", Limits: []LimitSpec{day("y"), {Metric: "hits", Period: "eternity", Max: 1000}, day("hits")}},
			},
			Applications: []AppSpec{{ID: "a1", Plan: "basic"}},
		}},
	}}}
}

func s1(d *Document) *ServiceSpec { return &d.Tenants[0].Services[0] }

// dropMetric removes a metric and every limit on it.
func dropMetric(d *Document, name string) {
	s := s1(d)
	s.Metrics = removeFunc(s.Metrics, func(m MetricSpec) bool { return m.Name == name })
	for i := range s.Plans {
		s.Plans[i].Limits = removeFunc(s.Plans[i].Limits, func(l LimitSpec) bool { return l.Metric == name })
	}
}

func removeFunc[T any](xs []T, drop func(T) bool) []T {
	var out []T
	for _, x := range xs {
		if !drop(x) {
			out = append(out, x)
		}
	}
	return out
}

func addDayLimit(d *Document, plan, metric string) {
	p := s1(d).Plan(plan)
	p.Limits = append(p.Limits, LimitSpec{Metric: metric, Period: "day", Max: 1000})
}

// counterValues reads the app's counters through its plan, without usage,
// keyed "metric/period" by metric name.
func counterValues(t *testing.T, lim *limiter.Limiter, snap *Snapshot) map[string]int64 {
	t.Helper()
	svc := snap.Services["s1"]
	app := svc.App("a1")
	names := map[limiter.MetricID]string{}
	for n, id := range svc.MetricIndex {
		names[id] = n
	}
	var d limiter.Decision
	lim.Do(&limiter.Request{App: app.Key, Limits: app.Plan().Limits, Parents: svc.Parents, Mode: limiter.ModeAuthorize}, &d)
	out := map[string]int64{}
	for _, r := range d.Reports {
		name, ok := names[r.Limit.Metric]
		if !ok {
			t.Fatalf("plan limit on metric id %d, which the service does not have", r.Limit.Metric)
		}
		out[name+"/"+r.Limit.Period.String()] = r.Current
	}
	return out
}

// TestCountersFollowMetricIdentity: usage stays with the metric it was
// counted for, through any change of the service's metrics, its plans'
// limits or the application's plan, across rebuilds with one registry.
func TestCountersFollowMetricIdentity(t *testing.T) {
	type step struct {
		change func(d *Document) // nil: no change
		usage  map[string]int64  // authrep'd after the change
	}
	first := map[string]int64{"x": 1, "hits": 2, "search": 3, "y": 4}
	cases := []struct {
		name  string
		steps []step
		want  map[string]int64 // the plan's limits after the last step
	}{
		{
			name:  "delete the first metric",
			steps: []step{{change: func(d *Document) { dropMetric(d, "x") }}},
			want:  map[string]int64{"hits/day": 5, "search/day": 3, "y/day": 4, "hits/eternity": 5},
		},
		{
			name:  "delete a metric in the middle",
			steps: []step{{change: func(d *Document) { dropMetric(d, "search") }}},
			want:  map[string]int64{"x/day": 1, "hits/day": 5, "y/day": 4, "hits/eternity": 5},
		},
		{
			name: "reorder metrics",
			steps: []step{{change: func(d *Document) {
				s1(d).Metrics = []MetricSpec{{Name: "y"}, {Name: "search", Parent: "hits"}, {Name: "hits"}, {Name: "x"}}
			}}},
			want: map[string]int64{"x/day": 1, "hits/day": 5, "search/day": 3, "y/day": 4, "hits/eternity": 5},
		},
		{
			name: "add a metric in front",
			steps: []step{{change: func(d *Document) {
				s1(d).Metrics = append([]MetricSpec{{Name: "new"}}, s1(d).Metrics...)
				addDayLimit(d, "basic", "new")
			}}},
			want: map[string]int64{"x/day": 1, "hits/day": 5, "search/day": 3, "y/day": 4, "hits/eternity": 5, "new/day": 0},
		},
		{
			name: "rename by delete and add",
			steps: []step{{change: func(d *Document) {
				dropMetric(d, "y")
				s1(d).Metrics = append(s1(d).Metrics, MetricSpec{Name: "z"})
				addDayLimit(d, "basic", "z")
			}}},
			want: map[string]int64{"x/day": 1, "hits/day": 5, "search/day": 3, "z/day": 0, "hits/eternity": 5},
		},
		{
			name: "delete and add back the same name",
			steps: []step{
				{change: func(d *Document) { dropMetric(d, "x") }},
				{change: func(d *Document) {
					s1(d).Metrics = append(s1(d).Metrics, MetricSpec{Name: "x"})
					addDayLimit(d, "basic", "x")
				}},
			},
			// The name is the metric, as in the event log: a restart would
			// rebuild x's counters from its events too.
			want: map[string]int64{"x/day": 1, "hits/day": 5, "search/day": 3, "y/day": 4, "hits/eternity": 5},
		},
		{
			name: "reverse a plan's limits",
			steps: []step{{change: func(d *Document) {
				l := s1(d).Plan("basic").Limits
				for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
					l[i], l[j] = l[j], l[i]
				}
			}}},
			want: map[string]int64{"x/day": 1, "hits/day": 5, "search/day": 3, "y/day": 4, "hits/eternity": 5},
		},
		{
			name: "move the app to another plan and back",
			steps: []step{
				{change: func(d *Document) { s1(d).App("a1").Plan = "gold" }, usage: map[string]int64{"y": 10}},
				{change: func(d *Document) { dropMetric(d, "x") }},
				{change: func(d *Document) { s1(d).App("a1").Plan = "basic" }},
			},
			want: map[string]int64{"hits/day": 5, "search/day": 3, "y/day": 14, "hits/eternity": 5},
		},
		{
			name:  "child still counts to its parent after an unrelated deletion",
			steps: []step{{change: func(d *Document) { dropMetric(d, "x") }, usage: map[string]int64{"search": 10}}},
			want:  map[string]int64{"hits/day": 15, "search/day": 13, "y/day": 4, "hits/eternity": 15},
		},
		{
			name: "a metric gets a new parent in front",
			steps: []step{{change: func(d *Document) {
				s1(d).Metrics = append([]MetricSpec{{Name: "all"}}, s1(d).Metrics...)
				s1(d).Metrics[2].Parent = "all" // hits
				addDayLimit(d, "basic", "all")
			}, usage: map[string]int64{"search": 10}}},
			// search counts to hits and, through it, to all from now on.
			want: map[string]int64{"x/day": 1, "hits/day": 15, "search/day": 13, "y/day": 4, "hits/eternity": 15, "all/day": 10},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 5, 15, 10, 30, 0, 0, time.UTC)
			lim := limiter.New(limiter.Options{Clock: func() time.Time { return now }})
			keys := NewKeyRegistry()
			doc := counterDoc()
			authrep := func(snap *Snapshot, usage map[string]int64) {
				t.Helper()
				svc := snap.Services["s1"]
				app := svc.App("a1")
				var us []limiter.Usage
				for name, v := range usage {
					us = append(us, limiter.Usage{Metric: svc.MetricIndex[name], Value: v})
				}
				var d limiter.Decision
				lim.Do(&limiter.Request{App: app.Key, Limits: app.Plan().Limits, Parents: svc.Parents, Usage: us, Mode: limiter.ModeAuthRep}, &d)
				if !d.Allowed {
					t.Fatalf("authrep %v refused", usage)
				}
			}
			snap, err := Build(doc, keys)
			if err != nil {
				t.Fatal(err)
			}
			for name, v := range first {
				authrep(snap, map[string]int64{name: v})
			}
			for i, st := range tc.steps {
				if st.change != nil {
					st.change(doc)
				}
				if snap, err = Build(doc, keys); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if st.usage != nil {
					authrep(snap, st.usage)
				}
			}
			got := counterValues(t, lim, snap)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %d, want %d (all: %v)", k, got[k], v, got)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("plan reports %v, want %v", got, tc.want)
			}
		})
	}
}

// namedMetrics returns n root metrics named prefix0, prefix1, ...
func namedMetrics(prefix string, from, n int) []MetricSpec {
	ms := make([]MetricSpec, n)
	for i := range ms {
		ms[i].Name = fmt.Sprint(prefix, from+i)
	}
	return ms
}

// TestMetricIDsBound: a service gets at most MaxMetricIDs metric ids in a
// registry's life; a configuration that needs more is refused with a
// *ValidationError naming the service, assigns none of its new names, and
// leaves other services and names the service had alone. Ids never wrap
// into limiter.NoParent.
func TestMetricIDsBound(t *testing.T) {
	keys := NewKeyRegistry()
	doc := counterDoc()
	doc.Tenants[0].Services = append(doc.Tenants[0].Services, ServiceSpec{ID: "s2", Tokens: []string{"st-1"},
		AuthMode: ModeAppID, Metrics: []MetricSpec{{Name: "hits"}}})
	if _, err := Build(doc, keys); err != nil {
		t.Fatal(err)
	}
	// s1 has 4 names; churn through full services of fresh names up to the
	// bound exactly.
	used := 4
	for used < MaxMetricIDs {
		n := min(MaxMetrics, MaxMetricIDs-used)
		s1(doc).Metrics = namedMetrics("m", used, n)
		s1(doc).Plans, s1(doc).Applications = nil, nil
		if err := keys.Reserve(doc); err != nil {
			t.Fatalf("with %d ids used, %d more: %v", used, n, err)
		}
		used += n
	}
	snap, err := Build(doc, keys)
	if err != nil {
		t.Fatalf("build at the bound: %v", err)
	}
	last := s1(doc).Metrics[len(s1(doc).Metrics)-1].Name
	if id := snap.Services["s1"].MetricIndex[last]; int(id) != MaxMetricIDs-1 || id == limiter.NoParent {
		t.Errorf("last id = %#x, want %#x", id, MaxMetricIDs-1)
	}
	if len(snap.Services["s1"].Parents) != MaxMetricIDs {
		t.Errorf("parents table of %d, want %d", len(snap.Services["s1"].Parents), MaxMetricIDs)
	}

	cases := []struct {
		name    string
		metrics []MetricSpec
		refused bool
	}{
		{"one new name too many", append(namedMetrics("m", 0, 3), MetricSpec{Name: "fresh"}), true},
		{"only new names", namedMetrics("other", 0, 2), true},
		{"names the service had before", []MetricSpec{{Name: "y"}, {Name: "x"}, {Name: "hits"}, {Name: "m17"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := doc.Clone()
			s1(d).Metrics = tc.metrics
			for _, check := range []struct {
				what string
				run  func() error
			}{
				{"Reserve", func() error { return keys.Reserve(d) }},
				{"Build", func() error { _, err := Build(d, keys); return err }},
			} {
				err := check.run()
				if !tc.refused {
					if err != nil {
						t.Errorf("%s: %v", check.what, err)
					}
					continue
				}
				var ve *ValidationError
				if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Path != "tenants[0].services[0].metrics" ||
					!strings.Contains(ve.Problems[0].Message, `"s1"`) {
					t.Errorf("%s: %v, want a *ValidationError at tenants[0].services[0].metrics", check.what, err)
				}
			}
			for _, m := range tc.metrics {
				id, ok := keys.MetricID("t1", "s1", m.Name)
				if ok && int(id) >= MaxMetricIDs {
					t.Errorf("%s got id %#x", m.Name, id)
				}
				if ok && (m.Name == "fresh" || strings.HasPrefix(m.Name, "other")) {
					t.Errorf("refused name %s was given id %d", m.Name, id)
				}
			}
		})
	}
	// Other services still get ids, and s1's known names keep theirs.
	s2 := &doc.Tenants[0].Services[1]
	s2.Metrics = append(s2.Metrics, namedMetrics("n", 0, MaxMetrics-1)...)
	snap, err = Build(doc, keys)
	if err != nil {
		t.Fatal(err)
	}
	if id := snap.Services["s2"].MetricIndex["n0"]; id != 1 {
		t.Errorf("s2's second metric has id %d, want 1", id)
	}
	if id, _ := keys.MetricID("t1", "s1", "hits"); id != 1 {
		t.Errorf("s1's hits has id %d, want 1", id)
	}
}
