package query

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/ingest/kafka"
	"github.com/sluice-dev/sluice/ingest/rollup"
	"github.com/sluice-dev/sluice/ingest/smapi"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
	"github.com/sluice-dev/sluice/limiter"
)

// The pipeline fixture: usage reported through the Service Management API
// (two smapi servers on real TCP ports, regions eu and us), produced to a
// kfake broker by ingest/kafka, folded into ClickHouse by ingest/rollup, and
// read back through the query API on its own TCP port. The model records
// what was reported, independently of every Sluice package.

const (
	testDB      = "sluice_qtest"
	t1Admin     = "t1-admin-token-000000000000000000"
	t1Query     = "t1-query-token-000000000000000000"
	t2Query     = "t2-query-token-000000000000000000"
	s1Token     = "s1-service-token-0000000000000000"
	s1bToken    = "s1b-service-token-000000000000000"
	s2Token     = "s2-service-token-0000000000000000"
	dataFrom    = "2026-10-23T00:00:00Z"
	dataTo      = "2026-11-03T00:00:00Z"
	testParents = "search>hits upload>hits"
)

var parents = map[string]string{"search": "hits", "upload": "hits"}

func testDocument() *catalog.Document {
	metrics := []catalog.MetricSpec{{Name: "hits"}, {Name: "search", Parent: "hits"}, {Name: "upload", Parent: "hits"}, {Name: "bytes"}}
	plans := []catalog.PlanSpec{{ID: "basic"}, {ID: "gold"}, {ID: "blocked", Limits: []catalog.LimitSpec{{Metric: "hits", Period: "minute", Max: 0}}}}
	var apps []catalog.AppSpec
	for i := 0; i < 6; i++ {
		plan := "basic"
		if i%3 == 2 {
			plan = "gold"
		}
		apps = append(apps, catalog.AppSpec{ID: fmt.Sprintf("app%d", i), Plan: plan})
	}
	apps = append(apps, catalog.AppSpec{ID: "app6", Plan: "blocked"}, catalog.AppSpec{ID: "app7", Plan: "basic", State: "suspended"})
	return &catalog.Document{Tenants: []catalog.TenantSpec{
		{ID: "t1", AdminToken: t1Admin, QueryTokens: []string{t1Query}, Services: []catalog.ServiceSpec{
			{ID: "s1", Tokens: []string{s1Token}, AuthMode: "app_id", Metrics: metrics, Plans: plans, Applications: apps},
			{ID: "s1b", Tokens: []string{s1bToken}, AuthMode: "app_id", Metrics: []catalog.MetricSpec{{Name: "hits"}},
				Plans: []catalog.PlanSpec{{ID: "basic"}}, Applications: []catalog.AppSpec{{ID: "app0", Plan: "basic"}, {ID: "solo", Plan: "basic"}}},
		}},
		{ID: "t2", AdminToken: "t2-admin-token-000000000000000000", QueryTokens: []string{t2Query}, Services: []catalog.ServiceSpec{
			{ID: "s2", Tokens: []string{s2Token}, AuthMode: "app_id", Metrics: []catalog.MetricSpec{{Name: "hits"}},
				Plans: []catalog.PlanSpec{{ID: "basic"}}, Applications: []catalog.AppSpec{{ID: "app0", Plan: "basic"}, {ID: "x1", Plan: "basic"}}},
		}},
	}}
}

// rec is one unit of what was reported: usage (metric set, hierarchy
// already applied by the model) or a denial (reason set).
type rec struct {
	tenant, service, app, plan string
	metric, reason             string
	region                     string
	code                       int
	ts                         time.Time
	value                      int64
}

type model struct{ recs []rec }

// action is one call to make: a report transaction or a denied authrep.
type action struct {
	ts                     time.Time
	tenant, service, token string
	app, plan              string
	usage                  map[string]int64
	code                   int
	deny                   string // expected denial reason: the call is an authrep
	region                 int    // which smapi server (0 eu, 1 us)
}

