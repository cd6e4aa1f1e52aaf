package query

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
)

// The queries that once exploded: the widest documented range in zones
// whose month edges are not whole UTC days, a top-N with a thousand long
// candidate ids, a group_by=metric over the most and longest metric names a
// service may have, and a query past its deadline. Usage is written straight
// into the four rollup tables, as the rollup writes it (ingest/rollup), and
// the expected answers are computed from the events alone, with the local
// calendar of time.Location, independently of buckets.go and plan.go.

const xDB = "sluice_xtest"

// xEvent is usage of one metric at one instant.
type xEvent struct {
	tenant, service, app, metric string
	ts                           time.Time
	value                        int64
}

// insertUsage writes each event into usage_minute, usage_hour, usage_day
// and usage_month at the UTC start of its minute, hour, day and month.
func insertUsage(t *testing.T, conn driver.Conn, events []xEvent) {
	t.Helper()
	ctx := context.Background()
	for _, table := range chschema.RollupTables {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO "+xDB+"."+table+" (written, tenant_id, service_id, app_id, plan_id, metric, reason, code, region, t, kp, ko, value)")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			u := e.ts.UTC()
			var row time.Time
			switch table {
			case chschema.UsageMinute:
				row = u.Truncate(time.Minute)
			case chschema.UsageHour:
				row = u.Truncate(time.Hour)
			case chschema.UsageDay:
				row = time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC)
			case chschema.UsageMonth:
				row = time.Date(u.Year(), u.Month(), 1, 0, 0, 0, 0, time.UTC)
			}
			if err := b.Append(time.Now().UTC(), e.tenant, e.service, e.app, "basic", e.metric, "", int16(200), "eu", row, int32(0), int64(0), e.value); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatalf("insert into %s: %v", table, err)
		}
	}
}

