package restore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/rollup"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
	"github.com/sluice-dev/sluice/limiter"
)

const (
	testDB    = "sluice_restore_test"
	testTopic = event.Topic
)

// staticCatalog serves one Snapshot.
type staticCatalog struct{ s *catalog.Snapshot }

func (c staticCatalog) Load() *catalog.Snapshot { return c.s }

// testSnapshot: tenant t1, service s1 with hits and its child search, and a
// plan with one limit of each kind on hits plus an hour limit on search.
func testSnapshot(t *testing.T) *catalog.Snapshot {
	t.Helper()
	per := func(s string) limiter.Period {
		p, err := limiter.ParsePeriod(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	ten := &catalog.Tenant{ID: "t1", Services: map[string]*catalog.Service{}}
	svc := &catalog.Service{Tenant: ten, ID: "s1",
		Metrics:     []catalog.Metric{{Name: "hits", ID: 0, Parent: limiter.NoParent}, {Name: "search", ID: 1, Parent: 0}},
		MetricIndex: map[string]limiter.MetricID{"hits": 0, "search": 1},
		Parents:     []limiter.MetricID{limiter.NoParent, 0},
	}
	plan := &catalog.Plan{ID: "basic", Name: "basic"}
	for _, l := range []struct {
		m   limiter.MetricID
		per string
	}{{0, "minute"}, {0, "hour"}, {0, "day"}, {0, "month"}, {0, "eternity"}, {0, "sliding:1m"}, {1, "hour"}, {1, "sliding:5m"}} {
		plan.Limits = append(plan.Limits, limiter.Limit{Metric: l.m, Period: per(l.per), Max: 1 << 40})
	}
	var apps []*catalog.App
	for i := range 5 {
		id := fmt.Sprintf("app%d", i)
		a := &catalog.App{Service: svc, ID: id, Key: limiter.AppKey(1000 + i)}
		a.SetPlan(plan)
		apps = append(apps, a)
	}
	catalog.Assemble(svc, []*catalog.Plan{plan}, apps)
	ten.Services[svc.ID] = svc
	return &catalog.Snapshot{Tenants: map[string]*catalog.Tenant{"t1": ten}, Services: map[string]*catalog.Service{"s1": svc}}
}

// producer sends events in usage-time order (record timestamp = receive
// time = usage time here) and applies them to the reference limiter the way
// the live limiter would have.
type producer struct {
	t    *testing.T
	cl   *kgo.Client
	ref  *limiter.Limiter
	snap *catalog.Snapshot
	ids  *event.IDGenerator
	r    *rand.Rand
}

func (p *producer) send(n int, from, to time.Time) {
	p.t.Helper()
	span := to.Sub(from).Milliseconds()
	for i := range n {
		ts := from.UnixMilli() + span*int64(i)/int64(n)
		e := event.Event{ID: p.ids.Next(), Kind: event.KindAuthrep, TS: ts, Received: ts,
			TenantID: "t1", ServiceID: "s1", AppID: fmt.Sprintf("app%d", p.r.IntN(6)), // app5 is unknown
			PlanID: "basic", Code: 200, Region: "eu", Node: "n1"}
		switch x := p.r.IntN(100); {
		case x < 5:
			e.Kind, e.Reason = event.KindDenied, "limits_exceeded"
			e.Usage = []event.Usage{{Metric: "hits", Value: 1}}
		case x < 15:
			e.Kind = event.KindReport
			e.Usage = []event.Usage{{Metric: "hits", Value: 1 + p.r.Int64N(9)}, {Metric: "unknown", Value: 3}}
		case x < 25:
			// flat_usage: the caller already added search into hits.
			v := 1 + p.r.Int64N(4)
			e.Usage = []event.Usage{{Metric: "hits", Value: v + 1, Flat: true}, {Metric: "search", Value: v, Flat: true}}
		default:
			e.Usage = []event.Usage{{Metric: []string{"hits", "search"}[p.r.IntN(2)], Value: 1 + p.r.Int64N(4)}}
		}
		rec := &kgo.Record{Topic: testTopic, Key: event.Key(nil, e.ServiceID, e.AppID), Value: event.AppendEvent(nil, &e), Timestamp: time.UnixMilli(e.Received)}
		if err := p.cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			p.t.Fatalf("produce: %v", err)
		}
		if e.Kind == event.KindDenied {
			continue
		}
		svc := p.snap.Services["s1"]
		app := svc.App(e.AppID)
		if app == nil {
			continue
		}
		var us []limiter.Usage
		flat := false
		for _, u := range e.Usage {
			flat = flat || u.Flat
			if m, ok := svc.MetricIndex[u.Metric]; ok {
				us = append(us, limiter.Usage{Metric: m, Value: u.Value})
			}
		}
		p.ref.Record(app.Key, app.Plan().Limits, svc.Parents, us, flat, time.UnixMilli(e.TS))
	}
}

func endOffsets(t *testing.T, adm *kadm.Client) map[int32]int64 {
	t.Helper()
	ends, err := adm.ListEndOffsets(context.Background(), testTopic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out
}

func TestRestoreMatchesLiveCounters(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ClickHouse and a kfake broker")
	}
	ch, conn := chtest.Start(t)
	ctx := context.Background()
	if err := chschema.Migrate(ctx, conn, testDB); err != nil {
		t.Fatal(err)
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, testTopic))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(kc.Close)
	brokers := kc.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	now := time.Date(2026, 11, 23, 10, 30, 40, 0, time.UTC)
	clock := func() time.Time { return now }
	snap := testSnapshot(t)
	p := &producer{t: t, cl: cl, ref: limiter.New(limiter.Options{Clock: clock}), snap: snap,
		ids: event.NewIDGenerator(), r: rand.New(rand.NewPCG(1, 2))}

	// Phase 1, rolled up: from the previous day (closed day window, still in
	// the month) to 20 s before now, so the last minute's sliding window is
	// partly in ClickHouse only and must be rebuilt from the tail by time.
	p.send(1200, now.Add(-26*time.Hour), now.Add(-2*time.Minute))
	p.send(300, now.Add(-2*time.Minute), now.Add(-20*time.Second))
	ends := endOffsets(t, adm)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := rollup.New(rollup.Options{Brokers: brokers, Topic: testTopic, Group: "restore-test",
		ClickHouseAddr: ch.Addr(), Database: testDB, Hierarchy: rollup.MapHierarchy{"search": "hits"},
		MaxBatchEvents: 400, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := chschema.ResumeOffsets(ctx, conn, testDB)
		if err != nil {
			t.Fatal(err)
		}
		caught := true
		for kp, end := range ends {
			if end > 0 && got[kp] < end {
				caught = false
			}
		}
		if caught {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rollup did not catch up: %v of %v", got, ends)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Phase 2, only in Kafka.
	p.send(300, now.Add(-20*time.Second), now)

	lim := limiter.New(limiter.Options{Clock: clock})
	st, err := Restore(ctx, Options{Limiter: lim, Catalog: staticCatalog{snap}, CH: conn, Database: testDB,
		Brokers: brokers, Topic: testTopic, Now: now, MaxSliding: 10 * time.Minute, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats %+v", st)
	if st.Seeded == 0 || st.Replayed == 0 || st.Skipped == 0 {
		t.Errorf("stats %+v: want seeded sums, replayed and skipped events", st)
	}
	// The replay started by time, not at offset 0: most phase-1 records are
	// older than MaxSliding and already in ClickHouse.
	if st.Records >= 1500 {
		t.Errorf("read %d records: the tail should start near now-MaxSliding", st.Records)
	}

	compare(t, p.ref, lim, snap)

	// A ClickHouse that has nothing (a fresh database): every partition is
	// replayed from the start of the log, and the counters still match.
	const emptyDB = testDB + "_empty"
	if err := chschema.Migrate(ctx, conn, emptyDB); err != nil {
		t.Fatal(err)
	}
	lim2 := limiter.New(limiter.Options{Clock: clock})
	w := &chainWatcher{last: map[string]int64{}}
	st, err = Restore(ctx, Options{Limiter: lim2, Catalog: staticCatalog{snap}, CH: conn, Database: emptyDB,
		Brokers: brokers, Topic: testTopic, Now: now, Logger: quiet, Watcher: w})
	if err != nil {
		t.Fatal(err)
	}
	if st.Seeded != 0 || st.Records != 1800 {
		t.Errorf("empty ClickHouse: stats %+v, want 0 seeded and all 1800 records read", st)
	}
	compare(t, p.ref, lim2, snap)

	// The watcher saw every move of every calendar counter: a chain from 0
	// to the restored value.
	if w.broken != "" {
		t.Fatal(w.broken)
	}
	svc := snap.Services["s1"]
	var d limiter.Decision
	for _, app := range svc.Apps().All() {
		lim2.Do(&limiter.Request{App: app.Key, Limits: app.Plan().Limits, Parents: svc.Parents, Mode: limiter.ModeAuthorize}, &d)
		for _, r := range d.Reports {
			if r.Limit.Period.Unit == limiter.Sliding {
				continue
			}
			k := fmt.Sprintf("%s/%d/%s", app.ID, r.Limit.Metric, r.Limit.Period)
			if w.last[k] != r.Current {
				t.Errorf("%s: the watcher's last value %d, the counter %d", k, w.last[k], r.Current)
			}
		}
	}
}

// chainWatcher checks that the moves it sees of each counter chain up
// (each starts where the previous ended, or at 0 in a new window).
type chainWatcher struct {
	last   map[string]int64 // app/metric/period -> value after the last move
	start  map[string]int64 // window of the last move
	broken string
}

func (w *chainWatcher) ObserveChanges(_ *catalog.Service, app *catalog.App, limits []limiter.Limit, cs []limiter.Change) {
	if w.start == nil {
		w.start = map[string]int64{}
	}
	for _, c := range cs {
		l := limits[c.Limit]
		k := fmt.Sprintf("%s/%d/%s", app.ID, l.Metric, l.Period)
		prev := w.last[k]
		if s, ok := w.start[k]; ok && s != c.Start {
			prev = 0
		}
		if c.Before != prev && w.broken == "" {
			w.broken = fmt.Sprintf("%s: a move from %d after one to %d", k, c.Before, prev)
		}
		w.last[k], w.start[k] = c.After, c.Start
	}
}

// compare checks that an authorize without usage reports the same current
// value for every limit of every app in both limiters, and that every kind
// of limit had usage somewhere (so that the comparison means something).
func compare(t *testing.T, ref, lim *limiter.Limiter, snap *catalog.Snapshot) {
	t.Helper()
	svc := snap.Services["s1"]
	var want, got limiter.Decision
	nonzero := map[limiter.Period]bool{}
	for id, app := range svc.Apps().All() {
		req := limiter.Request{App: app.Key, Limits: app.Plan().Limits, Parents: svc.Parents, Mode: limiter.ModeAuthorize}
		ref.Do(&req, &want)
		lim.Do(&req, &got)
		for i, w := range want.Reports {
			g := got.Reports[i]
			if g.Current != w.Current || g.Start != w.Start {
				t.Errorf("%s limit %v on metric %d: current %d (start %d), want %d (start %d)",
					id, w.Limit.Period, w.Limit.Metric, g.Current, g.Start, w.Current, w.Start)
			}
			if w.Current > 0 {
				nonzero[w.Limit.Period] = true
			}
		}
	}
	// Every kind of limit had usage, so the comparison above means something.
	for _, l := range svc.Plan("basic").Limits {
		if !nonzero[l.Period] {
			t.Errorf("no usage in any %v window: the test data does not cover it", l.Period)
		}
	}
}

func TestRestoreRequiresOptions(t *testing.T) {
	lim := limiter.New(limiter.Options{})
	// fakeConn is a non-nil connection that is never used: each case lacks
	// another option, so Restore must refuse before connecting anywhere.
	type fakeConn struct{ driver.Conn }
	full := Options{Limiter: lim, Catalog: staticCatalog{}, CH: fakeConn{}, Database: "db", Brokers: []string{"127.0.0.1:1"}}
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"no limiter", func(o *Options) { o.Limiter = nil }},
		{"no catalog", func(o *Options) { o.Catalog = nil }},
		{"no clickhouse", func(o *Options) { o.CH = nil }},
		{"no database", func(o *Options) { o.Database = "" }},
		{"no brokers", func(o *Options) { o.Brokers = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := full
			tc.mod(&o)
			if _, err := Restore(context.Background(), o); err == nil {
				t.Error("Restore accepted incomplete options")
			}
		})
	}
}

// TestRestoreNeverWraps replays a tail that no API node would have
// accepted (two reports of the largest int64 for one application, a
// negative value for another): Restore must refuse what would wrap a
// counter or make it negative, count the refusals, and keep the rest.
func TestRestoreNeverWraps(t *testing.T) {
	if testing.Short() {
		t.Skip("needs ClickHouse and a kfake broker")
	}
	_, conn := chtest.Start(t)
	ctx := context.Background()
	if err := chschema.Migrate(ctx, conn, testDB); err != nil {
		t.Fatal(err)
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, testTopic))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(kc.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Date(2026, 11, 23, 10, 30, 40, 0, time.UTC)
	ids := event.NewIDGenerator()
	const big = 1<<63 - 1
	for i, x := range []struct {
		app   string
		usage []event.Usage
	}{
		{"app0", []event.Usage{{Metric: "hits", Value: big}}},
		{"app0", []event.Usage{{Metric: "hits", Value: big}}},
		{"app1", []event.Usage{{Metric: "search", Value: 2}}},
		{"app1", []event.Usage{{Metric: "search", Value: 3}, {Metric: "hits", Value: -5}}},
		{"app1", []event.Usage{{Metric: "hits", Value: 4}}},
	} {
		ts := now.Add(time.Duration(i-10) * time.Second).UnixMilli()
		e := event.Event{ID: ids.Next(), Kind: event.KindReport, TS: ts, Received: ts, TenantID: "t1", ServiceID: "s1",
			AppID: x.app, PlanID: "basic", Usage: x.usage}
		rec := &kgo.Record{Topic: testTopic, Key: event.Key(nil, e.ServiceID, e.AppID), Value: event.AppendEvent(nil, &e), Timestamp: time.UnixMilli(ts)}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	snap := testSnapshot(t)
	lim := limiter.New(limiter.Options{Clock: func() time.Time { return now }})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := Restore(ctx, Options{Limiter: lim, Catalog: staticCatalog{snap}, CH: conn, Database: testDB,
		Brokers: kc.ListenAddrs(), Topic: testTopic, Now: now, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if st.Refused != 2 || st.Replayed != 3 {
		t.Errorf("stats %+v: want 2 refused, 3 replayed", st)
	}
	svc := snap.Services["s1"]
	for _, c := range []struct {
		app  string
		want int64 // every hits counter
	}{{"app0", big}, {"app1", 6}} {
		app := svc.App(c.app)
		var d limiter.Decision
		lim.Do(&limiter.Request{App: app.Key, Limits: app.Plan().Limits, Parents: svc.Parents, Mode: limiter.ModeAuthorize}, &d)
		for _, r := range d.Reports {
			if r.Current < 0 {
				t.Errorf("%s %v: counter %d", c.app, r.Limit, r.Current)
			}
			if r.Limit.Metric == 0 && r.Current != c.want {
				t.Errorf("%s hits %s: counter %d, want %d", c.app, r.Limit.Period, r.Current, c.want)
			}
		}
	}
}
