package catalog

import (
	"fmt"
	"testing"
)

// benchService builds a snapshot with one service of n applications in
// user_key mode over 3 plans of 3 limits.
func benchService(b testing.TB, n int) (*Snapshot, *KeyRegistry) {
	b.Helper()
	sd := ServiceSpec{ID: "s", Metrics: []MetricSpec{{Name: "hits"}, {Name: "search", Parent: "hits"}, {Name: "upload", Parent: "hits"}}}
	for p := range 3 {
		sd.Plans = append(sd.Plans, PlanSpec{ID: fmt.Sprintf("p%d", p), Limits: []LimitSpec{
			{Metric: "hits", Period: "minute", Max: 1000}, {Metric: "search", Period: "minute", Max: 1000}, {Metric: "upload", Period: "minute", Max: 1000}}})
	}
	for a := range n {
		sd.Applications = append(sd.Applications, AppSpec{ID: fmt.Sprintf("app-%07d", a), Plan: fmt.Sprintf("p%d", a%3), UserKey: fmt.Sprintf("uk%030d", a)})
	}
	keys := NewKeyRegistry()
	snap, err := Build(&Document{Tenants: []TenantSpec{{ID: "t", AdminToken: "adm", Services: []ServiceSpec{sd}}}}, keys)
	if err != nil {
		b.Fatal(err)
	}
	return snap, keys
}

// BenchmarkStagePutApp: updating one application of a service of 100,000
// and publishing it.
func BenchmarkStagePutApp(b *testing.B) {
	snap, keys := benchService(b, 100_000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st := NewStage(snap, keys)
		a := AppSpec{ID: fmt.Sprintf("app-%07d", i%100_000), Plan: "p1", UserKey: fmt.Sprintf("uk%030d", i%100_000), State: StateSuspended}
		if err := st.PutApp("t", "s", &a); err != nil {
			b.Fatal(err)
		}
		st.Publish()
	}
}

// BenchmarkStagePutPlan: changing a limit of a plan that 33,334 of a
// service's 100,000 applications are on, and publishing it.
func BenchmarkStagePutPlan(b *testing.B) {
	snap, keys := benchService(b, 100_000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st := NewStage(snap, keys)
		p := PlanSpec{ID: "p0", Limits: []LimitSpec{{Metric: "hits", Period: "minute", Max: int64(i)}}}
		if err := st.PutPlan("t", "s", &p); err != nil {
			b.Fatal(err)
		}
		st.Publish()
	}
}