// sluiceQueries counts the query API's queries on the server.
func sluiceQueries(t *testing.T, conn driver.Conn) int {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.processes WHERE query_id LIKE 'sluice-query-%'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// goneWithin waits up to d for every query of the query API to leave the
// server, and fails the test when one is still there.
func goneWithin(t *testing.T, conn driver.Conn, d time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		n := sluiceQueries(t, conn)
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: %d queries still on ClickHouse %v after the answer", what, n, d)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// longName is a 255-byte name (catalog.MaxNameLen, catalog.MaxAppIDLen).
func longName(prefix string, i int) string {
	s := fmt.Sprintf("%s%04d-", prefix, i)
	return s + strings.Repeat("x", 255-len(s))
}

// xDocument is testDocument plus service "many": metric "all" with 255
// children of 255-byte names (catalog.MaxMetrics in all).
func xDocument() *catalog.Document {
	doc := testDocument()
	metrics := []catalog.MetricSpec{{Name: "all"}}
	for i := 0; i < catalog.MaxMetrics-1; i++ {
		metrics = append(metrics, catalog.MetricSpec{Name: longName("m", i), Parent: "all"})
	}
	doc.Tenants[0].Services = append(doc.Tenants[0].Services, catalog.ServiceSpec{ID: "many", Tokens: []string{"many-service-token-00000000000000"},
		AuthMode: "app_id", Metrics: metrics, Plans: []catalog.PlanSpec{{ID: "basic"}}, Applications: []catalog.AppSpec{{ID: "app0", Plan: "basic"}}})
	return doc
}

// xEvents is usage of t1/s1 hits across 2000..2100: at year boundaries in
// UTC and in each tested zone, at New York's DST changes, at local month
// edges, just outside the widest range, plus random instants; and noise
// that no query of the test may count (another metric, another tenant).
func xEvents(zones []*time.Location) []xEvent {
	var ts []time.Time
	at := func(t time.Time) {
		for _, d := range []time.Duration{-time.Minute, 0, time.Minute + 17*time.Second} {
			ts = append(ts, t.Add(d))
		}
	}
	for _, y := range []int{2000, 2001, 2025, 2026, 2049, 2050, 2099, 2100} {
		at(time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC))
		for _, loc := range zones {
			at(time.Date(y, 1, 1, 0, 0, 0, 0, loc))
			at(time.Date(y, 3, 1, 0, 0, 0, 0, loc))
		}
	}
	ny, _ := time.LoadLocation("America/New_York")
	for _, y := range []int{2007, 2026, 2083} { // DST changes: 2:00 local, the days they happen
		for _, dst := range []time.Time{nextDST(time.Date(y, 3, 1, 0, 0, 0, 0, ny)), nextDST(time.Date(y, 10, 15, 0, 0, 0, 0, ny))} {
			at(dst)
			at(dst.Add(30 * time.Minute))
		}
	}
	at(time.Date(1999, 11, 15, 0, 0, 0, 0, time.UTC)) // before every zone's first bucket
	at(time.Date(1999, 12, 31, 20, 0, 0, 0, time.UTC))
	at(time.Date(2100, 1, 15, 0, 0, 0, 0, time.UTC)) // inside Kolkata's last bucket only
	at(time.Date(2100, 3, 1, 0, 0, 0, 0, time.UTC))  // after every zone's last bucket
	r := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 300; i++ {
		ts = append(ts, minTime.Add(time.Duration(r.Int64N(int64(maxTime.Sub(minTime)/time.Second)))*time.Second))
	}
	var out []xEvent
	for i, x := range ts {
		out = append(out, xEvent{"t1", "s1", fmt.Sprintf("app%d", i%3), "hits", x, int64(1 + i%7)})
	}
	for i, x := range ts[:40] {
		out = append(out, xEvent{"t1", "s1", "app1", "bytes", x, 1000}, xEvent{"t2", "s2", "app0", "hits", x.Add(time.Duration(i) * time.Hour), 500})
	}
	return out
}

// nextDST returns the first instant at or after t where loc's offset changes.
func nextDST(t time.Time) time.Time {
	_, end := t.ZoneBounds()
	return end
}

// TestExplodingQueries: see the comment at the top of the file.
func TestExplodingQueries(t *testing.T) {
	_, conn := chtest.Start(t)
	ctx := context.Background()
	if err := chschema.Migrate(ctx, conn, xDB); err != nil {
		t.Fatal(err)
	}
	snap, err := catalog.Build(xDocument(), nil)
	if err != nil {
		t.Fatal(err)
	}
	store := catalog.NewStore(snap)
	var zones []*time.Location
	for _, name := range []string{"Asia/Kolkata", "America/New_York", "Etc/GMT-14"} {
		loc, err := time.LoadLocation(name)
		if err != nil {
			t.Fatal(err)
		}
		zones = append(zones, loc)
	}
	events := xEvents(zones)
	insertUsage(t, conn, events)
	srv, err := New(Options{Catalog: store, Conn: conn, Database: xDB, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, srv)

	t.Run("WidestRange", func(t *testing.T) { testWidestRange(t, conn, base, srv.timeout, zones, events) })
	t.Run("TooManyBuckets", func(t *testing.T) { testTooManyBuckets(t, base, zones) })
	t.Run("TopLongCandidates", func(t *testing.T) { testTopLongCandidates(t, conn, base) })
	t.Run("GroupByLongMetrics", func(t *testing.T) { testGroupByLongMetrics(t, conn, base) })
	t.Run("TooManyPoints", func(t *testing.T) { testTooManyPoints(t, conn, base) })
	t.Run("Deadline", func(t *testing.T) { testDeadline(t, conn, store) })
	t.Run("RefusedStatement", func(t *testing.T) { testRefusedStatement(t, srv) })
}

// testWidestRange: monthly and total usage over 2000..2100 in each zone,
// overall and per application, answers 200 within the deadline with every
// bucket equal to the sum of its events, and leaves nothing running.
func testWidestRange(t *testing.T, conn driver.Conn, base string, timeout time.Duration, zones []*time.Location, events []xEvent) {
	from, to := "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"
	monthOf := func(x time.Time, loc *time.Location) string { return x.In(loc).Format("2006-01") }
	for _, loc := range zones {
		for _, c := range []struct{ gran, groupBy string }{{"month", ""}, {"month", "app_id"}, {"total", ""}} {
			name := fmt.Sprintf("%s %s by %q", loc, c.gran, c.groupBy)
			q := url.Values{"service_id": {"s1"}, "metric": {"hits"}, "from": {from}, "to": {to}, "granularity": {c.gran}, "tz": {loc.String()}}
			if c.groupBy != "" {
				q.Set("group_by", c.groupBy)
			}
			start := time.Now()
			status, body, _ := get(t, base, t1Query, "/api/v1/usage?"+q.Encode())
			took := time.Since(start)
			t.Logf("%s: %d in %v", name, status, took.Round(time.Millisecond))
			if status != 200 || took > timeout {
				t.Errorf("%s: %d after %v, want 200 within %v: %.300s", name, status, took, timeout, body)
				goneWithin(t, conn, time.Second, name)
				continue
			}
			goneWithin(t, conn, time.Second, name)
			var got seriesResp
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			// expected, from the events and the local calendar alone
			lo, hi := mustTime(from), mustTime(to)
			first, last := monthOf(lo, loc), monthOf(hi.Add(-time.Nanosecond), loc)
			want := map[string]map[string]int64{} // group -> bucket key -> sum
			var wantTotal int64
			for _, e := range events {
				if e.tenant != "t1" || e.service != "s1" || e.metric != "hits" {
					continue
				}
				k := "total"
				if c.gran == "month" {
					if k = monthOf(e.ts, loc); k < first || k > last {
						continue
					}
				} else if e.ts.Before(lo) || !e.ts.Before(hi) {
					continue
				}
				g := ""
				if c.groupBy == "app_id" {
					g = e.app
				}
				if want[g] == nil {
					want[g] = map[string]int64{}
				}
				want[g][k] += e.value
				wantTotal += e.value
			}
			wantPoints := 1
			if c.gran == "month" {
				fy, _ := strconv.Atoi(first[:4])
				fm, _ := strconv.Atoi(first[5:])
				ly, _ := strconv.Atoi(last[:4])
				lm, _ := strconv.Atoi(last[5:])
				wantPoints = (ly-fy)*12 + lm - fm + 1
			}
			if got.Total != wantTotal || wantTotal == 0 || len(got.Series) != len(want) {
				t.Errorf("%s: total %d in %d series, want %d in %d", name, got.Total, len(got.Series), wantTotal, len(want))
			}
			for _, s := range got.Series {
				g := ""
				if c.groupBy != "" {
					g = fmt.Sprint(s.Group[c.groupBy])
				}
				if len(s.Points) != wantPoints {
					t.Errorf("%s %q: %d points, want %d", name, g, len(s.Points), wantPoints)
					continue
				}
				var sum int64
				for i, p := range s.Points {
					pt, err := time.Parse(time.RFC3339, p.T)
					if err != nil {
						t.Fatalf("%s: point %q: %v", name, p.T, err)
					}
					k := "total"
					if c.gran == "month" {
						k = monthOf(pt, loc)
						if i == 0 && k != first {
							t.Errorf("%s: first bucket %s, want %s", name, k, first)
						}
						if pt.In(loc).Day() != 1 || pt.In(loc).Hour() != 0 || pt.In(loc).Minute() != 0 {
							t.Errorf("%s: bucket starts %s, not at a local month's start", name, p.T)
						}
					}
					if p.Value != want[g][k] {
						t.Errorf("%s %q: bucket %s = %d, want %d", name, g, p.T, p.Value, want[g][k])
					}
					sum += p.Value
				}
				if sum != s.Total {
					t.Errorf("%s %q: points sum %d, series total %d", name, g, sum, s.Total)
				}
			}
		}
	}
}

// testTooManyBuckets: the widest range in finer buckets than months is a
// 400 too_many_buckets at once: never a query ClickHouse cannot answer.
func testTooManyBuckets(t *testing.T, base string, zones []*time.Location) {
	for _, loc := range zones {
		for _, g := range []string{"minute", "hour", "day", "week"} {
			for _, path := range []string{"/api/v1/usage?service_id=s1&metric=hits&", "/api/v1/denials?service_id=s1&"} {
				q := url.Values{"from": {"2000-01-01T00:00:00Z"}, "to": {"2100-01-01T00:00:00Z"}, "granularity": {g}, "tz": {loc.String()}}
				start := time.Now()
				status, body, _ := get(t, base, t1Query, path+q.Encode())
				var e errorBody
				json.Unmarshal(body, &e)
				if status != 400 || e.Error.Code != "too_many_buckets" || time.Since(start) > time.Second {
					t.Errorf("%s%s: %d %s after %v, want 400 too_many_buckets at once", path, q.Encode(), status, body, time.Since(start))
				}
			}
		}
	}
}

// testTopLongCandidates: a top-N over a ragged range where 1,100
// applications with 255-byte ids are all candidates (their whole-hour sums
// tie), so that their ids alone are 280 KB: exact answer.
func testTopLongCandidates(t *testing.T, conn driver.Conn, base string) {
	from, to := mustTime("2030-06-01T10:17:00Z"), mustTime("2030-06-03T20:40:00Z")
	var events []xEvent
	sums := map[string]int64{}
	for i := 0; i < 1100; i++ {
		app := longName("app", i)
		e := []xEvent{
			{"t1", "s1", app, "hits", mustTime("2030-06-02T12:00:00Z"), 5},                         // whole hours: ties
			{"t1", "s1", app, "hits", from.Add(time.Duration(i%50) * time.Minute), int64(i % 13)},  // first ragged hour and after
			{"t1", "s1", app, "hits", to.Add(-time.Duration(1+i%30) * time.Minute), int64(i % 11)}, // last ragged hour
			{"t1", "s1", app, "hits", from.Add(-time.Duration(1+i%17) * time.Minute), int64(1000)}, // before the range
			{"t1", "s1", app, "hits", to.Add(time.Duration(i%19) * time.Minute), int64(1000)},      // after it
			{"t1", "s1", app, "search", mustTime("2030-06-02T12:00:00Z"), int64(1000 + i)},         // another metric
		}
		events = append(events, e...)
		for _, x := range e {
			if x.metric == "hits" && !x.ts.Before(from) && x.ts.Before(to) {
				sums[app] += x.value
			}
		}
	}
	insertUsage(t, conn, events)
	type kv struct {
		App   string `json:"app_id"`
		Value int64  `json:"value"`
	}
	var want []kv
	for a, v := range sums {
		want = append(want, kv{a, v})
	}
	sort.Slice(want, func(i, j int) bool {
		if want[i].Value != want[j].Value {
			return want[i].Value > want[j].Value
		}
		return want[i].App < want[j].App
	})
	want = want[:10]
	q := url.Values{"service_id": {"s1"}, "metric": {"hits"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "limit": {"10"}}
	status, body, _ := get(t, base, t1Query, "/api/v1/top?"+q.Encode())
	if status != 200 {
		t.Fatalf("top over 1,100 long candidates: %d %.300s", status, body)
	}
	var got struct {
		Apps []kv `json:"apps"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got.Apps) != fmt.Sprint(want) {
		t.Errorf("top over 1,100 long candidates:\ngot  %v\nwant %v", got.Apps, want)
	}
	goneWithin(t, conn, time.Second, "top")
}

// testGroupByLongMetrics: group_by=metric under a metric with 255 children
// of 255-byte names (66 KB of names, read from four tables) answers every
// child's exact total.
func testGroupByLongMetrics(t *testing.T, conn driver.Conn, base string) {
	from, to := mustTime("2031-01-14T10:17:00Z"), mustTime("2031-04-02T20:40:00Z")
	var events []xEvent
	want := map[string]int64{}
	for i, x := range []time.Time{from, from.Add(50 * time.Minute), mustTime("2031-01-20T00:00:00Z"), mustTime("2031-02-10T07:00:00Z"),
		mustTime("2031-04-02T03:00:00Z"), to.Add(-time.Minute), to, from.Add(-time.Minute)} {
		m := longName("m", i*31)
		for _, metric := range []string{m, "all"} { // the hierarchy as the rollup applies it
			events = append(events, xEvent{"t1", "many", "app0", metric, x, int64(10 + i)})
			if !x.Before(from) && x.Before(to) {
				want[metric] += int64(10 + i)
			}
		}
	}
	insertUsage(t, conn, events)
	q := url.Values{"service_id": {"many"}, "metric": {"all"}, "group_by": {"metric"}, "granularity": {"total"},
		"from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}}
	status, body, _ := get(t, base, t1Query, "/api/v1/usage?"+q.Encode())
	if status != 200 {
		t.Fatalf("group_by=metric over 256 long names: %d %.300s", status, body)
	}
	var got seriesResp
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	gotTotals := map[string]int64{}
	for _, s := range got.Series {
		gotTotals[fmt.Sprint(s.Group["metric"])] = s.Total
	}
	if fmt.Sprint(gotTotals) != fmt.Sprint(want) || len(want) < 5 {
		t.Errorf("group_by=metric over 256 long names:\ngot  %v\nwant %v", gotTotals, want)
	}
	goneWithin(t, conn, time.Second, "group_by=metric")
}

// testTooManyPoints: 200 applications over a century of months would be
// 240,000 points: a 400 too_many_groups, while their total is answered.
func testTooManyPoints(t *testing.T, conn driver.Conn, base string) {
	var events []xEvent
	for i := 0; i < 200; i++ {
		events = append(events, xEvent{"t1", "many", fmt.Sprintf("p%03d", i), "all", minTime.Add(time.Duration(i) * 97 * 24 * time.Hour), 1})
	}
	insertUsage(t, conn, events)
	q := url.Values{"service_id": {"many"}, "metric": {"all"}, "group_by": {"app_id"}, "granularity": {"month"}, "tz": {"Asia/Kolkata"},
		"from": {"2000-01-01T00:00:00Z"}, "to": {"2100-01-01T00:00:00Z"}}
	status, body, _ := get(t, base, t1Query, "/api/v1/usage?"+q.Encode())
	var e errorBody
	json.Unmarshal(body, &e)
	if status != 400 || e.Error.Code != "too_many_groups" || !strings.Contains(e.Error.Message, "points") {
		t.Errorf("201 series of 1,201 months: %d %.300s, want 400 too_many_groups", status, body)
	}
	q.Set("granularity", "total")
	status, body, _ = get(t, base, t1Query, "/api/v1/usage?"+q.Encode())
	var got seriesResp
	json.Unmarshal(body, &got)
	if status != 200 || len(got.Series) < 200 {
		t.Errorf("201 series of one bucket: %d, %d series: %.300s", status, len(got.Series), body)
	}
	goneWithin(t, conn, time.Second, "too many points")
}

// testDeadline: a query still running at its deadline is answered 503
// query_timeout within the deadline, and ClickHouse confirms it gone within
// a second (system.processes), checked for each query of the query API.
func testDeadline(t *testing.T, conn driver.Conn, store *catalog.Store) {
	// dense minutes on one day, so the slowed-down read takes seconds
	day := mustTime("2040-05-06T00:00:00Z")
	var events []xEvent
	for i := 0; i < 1440; i++ {
		events = append(events, xEvent{"t1", "s1", "app0", "hits", day.Add(time.Duration(i) * time.Minute), 1})
	}
	insertUsage(t, conn, events)
	const timeout = 1500 * time.Millisecond
	srv, err := New(Options{Catalog: store, Conn: conn, Database: xDB, QueryTimeout: timeout, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv.slowdown = "sleepEachRow(0.002) = 0"
	base := serve(t, srv)
	for _, p := range []string{
		"/api/v1/usage?service_id=s1&metric=hits&granularity=minute&from=2040-05-06T00:00:00Z&to=2040-05-07T00:00:00Z",
		"/api/v1/usage?service_id=s1&metric=hits&granularity=month&tz=Asia/Kolkata&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z",
		"/api/v1/top?service_id=s1&metric=hits&from=2040-05-05T23:01:00Z&to=2040-05-07T00:00:00Z",
		"/stats/services/s1/usage.json?metric_name=hits&period=day&since=2040-05-06&granularity=hour",
	} {
		seen := make(chan int, 1)
		go func() { // the query really runs on the server meanwhile
			time.Sleep(timeout / 2)
			var n uint64
			conn.QueryRow(context.Background(), "SELECT count() FROM system.processes WHERE query_id LIKE 'sluice-query-%' AND query LIKE '%sleepEachRow%'").Scan(&n)
			seen <- int(n)
		}()
		start := time.Now()
		status, body, _ := get(t, base, t1Query, p)
		took := time.Since(start)
		var e errorBody
		json.Unmarshal(body, &e)
		if status != 503 || e.Error.Code != "query_timeout" {
			t.Errorf("%s: %d %s, want 503 query_timeout", p, status, body)
		}
		if n := <-seen; n != 1 {
			t.Errorf("%s: %d queries on the server while it ran, want 1", p, n)
		}
		// within the deadline: a few milliseconds for HTTP and scheduling
		if took > timeout+50*time.Millisecond {
			t.Errorf("%s: answered after %v, deadline %v", p, took, timeout)
		}
		goneWithin(t, conn, time.Second, p)
		t.Logf("%s: %d after %v", p, status, took.Round(time.Millisecond))
	}
}

// testRefusedStatement: a statement ClickHouse refuses for its shape would
// be refused again, so it is never a 503 that invites a retry: a 500 (a bug
// of this package, whose statements are bounded).
func testRefusedStatement(t *testing.T, srv *Server) {
	for _, c := range []struct{ name, sql string }{
		{"syntax", "SELECT ("},
		{"over max_query_size", "SELECT 1 WHERE 1 IN (" + strings.Repeat("1, ", 100_000) + "1)"},
		{"AST too big", "SELECT 1 WHERE 1 IN (" + strings.Repeat("1, ", 60_000) + "1) SETTINGS max_query_size = 1000000"},
	} {
		q := &stmt{}
		q.sql.WriteString(c.sql)
		e := srv.run(context.Background(), q, func(driver.Rows) error { return nil })
		if e == nil || e.status != 500 || e.code != "internal_error" {
			t.Errorf("%s: %v, want 500 internal_error", c.name, e)
		}
	}
}
