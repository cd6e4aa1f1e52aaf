package cluster

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/restore"
	"github.com/sluice-dev/sluice/limiter"
)

// projectionCatalog has apps applications on one plan with a minute, a
// month and a sliding limit.
func projectionCatalog(tb testing.TB, apps int) *catalog.Snapshot {
	tb.Helper()
	svc := catalog.ServiceSpec{
		ID: "svc", Tokens: []string{"st"},
		Metrics: []catalog.MetricSpec{{Name: "hits"}, {Name: "search", Parent: "hits"}},
		Plans: []catalog.PlanSpec{{ID: "p", Limits: []catalog.LimitSpec{
			{Metric: "hits", Period: "minute", Max: 1 << 40},
			{Metric: "hits", Period: "month", Max: 1 << 40},
			{Metric: "search", Period: "sliding:1m", Max: 1 << 40},
		}}},
	}
	for i := range apps {
		svc.Applications = append(svc.Applications, catalog.AppSpec{ID: fmt.Sprint("app", i), Plan: "p", UserKey: fmt.Sprint("uk", i)})
	}
	snap, err := catalog.Build(&catalog.Document{Tenants: []catalog.TenantSpec{{ID: "t", AdminToken: "adm", Services: []catalog.ServiceSpec{svc}}}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return snap
}

// projectionRecords encodes n authrep events spread over apps applications,
// made by another process.
func projectionRecords(tb testing.TB, n, apps int, now time.Time) []*kgo.Record {
	tb.Helper()
	ids := event.NewIDGenerator()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		ev := event.Event{ID: ids.Next(), Kind: event.KindAuthrep, TS: now.UnixMilli(), Received: now.UnixMilli(),
			TenantID: "t", ServiceID: "svc", AppID: fmt.Sprint("app", i%apps), PlanID: "p",
			Usage: []event.Usage{{Metric: "search", Value: 1}}, Region: "r", Node: "other"}
		recs[i] = &kgo.Record{Partition: 0, Offset: int64(i), Value: event.AppendEvent(nil, &ev)}
	}
	return recs
}

// newTestProjection is a Projection of one partition that is fed records by
// the test instead of a Kafka client.
func newTestProjection(own [8]byte, lim *limiter.Limiter) *Projection {
	return &Projection{o: ProjectionOptions{Own: own, Limiter: lim},
		applied: make([]atomic.Int64, 1), hw: make([]atomic.Int64, 1), lagMs: make([]atomic.Int64, 1)}
}

// TestProjectionApply: other processes' events count in the limiter, this
// process's own (same id prefix) do not.
func TestProjectionApply(t *testing.T) {
	now := time.Now()
	snap := projectionCatalog(t, 3)
	lim := limiter.New(limiter.Options{Clock: func() time.Time { return now }})
	own := event.NewIDGenerator()
	recs := projectionRecords(t, 6, 3, now) // two events per app
	ownEv := event.Event{ID: own.Next(), Kind: event.KindAuthrep, TS: now.UnixMilli(), Received: now.UnixMilli(),
		TenantID: "t", ServiceID: "svc", AppID: "app0", Usage: []event.Usage{{Metric: "hits", Value: 5}}}
	recs = append(recs, &kgo.Record{Value: event.AppendEvent(nil, &ownEv)})
	p := newTestProjection(own.Prefix(), lim)
	ap := restore.Applier{Limiter: lim}
	for _, r := range recs {
		p.apply(&ap, snap, r, now.UnixMilli())
	}
	if p.events.Load() != 6 || p.own.Load() != 1 {
		t.Fatalf("applied %d, own %d; want 6 and 1", p.events.Load(), p.own.Load())
	}
	app := snap.Services["svc"].App("app0")
	var d limiter.Decision
	lim.Do(&limiter.Request{App: app.Key, Limits: app.Plan().Limits, Parents: app.Service.Parents, Mode: limiter.ModeAuthorize}, &d)
	for i, r := range d.Reports {
		if r.Current != 2 { // search counts in hits too; the own event's 5 not at all
			t.Errorf("limit %d (%v): current %d, want 2", i, r.Limit.Period, r.Current)
		}
	}
}

// BenchmarkProjectionApply is the cost of applying one other node's event
// (decode, catalog lookup, limiter record) over 100,000 applications; its
// inverse is the events per second one core projects.
func BenchmarkProjectionApply(b *testing.B) {
	const apps = 100_000
	now := time.Now()
	snap := projectionCatalog(b, apps)
	lim := limiter.New(limiter.Options{Clock: func() time.Time { return now }})
	recs := projectionRecords(b, 1<<16, apps, now)
	p := newTestProjection([8]byte{}, lim)
	ap := restore.Applier{Limiter: lim}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.apply(&ap, snap, recs[i&(len(recs)-1)], now.UnixMilli())
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
