package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
	"github.com/sluice-dev/sluice/limiter"
)

// utilDocument has plans with calendar and sliding limits, a metric
// hierarchy, a suspended application and a second tenant with the same ids.
func utilDocument() *catalog.Document {
	metrics := []catalog.MetricSpec{{Name: "hits"}, {Name: "search", Parent: "hits"}}
	plans := []catalog.PlanSpec{
		{ID: "pro", Limits: []catalog.LimitSpec{
			{Metric: "hits", Period: "month", Max: 1000}, {Metric: "hits", Period: "day", Max: 100},
			{Metric: "search", Period: "minute", Max: 10}, {Metric: "hits", Period: "sliding:1m", Max: 5},
			{Metric: "hits", Period: "eternity", Max: 5000}}},
		{ID: "free", Limits: []catalog.LimitSpec{{Metric: "hits", Period: "month", Max: 10}}},
		{ID: "closed", Limits: []catalog.LimitSpec{{Metric: "hits", Period: "week", Max: 0}}},
	}
	return &catalog.Document{Tenants: []catalog.TenantSpec{
		{ID: "t1", AdminToken: t1Admin, QueryTokens: []string{t1Query}, Services: []catalog.ServiceSpec{
			{ID: "s1", Tokens: []string{s1Token}, AuthMode: "app_id", Metrics: metrics, Plans: plans, Applications: []catalog.AppSpec{
				{ID: "a1", Plan: "pro"}, {ID: "a2", Plan: "free"}, {ID: "a3", Plan: "pro", State: "suspended"}, {ID: "a4", Plan: "closed"}}},
		}},
		{ID: "t2", AdminToken: "t2-admin-token-000000000000000000", QueryTokens: []string{t2Query}, Services: []catalog.ServiceSpec{
			{ID: "s2", Tokens: []string{s2Token}, AuthMode: "app_id", Metrics: []catalog.MetricSpec{{Name: "hits"}},
				Plans:        []catalog.PlanSpec{{ID: "free", Limits: []catalog.LimitSpec{{Metric: "hits", Period: "month", Max: 10}}}},
				Applications: []catalog.AppSpec{{ID: "a1", Plan: "free"}}},
		}},
	}}
}

type utilResp struct {
	ServiceID string `json:"service_id"`
	Now       string `json:"now"`
	Limits    []struct {
		AppID       string  `json:"app_id"`
		PlanID      string  `json:"plan_id"`
		State       string  `json:"state"`
		Metric      string  `json:"metric"`
		Period      string  `json:"period"`
		Max         int64   `json:"max"`
		Usage       int64   `json:"usage"`
		Ratio       float64 `json:"ratio"`
		WindowStart string  `json:"window_start"`
		WindowEnd   string  `json:"window_end"`
	} `json:"limits"`
}