func genActions(seed uint64) []action {
	r := rand.New(rand.NewPCG(seed, 99))
	from, _ := time.Parse(time.RFC3339, dataFrom)
	to, _ := time.Parse(time.RFC3339, dataTo)
	span := to.Sub(from)
	var out []action
	at := func() time.Time { return from.Add(time.Duration(r.Int64N(int64(span/time.Second))) * time.Second) }
	for i := 0; i < 2400; i++ {
		a := action{ts: at(), tenant: "t1", service: "s1", token: s1Token, code: []int{200, 200, 200, 404, 500}[r.IntN(5)], region: r.IntN(2),
			usage: map[string]int64{}}
		n := r.IntN(6)
		a.app = fmt.Sprintf("app%d", n)
		a.plan = "basic"
		if n%3 == 2 {
			a.plan = "gold"
		}
		switch x := r.IntN(10); {
		case x < 5:
			a.usage["hits"] = 1 + r.Int64N(5)
		case x < 7:
			a.usage["search"] = 1 + r.Int64N(3)
		case x < 8:
			a.usage["upload"] = 1 + r.Int64N(9)
			a.usage["bytes"] = 100 + r.Int64N(5000)
		default:
			a.usage["hits"] = 1
			a.usage["search"] = 2
		}
		out = append(out, a)
	}
	// Dense usage around the DST changes, so that the repeated hours count.
	for _, c := range []string{"2026-10-25T00:30:00Z", "2026-11-01T05:30:00Z"} {
		t0, _ := time.Parse(time.RFC3339, c)
		for i := 0; i < 120; i++ {
			out = append(out, action{ts: t0.Add(time.Duration(r.IntN(7200)) * time.Second), tenant: "t1", service: "s1", token: s1Token,
				app: "app1", plan: "basic", code: 200, region: i % 2, usage: map[string]int64{"hits": 1 + r.Int64N(3)}})
		}
	}
	for i := 0; i < 200; i++ { // another service of t1, and another tenant
		svc, tok, tenant, app := "s1b", s1bToken, "t1", []string{"app0", "solo"}[r.IntN(2)]
		if i%2 == 0 {
			svc, tok, tenant, app = "s2", s2Token, "t2", []string{"app0", "x1"}[r.IntN(2)]
		}
		out = append(out, action{ts: at(), tenant: tenant, service: svc, token: tok, app: app, plan: "basic", code: 200,
			usage: map[string]int64{"hits": 1000 + r.Int64N(100)}})
	}
	for i := 0; i < 150; i++ { // denied authreps
		a := action{ts: at(), tenant: "t1", service: "s1", token: s1Token, app: "app6", plan: "blocked", deny: "limits_exceeded", region: r.IntN(2),
			usage: map[string]int64{"hits": 1}}
		if i%3 == 0 {
			a.app, a.plan, a.deny = "app7", "basic", "application_not_active"
		}
		out = append(out, a)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ts.Before(out[j].ts) })
	return out
}

func (m *model) add(a action, region string) {
	if a.deny != "" {
		m.recs = append(m.recs, rec{tenant: a.tenant, service: a.service, app: a.app, plan: a.plan, reason: a.deny, region: region, ts: a.ts, value: 1})
		return
	}
	for metric, v := range a.usage {
		for mm := metric; mm != ""; mm = parents[mm] {
			m.recs = append(m.recs, rec{tenant: a.tenant, service: a.service, app: a.app, plan: a.plan, metric: mm, region: region, code: a.code, ts: a.ts, value: v})
		}
	}
}

type fixture struct {
	conn   driver.Conn
	chAddr string
	store  *catalog.Store
	srv    *Server
	base   string // query API base URL
	model  *model
}

