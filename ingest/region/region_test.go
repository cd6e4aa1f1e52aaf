package region

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/kafkatest"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/internal/tcpproxy"
	"github.com/sluice-dev/sluice/limiter"
)

func TestParsePeers(t *testing.T) {
	for _, c := range []struct {
		name  string
		specs []string
		want  string // peers joined by " ", or the error's text
	}{
		{"one", []string{"eu=k1:9092"}, "eu=k1:9092"},
		{"brokers", []string{"eu=k1:9092,k2:9092,"}, "eu=k1:9092,k2:9092"},
		{"repeated flag", []string{"eu=k1:9092", "us=k3:9092"}, "eu=k1:9092 us=k3:9092"},
		{"env list", []string{"eu=k1:9092,k2:9092 us=k3:9092;ap=k4:1"}, "eu=k1:9092,k2:9092 us=k3:9092 ap=k4:1"},
		{"none", nil, ""},
		{"no equals", []string{"eu"}, `peer region "eu": want NAME=HOST:PORT[,HOST:PORT...]`},
		{"bad name", []string{"e/u=k:1"}, `invalid region name "e/u"`},
		{"no broker", []string{"eu=,"}, `peer region "eu" names no broker`},
		{"no port", []string{"eu=k1"}, `broker "k1": want HOST:PORT`},
		{"self", []string{"home=k:1"}, `peer region "home" is this region`},
		{"twice", []string{"eu=k:1", "eu=k:2"}, `peer region "eu" named twice`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps, err := ParsePeers(c.specs, "home")
			var got string
			if err != nil {
				got = err.Error()
			} else {
				var s []string
				for _, p := range ps {
					s = append(s, p.String())
				}
				got = strings.Join(s, " ")
			}
			if !strings.Contains(got, c.want) || (err == nil && got != c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestReplayFrom(t *testing.T) {
	now := time.Date(2026, 12, 4, 15, 30, 20, 0, time.UTC)
	plan := func(limits ...catalog.LimitSpec) *catalog.Snapshot { return testCatalog(t, limits...) }
	for _, c := range []struct {
		name string
		snap *catalog.Snapshot
		span time.Duration
		want time.Time
	}{
		{"minute", plan(catalog.LimitSpec{Metric: "hits", Period: "minute", Max: 1}), 0, time.Date(2026, 12, 4, 15, 30, 0, 0, time.UTC)},
		{"hour and sliding", plan(catalog.LimitSpec{Metric: "hits", Period: "hour", Max: 1}, catalog.LimitSpec{Metric: "hits", Period: "sliding:2h", Max: 1}), 0, now.Add(-2 * time.Hour)},
		{"region scope ignored", plan(catalog.LimitSpec{Metric: "hits", Period: "day", Max: 1, Scope: "region"}, catalog.LimitSpec{Metric: "hits", Period: "minute", Max: 1}), 0, time.Date(2026, 12, 4, 15, 30, 0, 0, time.UTC)},
		{"month capped", plan(catalog.LimitSpec{Metric: "hits", Period: "month", Max: 1}), 0, now.Add(-DefaultRestoreSpan)},
		{"month with a longer span", plan(catalog.LimitSpec{Metric: "hits", Period: "month", Max: 1}), 40 * 24 * time.Hour, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
		{"no global limit", plan(), 0, now},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := ReplayFrom(c.snap, now, c.span); !got.Equal(c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
}

// testCatalog has applications app0..app3 of service svc on plan p with the
// given limits.
func testCatalog(tb testing.TB, limits ...catalog.LimitSpec) *catalog.Snapshot {
	tb.Helper()
	svc := catalog.ServiceSpec{
		ID: "svc", Tokens: []string{"st"},
		Metrics: []catalog.MetricSpec{{Name: "hits"}, {Name: "search", Parent: "hits"}},
		Plans:   []catalog.PlanSpec{{ID: "p", Limits: limits}},
	}
	for i := range 4 {
		svc.Applications = append(svc.Applications, catalog.AppSpec{ID: fmt.Sprint("app", i), Plan: "p", UserKey: fmt.Sprint("uk", i)})
	}
	snap, err := catalog.Build(&catalog.Document{Tenants: []catalog.TenantSpec{{ID: "t", AdminToken: "adm", Services: []catalog.ServiceSpec{svc}}}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return snap
}

type fixedCatalog struct{ s *catalog.Snapshot }

func (f fixedCatalog) Load() *catalog.Snapshot { return f.s }

// peerRegion is a peer region's broker and usage topic, reached through a
// proxy, and a producer standing for its API nodes.
type peerRegion struct {
	t     *testing.T
	proxy *tcpproxy.Proxy
	topic string
	pcl   *kgo.Client
	ids   *event.IDGenerator
}

func newPeerRegion(t *testing.T) *peerRegion {
	b := kafkatest.Start(t)
	topic := b.Topic(t, event.Topic, 3)
	pcl, err := kgo.NewClient(kgo.SeedBrokers(b.Addrs...), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pcl.Close)
	px, err := tcpproxy.NewKafka(b.Addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	return &peerRegion{t: t, proxy: px, topic: topic, pcl: pcl, ids: event.NewIDGenerator()}
}

// produce appends n authrep events of one hit each for app, accepted in
// region at received.
func (p *peerRegion) produce(app, region string, n int, received time.Time) {
	p.t.Helper()
	var recs []*kgo.Record
	for range n {
		ev := event.Event{ID: p.ids.Next(), Kind: event.KindAuthrep, TS: received.UnixMilli(), Received: received.UnixMilli(),
			TenantID: "t", ServiceID: "svc", AppID: app, PlanID: "p",
			Usage: []event.Usage{{Metric: "hits", Value: 1}}, Region: region, Node: "n1"}
		recs = append(recs, &kgo.Record{Key: []byte("svc/" + app), Value: event.AppendEvent(nil, &ev), Timestamp: received})
	}
	if err := p.pcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		p.t.Fatal(err)
	}
}

// home is this region's limiter tailing one peer.
type home struct {
	lim   *limiter.Limiter
	snap  *catalog.Snapshot
	tails *Tails
	reg   *metrics.Registry
}

func startHome(t *testing.T, p *peerRegion, snap *catalog.Snapshot, from time.Time) *home {
	t.Helper()
	h := &home{lim: limiter.New(limiter.Options{}), snap: snap, reg: metrics.NewRegistry()}
	var err error
	h.tails, err = Start(Options{
		Region: "home", Peers: []Peer{{Name: "eu", Brokers: []string{p.proxy.Addr()}}}, Topic: p.topic,
		From: from, Limiter: h.lim, Catalog: fixedCatalog{snap}, Metrics: h.reg,
		Probe: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.tails.Close)
	return h
}

// current returns app's counters, by limit of the plan.
func (h *home) current(app string) []int64 {
	a := h.snap.Services["svc"].App(app)
	var d limiter.Decision
	h.lim.Do(&limiter.Request{App: a.Key, Limits: a.Plan().Limits, Parents: a.Service.Parents, Mode: limiter.ModeAuthorize}, &d)
	out := make([]int64, len(d.Reports))
	for i, r := range d.Reports {
		out[i] = r.Current
	}
	return out
}

// waitFor polls cond every 10 ms for up to d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func equal(a []int64, b ...int64) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

var scopedLimits = []catalog.LimitSpec{
	{Metric: "hits", Period: "hour", Max: 1 << 40},
	{Metric: "hits", Period: "day", Max: 1 << 40, Scope: catalog.ScopeRegion},
	{Metric: "hits", Period: "sliding:1h", Max: 1 << 40, Scope: catalog.ScopeGlobal},
}

// TestTailCountsGlobalOnly: a peer's usage counts toward global limits and
// not toward region-scoped ones; this region's own events met in the peer's
// log (a loop) and events received before From are not counted.
func TestTailCountsGlobalOnly(t *testing.T) {
	p := newPeerRegion(t)
	now := time.Now()
	p.produce("app0", "eu", 3, now.Add(-2*time.Hour)) // before From
	p.produce("app0", "eu", 5, now)
	p.produce("app1", "eu", 2, now)
	p.produce("app0", "home", 4, now) // a loop
	h := startHome(t, p, testCatalog(t, scopedLimits...), now.Add(-time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if behind := h.tails.WaitCaughtUp(ctx); len(behind) != 0 {
		t.Fatalf("not caught up with %v", behind)
	}
	if got := h.current("app0"); !equal(got, 5, 0, 5) {
		t.Errorf("app0 counters %v, want [5 0 5]", got)
	}
	if got := h.current("app1"); !equal(got, 2, 0, 2) {
		t.Errorf("app1 counters %v, want [2 0 2]", got)
	}
	st := h.tails.Status()
	if len(st) != 1 || !st[0].Up || !st[0].CaughtUp || st[0].Behind != 0 || st[0].Events != 7 {
		t.Errorf("status %+v", st)
	}
	if n := h.tails.peers[0].loops.Load(); n != 4 {
		t.Errorf("loop events %d, want 4", n)
	}
	var status struct {
		Peers []struct {
			Region   string `json:"region"`
			Up       bool   `json:"up"`
			CaughtUp bool   `json:"caught_up"`
			LagMs    *int64 `json:"lag_ms"`
			Behind   *int64 `json:"behind"`
		} `json:"peers"`
	}
	b := append(h.tails.AppendStatus([]byte("{")), '}')
	if err := json.Unmarshal(b, &status); err != nil || len(status.Peers) != 1 {
		t.Fatalf("status %s: %v", b, err)
	}
	if p := status.Peers[0]; p.Region != "eu" || !p.Up || !p.CaughtUp || p.LagMs == nil || p.Behind == nil || *p.Behind != 0 {
		t.Errorf("status %s", b)
	}
}

// TestTailRestartCountsOnce: a node that restarts reads the peer's log again
// from From into empty counters: each event counted once, however often.
func TestTailRestartCountsOnce(t *testing.T) {
	p := newPeerRegion(t)
	now := time.Now()
	p.produce("app0", "eu", 6, now)
	snap := testCatalog(t, scopedLimits...)
	for round := range 3 {
		h := startHome(t, p, snap, now.Add(-time.Minute))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if behind := h.tails.WaitCaughtUp(ctx); len(behind) != 0 {
			t.Fatalf("round %d: not caught up with %v", round, behind)
		}
		cancel()
		p.produce("app0", "eu", 1, now)
		want := int64(7 + round)
		waitFor(t, 5*time.Second, "the new event", func() bool { return h.current("app0")[0] == want })
		time.Sleep(200 * time.Millisecond) // anything counted twice would show by now
		if got := h.current("app0"); !equal(got, want, 0, want) {
			t.Fatalf("round %d: counters %v, want [%d 0 %d]", round, got, want, want)
		}
		h.tails.Close()
	}
}

// TestTailDelayAndPartition: a delayed link shows in the lag; a cut one in
// peer_up and lag_records while the region keeps its counters; once healed,
// the tail catches up with everything the peer admitted meanwhile, counting
// nothing twice.
func TestTailDelayAndPartition(t *testing.T) {
	p := newPeerRegion(t)
	snap := testCatalog(t, scopedLimits...)
	h := startHome(t, p, snap, time.Now().Add(-time.Minute))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if behind := h.tails.WaitCaughtUp(ctx); len(behind) != 0 {
		t.Fatalf("not caught up with %v", behind)
	}

	p.proxy.SetDelay(200 * time.Millisecond)
	time.Sleep(500 * time.Millisecond) // connections idle in a fetch take the delay
	p.produce("app2", "eu", 1, time.Now())
	waitFor(t, 5*time.Second, "the delayed event", func() bool { return h.current("app2")[0] == 1 })
	if lag := h.tails.Status()[0].MaxLag; lag < 200*time.Millisecond {
		t.Errorf("max lag %v through a 200 ms link", lag)
	}
	p.proxy.SetDelay(0)

	p.proxy.Block()
	for range 10 {
		p.produce("app3", "eu", 10, time.Now())
		time.Sleep(30 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "the peer down", func() bool { return !h.tails.Status()[0].Up })
	if lag := h.tails.Status()[0].Lag; lag < 300*time.Millisecond {
		t.Errorf("lag %v while the peer has been unreachable for three probes", lag)
	}
	if got := h.current("app3"); got[0] != 0 {
		t.Errorf("counted %d across a cut link", got[0])
	}
	if m := scrapeText(t, h.reg); !strings.Contains(m, `sluice_region_peer_up{region="eu"} 0`) {
		t.Errorf("metrics do not show the peer down:\n%s", m)
	}
	p.proxy.Unblock()
	waitFor(t, 15*time.Second, "the catch-up", func() bool { return h.current("app3")[0] == 100 })
	waitFor(t, 5*time.Second, "the peer up", func() bool { return h.tails.Status()[0].Up })
	time.Sleep(300 * time.Millisecond)
	if got := h.current("app3"); !equal(got, 100, 0, 100) {
		t.Errorf("after healing: counters %v, want [100 0 100]", got)
	}
	if st := h.tails.Status()[0]; st.Behind != 0 || st.Events != 101 {
		t.Errorf("after healing: %+v", st)
	}
}

func scrapeText(t *testing.T, r *metrics.Registry) string {
	t.Helper()
	var b strings.Builder
	if err := r.WritePrometheus(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