func TestUtilization(t *testing.T) {
	_, conn := chtest.Start(t)
	if err := chschema.Migrate(context.Background(), conn, testDB); err != nil {
		t.Fatal(err)
	}
	snap, err := catalog.Build(utilDocument(), nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 18, 10, 30, 20, 0, time.UTC) // a Wednesday
	srv, err := New(Options{Catalog: catalog.NewStore(snap), Conn: conn, Database: testDB, QueryTimeout: 30 * time.Second,
		Logger: quietLog(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	m := func(s string) time.Time { return mustTime(s) }
	// Rollup rows carry the hierarchy: search usage is also in hits.
	rows := []topRow{
		{"t1", "hits", "a1", m("2026-10-31T23:59:00Z"), 999}, // last month: only eternity
		{"t1", "hits", "a1", m("2026-11-03T08:00:00Z"), 400}, // this month
		{"t1", "hits", "a1", m("2026-11-18T09:00:00Z"), 50},  // today
		{"t1", "hits", "a1", m("2026-11-18T10:29:00Z"), 13},  // last minute
		{"t1", "search", "a1", m("2026-11-18T10:29:00Z"), 13},
		{"t1", "hits", "a1", m("2026-11-18T10:30:00Z"), 7}, // this minute
		{"t1", "search", "a1", m("2026-11-18T10:30:00Z"), 7},
		{"t1", "hits", "a2", m("2026-11-01T00:00:00Z"), 9},
		{"t1", "hits", "a3", m("2026-11-17T23:59:00Z"), 1000},  // yesterday: month, not day
		{"t1", "hits", "a4", m("2026-11-16T00:00:00Z"), 3},     // Monday: this week
		{"t1", "hits", "a4", m("2026-11-15T23:59:00Z"), 100},   // Sunday: last week
		{"t2", "hits", "a1", m("2026-11-05T00:00:00Z"), 77777}, // another tenant's rows under s1's id
	}
	insertTopRows(t, srv, rows)
	base := serve(t, srv)

	// The reference: the minute rows of t1/s1 summed over each window.
	sum := func(app, metric string, from, to time.Time) int64 {
		var n int64
		for _, r := range rows {
			if r.tenant == "t1" && r.app == app && r.metric == metric && !r.t.Before(from) && r.t.Before(to) {
				n += r.value
			}
		}
		return n
	}
	type want struct {
		app, metric, period string
		max                 int64
		from, to            time.Time
		state, plan         string
	}
	month, nextMonth := m("2026-11-01T00:00:00Z"), m("2026-12-01T00:00:00Z")
	day, nextDay := m("2026-11-18T00:00:00Z"), m("2026-11-19T00:00:00Z")
	minute := m("2026-11-18T10:30:00Z")
	var all []want
	for _, a := range []struct{ id, state string }{{"a1", "active"}, {"a3", "suspended"}} {
		all = append(all,
			want{a.id, "hits", "month", 1000, month, nextMonth, a.state, "pro"},
			want{a.id, "hits", "day", 100, day, nextDay, a.state, "pro"},
			want{a.id, "search", "minute", 10, minute, minute.Add(time.Minute), a.state, "pro"},
			want{a.id, "hits", "eternity", 5000, time.Unix(0, 0).UTC(), eternityEnd, a.state, "pro"})
	}
	all = append(all, want{"a2", "hits", "month", 10, month, nextMonth, "active", "free"},
		want{"a4", "hits", "week", 0, m("2026-11-16T00:00:00Z"), m("2026-11-23T00:00:00Z"), "active", "closed"})

	cases := []struct {
		name  string
		query string
		keep  func(w want, ratio float64) bool
	}{
		{"every limit", "", func(want, float64) bool { return true }},
		{"one app", "&app_id=a1", func(w want, _ float64) bool { return w.app == "a1" }},
		{"one metric", "&metric=search", func(w want, _ float64) bool { return w.metric == "search" }},
		{"one period", "&period=month", func(w want, _ float64) bool { return w.period == "month" }},
		{"min ratio", "&min_ratio=0.9", func(_ want, r float64) bool { return r >= 0.9 }},
		{"all filters", "&app_id=a2&metric=hits&period=month&min_ratio=0.5", func(w want, r float64) bool {
			return w.app == "a2" && w.period == "month" && r >= 0.5
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := get(t, base, t1Query, "/api/v1/utilization?service_id=s1"+c.query)
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			var got utilResp
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			type line struct {
				key   string
				usage int64
				ratio float64
			}
			var exp []line
			for _, w := range all {
				u := sum(w.app, w.metric, w.from, w.to)
				r := float64(u) / float64(w.max)
				if w.max == 0 {
					r = 1 + float64(u)
				}
				if c.keep(w, r) {
					exp = append(exp, line{fmt.Sprintf("%s %s %s %s %s max=%d %s %s", w.app, w.plan, w.state, w.metric, w.period, w.max,
						w.from.Format(time.RFC3339), w.to.Format(time.RFC3339)), u, r})
				}
			}
			sort.SliceStable(exp, func(i, j int) bool { return exp[i].ratio > exp[j].ratio })
			var gotLines []line
			for _, l := range got.Limits {
				gotLines = append(gotLines, line{fmt.Sprintf("%s %s %s %s %s max=%d %s %s", l.AppID, l.PlanID, l.State, l.Metric, l.Period, l.Max,
					l.WindowStart, l.WindowEnd), l.Usage, l.Ratio})
			}
			// Equal ratios may come in any order the answer documents
			// (app_id, metric, period); compare as sorted by ratio, then key.
			norm := func(ls []line) string {
				sort.SliceStable(ls, func(i, j int) bool {
					if ls[i].ratio != ls[j].ratio {
						return ls[i].ratio > ls[j].ratio
					}
					return ls[i].key < ls[j].key
				})
				return fmt.Sprint(ls)
			}
			for i := 1; i < len(gotLines); i++ {
				if gotLines[i].ratio > gotLines[i-1].ratio {
					t.Errorf("not by ratio descending: %v", gotLines)
				}
			}
			if g, w := norm(gotLines), norm(exp); g != w {
				t.Errorf("\n got %s\nwant %s", g, w)
			}
			if len(exp) == 0 {
				t.Fatal("case selects nothing: a weak case")
			}
		})
	}

	// Nothing selected is an empty list, not null.
	for _, q := range []string{"&min_ratio=1000", "&period=year"} {
		if code, body, _ := get(t, base, t1Query, "/api/v1/utilization?service_id=s1"+q); code != 200 || !strings.Contains(string(body), `"limits":[]`) {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}

	// The data exercise what the cases claim: a limit past 90 %.
	code, body, _ := get(t, base, t1Query, "/api/v1/utilization?service_id=s1&app_id=a2")
	if code != 200 || !json.Valid(body) {
		t.Fatalf("%d %s", code, body)
	}
	var a2 utilResp
	json.Unmarshal(body, &a2)
	if len(a2.Limits) != 1 || a2.Limits[0].Ratio != 0.9 || a2.Limits[0].Usage != 9 {
		t.Errorf("a2: %s", body)
	}

	errs := []struct {
		name, token, query string
		status             int
		code               string
	}{
		{"no service", t1Query, "", 400, "missing_service_id"},
		{"other tenant's service", t2Query, "service_id=s1", 403, "forbidden_service"},
		{"unknown app", t1Query, "service_id=s1&app_id=zz", 404, "unknown_application"},
		{"bad app", t1Query, "service_id=s1&app_id=" + url.QueryEscape("a b"), 400, "invalid_app_id"},
		{"unknown metric", t1Query, "service_id=s1&metric=nope", 404, "unknown_metric"},
		{"sliding period", t1Query, "service_id=s1&period=sliding:1m", 400, "invalid_period"},
		{"bad period", t1Query, "service_id=s1&period=fortnight", 400, "invalid_period"},
		{"negative ratio", t1Query, "service_id=s1&min_ratio=-1", 400, "invalid_min_ratio"},
		{"NaN ratio", t1Query, "service_id=s1&min_ratio=NaN", 400, "invalid_min_ratio"},
		{"huge ratio", t1Query, "service_id=s1&min_ratio=1e400", 400, "invalid_min_ratio"},
		{"no token", "", "service_id=s1", 401, "missing_token"},
	}
	for _, c := range errs {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := get(t, base, c.token, "/api/v1/utilization?"+c.query)
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			json.Unmarshal(body, &e)
			if code != c.status || e.Error.Code != c.code {
				t.Errorf("got %d %s, want %d %s", code, body, c.status, c.code)
			}
		})
	}

	// t2 sees its own a1 only, with its own (no) usage.
	code, body, _ = get(t, base, t2Query, "/api/v1/utilization?service_id=s2")
	var t2 utilResp
	json.Unmarshal(body, &t2)
	if code != 200 || len(t2.Limits) != 1 || t2.Limits[0].Usage != 0 || t2.Limits[0].AppID != "a1" {
		t.Errorf("t2: %d %s", code, body)
	}
}

func TestUtilizationRowsBound(t *testing.T) {
	doc := utilDocument()
	svc := &doc.Tenants[0].Services[0]
	svc.Applications = nil
	for i := 0; i < MaxUtilizationRows/4+1; i++ { // pro has four calendar limits
		svc.Applications = append(svc.Applications, catalog.AppSpec{ID: fmt.Sprintf("b%05d", i), Plan: "pro"})
	}
	snap, err := catalog.Build(doc, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 18, 10, 30, 20, 0, time.UTC)
	s := snap.Services["s1"]
	if _, e := utilizationRows(s, utilizationParams{}, now); e == nil || e.code != "too_many_groups" {
		t.Errorf("over the bound: %v", e)
	}
	rows, e := utilizationRows(s, utilizationParams{period: limiter.Month}, now)
	if e != nil || len(rows) != MaxUtilizationRows/4+1 {
		t.Errorf("filtered to one period: %d rows, %v", len(rows), e)
	}
}