// startPipeline builds the whole pipeline and reports the generated data
// set through it. It returns once ClickHouse holds every event.
func startPipeline(t *testing.T) *fixture {
	t.Helper()
	chs, conn := chtest.Start(t)
	ctx := context.Background()
	if err := chschema.Migrate(ctx, conn, testDB); err != nil {
		t.Fatal(err)
	}
	snap, err := catalog.Build(testDocument(), nil)
	if err != nil {
		t.Fatal(err)
	}
	store := catalog.NewStore(snap)

	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, event.Topic))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(kc.Close)
	brokers := kc.ListenAddrs()
	prod, err := kafka.New(kafka.Options{Brokers: brokers, SpoolDir: t.TempDir(), Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		prod.Close(cctx)
	})
	ru, err := rollup.New(rollup.Options{Brokers: brokers, ClickHouseAddr: chs.Addr(), Database: testDB,
		Hierarchy: rollup.MapHierarchy(parents), MaxBatchWait: 50 * time.Millisecond, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stopRollup := context.WithCancel(context.Background())
	rdone := make(chan struct{})
	go func() { defer close(rdone); ru.Run(rctx) }()
	t.Cleanup(func() { stopRollup(); <-rdone })

	// The Service Management API, twice (two regions), with a settable clock
	// so that reports may carry timestamps of past days.
	var clockNS atomic.Int64
	clock := func() time.Time { return time.Unix(0, clockNS.Load()) }
	lim := limiter.New(limiter.Options{Clock: clock})
	var smapiURLs []string
	for _, region := range []string{"eu", "us"} {
		api := smapi.New(smapi.Options{Catalog: store, Limiter: lim, Sink: prod, Clock: clock, Region: region, Node: "n-" + region})
		hs := smapi.NewServer(api.Handler, smapi.ServerOptions{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go hs.Serve(ln)
		t.Cleanup(func() { hs.Shutdown() })
		smapiURLs = append(smapiURLs, "http://"+ln.Addr().String())
	}

	m := &model{}
	regions := []string{"eu", "us"}
	events := 0
	acts := genActions(7)
	// Reports go in batches per (server, service) that span less than the
	// API's 24 h window; the clock is set to the batch's last timestamp.
	type batchKey struct {
		region  int
		service string
	}
	pending := map[batchKey][]action{}
	flush := func(k batchKey) {
		b := pending[k]
		if len(b) == 0 {
			return
		}
		delete(pending, k)
		clockNS.Store(b[len(b)-1].ts.Add(time.Second).UnixNano())
		form := url.Values{"service_token": {b[0].token}, "service_id": {k.service}}
		for i, a := range b {
			p := fmt.Sprintf("transactions[%d]", i)
			form.Set(p+"[app_id]", a.app)
			form.Set(p+"[timestamp]", strconv.FormatInt(a.ts.Unix(), 10))
			form.Set(p+"[log][code]", strconv.Itoa(a.code))
			for metric, v := range a.usage {
				form.Set(p+"[usage]["+metric+"]", strconv.FormatInt(v, 10))
			}
		}
		resp, err := http.PostForm(smapiURLs[k.region]+"/transactions.xml", form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			t.Fatalf("report: %d %s", resp.StatusCode, body)
		}
		for _, a := range b {
			m.add(a, regions[k.region])
		}
		events += len(b)
	}
	for _, a := range acts {
		k := batchKey{a.region, a.service}
		if a.deny != "" {
			for k := range pending {
				flush(k)
			}
			clockNS.Store(a.ts.UnixNano())
			q := url.Values{"service_token": {a.token}, "service_id": {a.service}, "app_id": {a.app}, "usage[hits]": {"1"}}
			resp, err := http.Get(smapiURLs[a.region] + "/transactions/authrep.xml?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 409 {
				t.Fatalf("authrep of %s: %d %s, want 409", a.app, resp.StatusCode, body)
			}
			m.add(a, regions[a.region])
			events++
			continue
		}
		if b := pending[k]; len(b) > 0 && (len(b) >= 100 || a.ts.Sub(b[0].ts) > 20*time.Hour) {
			flush(k)
		}
		pending[k] = append(pending[k], a)
	}
	for k := range pending {
		flush(k)
	}

	deadline := time.Now().Add(60 * time.Second)
	for ru.Stats().Events < uint64(events) {
		if time.Now().After(deadline) {
			t.Fatalf("rollup folded %d of %d events in 60 s (producer %+v)", ru.Stats().Events, events, prod.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := ru.Stats(); st.Events != uint64(events) || st.Undecodable != 0 {
		t.Fatalf("rollup stats %+v, want %d events", st, events)
	}

	srv, err := New(Options{Catalog: store, Conn: conn, Database: testDB, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, srv)
	return &fixture{conn: conn, chAddr: chs.Addr(), store: store, srv: srv, base: base, model: m}
}

// serve starts srv on a real TCP port and returns its base URL.
func serve(t *testing.T, srv *Server) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

// get calls the query API with a bearer token ("" for none).
func get(t *testing.T, base, token, path string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: read body: %v", path, err)
	}
	return resp.StatusCode, body, resp.Header
}

// checksum summarizes every rollup table, to show that no request changed
// the data. It fingerprints each table's merged content — rows grouped by
// the sorting key, zero sums dropped — because ClickHouse merges parts in the
// background meanwhile, and a SummingMergeTree merge folds rows of one key
// into one and drops rows whose value sums to zero: raw row counts change
// while the data does not.
func checksum(t *testing.T, conn driver.Conn) string {
	t.Helper()
	const setsRow = "written, tenant_id, service_id, app_id, plan_id, metric, t, ts_ms, value, kp, ko"
	var sb strings.Builder
	for _, table := range append(append([]string{}, chschema.RollupTables...), chschema.UsageSets, "schema_migrations") {
		var n, fp uint64
		var s int64
		var q string
		switch table {
		case "schema_migrations":
			q = "SELECT count(), toInt64(0), groupBitXor(cityHash64(version, name, applied)) FROM " + testDB + "." + table
		case chschema.UsageSets:
			q = "SELECT count(), sum(value), groupBitXor(cityHash64(" + setsRow + ")) FROM " + testDB + "." + table
		default:
			q = "SELECT count(), sum(v), groupBitXor(cityHash64(" + chschema.UsageKey + ", v)) FROM (SELECT " + chschema.UsageKey +
				", sum(value) AS v FROM " + testDB + "." + table + " GROUP BY " + chschema.UsageKey + " HAVING v != 0)"
		}
		if err := conn.QueryRow(context.Background(), q).Scan(&n, &s, &fp); err != nil {
			t.Fatalf("checksum %s: %v", table, err)
		}
		fmt.Fprintf(&sb, "%s:%d:%d:%x ", table, n, s, fp)
	}
	var tables uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.tables WHERE database = ?", testDB).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&sb, "tables:%d", tables)
	return sb.String()
}
