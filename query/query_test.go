package query

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
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

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// newTestServer starts ClickHouse with the schema in db and returns a
// connection to it and a Server over testDocument.
func newTestServer(t *testing.T, db string) (driver.Conn, *Server) {
	t.Helper()
	_, conn := chtest.Start(t)
	if err := chschema.Migrate(context.Background(), conn, db); err != nil {
		t.Fatal(err)
	}
	snap, err := catalog.Build(testDocument(), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Catalog: catalog.NewStore(snap), Conn: conn, Database: db, QueryTimeout: 30 * time.Second, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	return conn, srv
}

func quietLog() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// refBucket is one expected bucket: its start and key.
type refBucket struct {
	start time.Time
	key   string
}

// refBuckets computes the expected buckets of [from, to) by walking the
// range minute by minute with the local calendar (localKey): the range is
// widened to whole buckets by walking back from `from` and forward from `to`.
func refBuckets(from, to time.Time, g Granularity, loc *time.Location) []refBucket {
	if g == Total {
		s := from.UTC().Truncate(time.Minute)
		e := to.UTC().Truncate(time.Minute)
		if e.Before(to) {
			e = e.Add(time.Minute)
		}
		return []refBucket{{s, "total"}, {e, ""}}
	}
	start := from.UTC().Truncate(time.Minute)
	k := localKey(start, g, loc)
	for localKey(start.Add(-time.Minute), g, loc) == k {
		start = start.Add(-time.Minute)
	}
	var out []refBucket
	m := start
	for ; m.Before(to) || (len(out) > 0 && localKey(m, g, loc) == out[len(out)-1].key); m = m.Add(time.Minute) {
		if k := localKey(m, g, loc); len(out) == 0 || out[len(out)-1].key != k {
			out = append(out, refBucket{m, k})
		}
	}
	return append(out, refBucket{m, ""}) // the end
}

type seriesResp struct {
	From        string `json:"from"`
	To          string `json:"to"`
	Granularity string `json:"granularity"`
	TZ          string `json:"tz"`
	Series      []struct {
		Group  map[string]any `json:"group"`
		Points []struct {
			T     string `json:"t"`
			Value int64  `json:"value"`
		} `json:"points"`
		Total int64 `json:"total"`
	} `json:"series"`
	Total int64 `json:"total"`
}

// refSeries computes the expected answer from the model: per group key, the
// values per bucket.
func (m *model) refSeries(keep func(rec) bool, groupOf func(rec) string, bs []refBucket, g Granularity, loc *time.Location) (map[string][]int64, int64) {
	index := map[string]int{}
	for i, b := range bs[:len(bs)-1] {
		index[b.key] = i
	}
	out := map[string][]int64{}
	var total int64
	for _, r := range m.recs {
		if !keep(r) || r.ts.Before(bs[0].start) || !r.ts.Before(bs[len(bs)-1].start) {
			continue
		}
		k := "total"
		if g != Total {
			k = localKey(r.ts, g, loc)
		}
		i, ok := index[k]
		if !ok {
			panic("record outside the reference buckets")
		}
		gk := groupOf(r)
		if out[gk] == nil {
			out[gk] = make([]int64, len(bs)-1)
		}
		out[gk][i] += r.value
		total += r.value
	}
	return out, total
}

func groupKeyOf(groupBy string) func(rec) string {
	switch groupBy {
	case "app_id":
		return func(r rec) string { return r.app }
	case "metric":
		return func(r rec) string { return r.metric }
	case "region":
		return func(r rec) string { return r.region }
	case "code":
		return func(r rec) string { return strconv.Itoa(r.code) }
	case "reason":
		return func(r rec) string { return r.reason }
	}
	return func(rec) string { return "" }
}

// checkSeries compares an answer with the reference.
func checkSeries(t *testing.T, name string, body []byte, want map[string][]int64, wantTotal int64, bs []refBucket, groupBy string, loc *time.Location, zeroGroup bool) {
	t.Helper()
	var got seriesResp
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v: %s", name, err, body)
	}
	if got.Total != wantTotal {
		t.Errorf("%s: total %d, want %d", name, got.Total, wantTotal)
	}
	if got.From != bs[0].start.In(loc).Format(time.RFC3339) || got.To != bs[len(bs)-1].start.In(loc).Format(time.RFC3339) {
		t.Errorf("%s: range %s..%s, want %s..%s", name, got.From, got.To, bs[0].start.In(loc).Format(time.RFC3339), bs[len(bs)-1].start.In(loc).Format(time.RFC3339))
	}
	if zeroGroup && len(want) == 0 {
		want = map[string][]int64{"": make([]int64, len(bs)-1)}
	}
	if len(got.Series) != len(want) {
		t.Fatalf("%s: %d series, want %d", name, len(got.Series), len(want))
	}
	for _, s := range got.Series {
		key := ""
		if groupBy != "" {
			key = fmt.Sprint(s.Group[groupBy])
		}
		w, ok := want[key]
		if !ok {
			t.Errorf("%s: unexpected series %v", name, s.Group)
			continue
		}
		if len(s.Points) != len(bs)-1 {
			t.Errorf("%s %q: %d points, want %d", name, key, len(s.Points), len(bs)-1)
			continue
		}
		var sum int64
		for i, p := range s.Points {
			if p.T != bs[i].start.In(loc).Format(time.RFC3339) {
				t.Errorf("%s %q: point %d at %s, want %s", name, key, i, p.T, bs[i].start.In(loc).Format(time.RFC3339))
				break
			}
			if p.Value != w[i] {
				t.Errorf("%s %q: point %s = %d, want %d", name, key, p.T, p.Value, w[i])
			}
			sum += p.Value
		}
		if s.Total != sum {
			t.Errorf("%s %q: series total %d, points sum %d", name, key, s.Total, sum)
		}
	}
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestQueryAPI runs every integration test against one pipeline.
func TestQueryAPI(t *testing.T) {
	f := startPipeline(t)
	before := checksum(t, f.conn)
	t.Run("Series", f.testSeries)
	t.Run("Denials", f.testDenials)
	t.Run("Top", f.testTop)
	t.Run("Export", f.testExport)
	t.Run("Stats", f.testStats)
	t.Run("Isolation", f.testIsolation)
	t.Run("BadInput", f.testBadInput)
	t.Run("Injection", f.testInjection)
	t.Run("Golden", f.testGolden)
	t.Run("OpenAPI", f.testOpenAPI)
	t.Run("Unavailable", f.testUnavailable)
	t.Run("Timeout", f.testTimeout)
	if after := checksum(t, f.conn); after != before {
		t.Errorf("data changed:\nbefore %s\nafter  %s", before, after)
	}
}

func (f *fixture) testSeries(t *testing.T) {
	s1hits := func(app string) func(rec) bool {
		return func(r rec) bool {
			return r.tenant == "t1" && r.service == "s1" && r.metric == "hits" && (app == "" || r.app == app)
		}
	}
	type qcase struct {
		tz, gran, from, to, groupBy, app string
	}
	var cases []qcase
	for _, tz := range []string{"UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata"} {
		for _, g := range []string{"hour", "day", "week", "month", "total"} {
			cases = append(cases, qcase{tz, g, dataFrom, dataTo, "", ""}, qcase{tz, g, "2026-10-24T13:17:00Z", "2026-11-02T03:00:00Z", "app_id", ""})
		}
		cases = append(cases,
			qcase{tz, "minute", "2026-11-01T04:00:00Z", "2026-11-01T09:00:00Z", "", "app1"},
			qcase{tz, "hour", "2026-10-24T20:00:00Z", "2026-10-26T00:00:00Z", "", "app1"},
			qcase{tz, "hour", "2026-10-31T20:00:00Z", "2026-11-02T00:00:00Z", "region", ""},
		)
	}
	cases = append(cases, qcase{"UTC", "day", dataFrom, dataTo, "code", ""}, qcase{"Europe/Berlin", "day", dataFrom, dataTo, "region", "app2"})
	for _, c := range cases {
		name := fmt.Sprintf("%s/%s/%s..%s/%s/%s", c.tz, c.gran, c.from, c.to, c.groupBy, c.app)
		loc, _ := time.LoadLocation(c.tz)
		g, _ := ParseGranularity(c.gran)
		q := url.Values{"service_id": {"s1"}, "metric": {"hits"}, "from": {c.from}, "to": {c.to}, "granularity": {c.gran}, "tz": {c.tz}}
		if c.groupBy != "" {
			q.Set("group_by", c.groupBy)
		}
		if c.app != "" {
			q.Set("app_id", c.app)
		}
		status, body, _ := get(t, f.base, t1Query, "/api/v1/usage?"+q.Encode())
		if status != 200 {
			t.Fatalf("%s: %d %s", name, status, body)
		}
		bs := refBuckets(mustTime(c.from), mustTime(c.to), g, loc)
		want, total := f.model.refSeries(s1hits(c.app), groupKeyOf(c.groupBy), bs, g, loc)
		checkSeries(t, name, body, want, total, bs, c.groupBy, loc, c.groupBy == "")
	}

	// group_by=metric: hits and its children, each its own series; without a
	// metric, every metric.
	for _, metric := range []string{"hits", ""} {
		q := url.Values{"service_id": {"s1"}, "from": {dataFrom}, "to": {dataTo}, "granularity": {"day"}, "tz": {"America/New_York"}, "group_by": {"metric"}}
		if metric != "" {
			q.Set("metric", metric)
		}
		status, body, _ := get(t, f.base, t1Admin, "/api/v1/usage?"+q.Encode())
		if status != 200 {
			t.Fatalf("group_by=metric: %d %s", status, body)
		}
		loc, _ := time.LoadLocation("America/New_York")
		bs := refBuckets(mustTime(dataFrom), mustTime(dataTo), Day, loc)
		want, total := f.model.refSeries(func(r rec) bool {
			return r.tenant == "t1" && r.service == "s1" && r.metric != "" && (metric == "" || r.metric != "bytes")
		}, groupKeyOf("metric"), bs, Day, loc)
		checkSeries(t, "group_by=metric "+metric, body, want, total, bs, "metric", loc, false)
	}
}

func (f *fixture) testDenials(t *testing.T) {
	for _, tz := range []string{"UTC", "America/New_York", "Asia/Kolkata"} {
		for _, g := range []string{"hour", "day", "total"} {
			loc, _ := time.LoadLocation(tz)
			gran, _ := ParseGranularity(g)
			q := url.Values{"service_id": {"s1"}, "from": {dataFrom}, "to": {dataTo}, "granularity": {g}, "tz": {tz}}
			status, body, _ := get(t, f.base, t1Query, "/api/v1/denials?"+q.Encode())
			if status != 200 {
				t.Fatalf("denials: %d %s", status, body)
			}
			bs := refBuckets(mustTime(dataFrom), mustTime(dataTo), gran, loc)
			want, total := f.model.refSeries(func(r rec) bool { return r.tenant == "t1" && r.service == "s1" && r.reason != "" }, groupKeyOf("reason"), bs, gran, loc)
			if total == 0 || len(want) != 2 {
				t.Fatalf("the data set has %d denials in %d reasons", total, len(want))
			}
			checkSeries(t, "denials "+tz+" "+g, body, want, total, bs, "reason", loc, false)
		}
	}
}

func (f *fixture) testTop(t *testing.T) {
	for _, c := range []struct {
		from, to, metric string
		limit            int
	}{
		{dataFrom, dataTo, "hits", 10},
		{"2026-10-24T13:17:42Z", "2026-11-02T03:00:00Z", "hits", 3},
		{"2026-10-25T00:00:00Z", "2026-10-26T00:00:00Z", "search", 10},
		{"2026-11-01T05:10:00Z", "2026-11-01T07:00:00Z", "upload", 2},
	} {
		q := url.Values{"service_id": {"s1"}, "metric": {c.metric}, "from": {c.from}, "to": {c.to}, "limit": {strconv.Itoa(c.limit)}}
		status, body, _ := get(t, f.base, t1Query, "/api/v1/top?"+q.Encode())
		if status != 200 {
			t.Fatalf("top: %d %s", status, body)
		}
		from := mustTime(c.from).Truncate(time.Minute)
		to := mustTime(c.to)
		sums := map[string]int64{}
		for _, r := range f.model.recs {
			if r.tenant == "t1" && r.service == "s1" && r.metric == c.metric && !r.ts.Before(from) && r.ts.Before(to) {
				sums[r.app] += r.value
			}
		}
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
		if len(want) > c.limit {
			want = want[:c.limit]
		}
		var got struct {
			Apps []kv `json:"apps"`
		}
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.Apps) != fmt.Sprint(want) || len(want) == 0 {
			t.Errorf("top %v: got %v, want %v", c, got.Apps, want)
		}
	}
}

func (f *fixture) testExport(t *testing.T) {
	for _, c := range []struct{ month, service, format string }{
		{"2026-10", "", "csv"}, {"2026-11", "", "ndjson"}, {"2026-11", "s1b", "json"}, {"2026-10", "s1", "csv"},
	} {
		q := url.Values{"month": {c.month}, "format": {c.format}}
		if c.service != "" {
			q.Set("service_id", c.service)
		}
		status, body, hdr := get(t, f.base, t1Query, "/api/v1/export?"+q.Encode())
		if status != 200 {
			t.Fatalf("export %v: %d %s", c, status, body)
		}
		if ct := hdr.Get("Content-Type"); ct == "" {
			t.Errorf("export %v: no content type", c)
		}
		got := map[string]int64{}
		switch c.format {
		case "csv":
			rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
			if err != nil || len(rows) == 0 || fmt.Sprint(rows[0]) != "[month tenant_id service_id app_id plan_id metric value]" {
				t.Fatalf("export csv: %v %q", err, body)
			}
			for _, r := range rows[1:] {
				v, _ := strconv.ParseInt(r[6], 10, 64)
				got[fmt.Sprint(r[:6])] += v
			}
		default:
			var rows []map[string]any
			if c.format == "json" {
				if err := json.Unmarshal(body, &rows); err != nil {
					t.Fatalf("export json: %v", err)
				}
			} else {
				for _, line := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
					var r map[string]any
					if err := json.Unmarshal(line, &r); err != nil {
						t.Fatalf("export ndjson line %q: %v", line, err)
					}
					rows = append(rows, r)
				}
			}
			for _, r := range rows {
				k := fmt.Sprint([]any{r["month"], r["tenant_id"], r["service_id"], r["app_id"], r["plan_id"], r["metric"]})
				got[k] += int64(r["value"].(float64))
			}
		}
		want := map[string]int64{}
		for _, r := range f.model.recs {
			if r.tenant == "t1" && r.metric != "" && r.ts.UTC().Format("2006-01") == c.month && (c.service == "" || r.service == c.service) {
				want[fmt.Sprint([]any{c.month, r.tenant, r.service, r.app, r.plan, r.metric})] += r.value
			}
		}
		if len(want) == 0 || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("export %v:\ngot  %v\nwant %v", c, got, want)
		}
	}
	// A month without usage is an empty file, not an error, in every format.
	for format, want := range map[string]string{"ndjson": "", "json": "[]", "csv": "month,tenant_id,service_id,app_id,plan_id,metric,value"} {
		status, body, _ := get(t, f.base, t1Query, "/api/v1/export?month=2026-01&format="+format)
		if status != 200 || strings.TrimSpace(string(body)) != want {
			t.Errorf("empty %s export: %d %q, want 200 %q", format, status, body, want)
		}
	}
}

func (f *fixture) testStats(t *testing.T) {
	type statsResp struct {
		Application *struct {
			ID string `json:"id"`
		} `json:"application"`
		Metric struct {
			SystemName string `json:"system_name"`
		} `json:"metric"`
		Period struct {
			Name, Since, Until, Timezone, Granularity string
		} `json:"period"`
		Total  int64   `json:"total"`
		Values []int64 `json:"values"`
	}
	for _, c := range []struct {
		path, query     string
		app             string
		from, to        string
		gran            Granularity
		tz              string
		wantSince       string
		wantUntil       string
		wantGranularity string
	}{
		{"/stats/services/s1/usage.json", "metric_name=hits&period=day&since=2026-11-01&timezone=America/New_York", "",
			"2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", Hour, "America/New_York", "2026-11-01T00:00:00-04:00", "2026-11-01T23:59:59-05:00", "hour"},
		{"/stats/services/s1/usage.json", "metric_name=search&period=week&since=2026-10-26", "",
			"2026-10-26T00:00:00Z", "2026-11-02T00:00:00Z", Day, "UTC", "2026-10-26T00:00:00Z", "2026-11-01T23:59:59Z", "day"},
		{"/stats/services/s1/usage.json", "metric_name=hits&period=month&since=2026-10-01&granularity=day&timezone=Europe/Berlin", "",
			"2026-09-30T22:00:00Z", "2026-10-31T23:00:00Z", Day, "Europe/Berlin", "2026-10-01T00:00:00+02:00", "2026-10-31T23:59:59+01:00", "day"},
		{"/stats/applications/app1/usage.json", "metric_name=hits&period=day&since=2026-10-25&granularity=hour&timezone=Europe/Berlin&service_id=s1", "app1",
			"2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z", Hour, "Europe/Berlin", "2026-10-25T00:00:00+02:00", "2026-10-25T23:59:59+01:00", "hour"},
		{"/stats/applications/app3/usage.json", "metric_name=hits&period=year&since=2026-01-01", "app3",
			"2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", Month, "UTC", "2026-01-01T00:00:00Z", "2026-12-31T23:59:59Z", "month"},
	} {
		// 3scale tools send access_token as a parameter
		status, body, _ := get(t, f.base, "", c.path+"?"+c.query+"&access_token="+t1Query)
		if status != 200 {
			t.Fatalf("%s?%s: %d %s", c.path, c.query, status, body)
		}
		var got statsResp
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		loc, _ := time.LoadLocation(c.tz)
		bs := refBuckets(mustTime(c.from), mustTime(c.to), c.gran, loc)
		metric := url.Values{}
		metric, _ = url.ParseQuery(c.query)
		want, total := f.model.refSeries(func(r rec) bool {
			return r.tenant == "t1" && r.service == "s1" && r.metric == metric.Get("metric_name") && (c.app == "" || r.app == c.app)
		}, groupKeyOf(""), bs, c.gran, loc)
		w := want[""]
		if w == nil {
			w = make([]int64, len(bs)-1)
		}
		if got.Total != total || fmt.Sprint(got.Values) != fmt.Sprint(w) {
			t.Errorf("%s?%s: total %d values %v, want %d %v", c.path, c.query, got.Total, got.Values, total, w)
		}
		if got.Period.Since != c.wantSince || got.Period.Until != c.wantUntil || got.Period.Granularity != c.wantGranularity {
			t.Errorf("%s?%s: period %+v", c.path, c.query, got.Period)
		}
		if (c.app != "") != (got.Application != nil) || got.Metric.SystemName != metric.Get("metric_name") {
			t.Errorf("%s: application %v metric %v", c.path, got.Application, got.Metric)
		}
	}
}

// testIsolation: a tenant never sees another tenant's data, even for an
// application id both have.
func (f *fixture) testIsolation(t *testing.T) {
	q := "/api/v1/usage?service_id=s2&metric=hits&from=" + dataFrom + "&to=" + dataTo + "&granularity=total"
	if status, body, _ := get(t, f.base, t1Query, q); status != 403 {
		t.Errorf("t1 reading s2: %d %s", status, body)
	}
	status, body, _ := get(t, f.base, t2Query, q+"&group_by=app_id")
	if status != 200 {
		t.Fatalf("t2 reading s2: %d %s", status, body)
	}
	var want int64
	for _, r := range f.model.recs {
		if r.tenant == "t2" {
			want += r.value
		}
	}
	var got seriesResp
	json.Unmarshal(body, &got)
	if got.Total != want || want == 0 {
		t.Errorf("t2 total %d, want %d", got.Total, want)
	}
	// t2's export holds only t2's rows
	_, body, _ = get(t, f.base, t2Query, "/api/v1/export?month=2026-10&format=csv")
	if bytes.Contains(body, []byte(",t1,")) || !bytes.Contains(body, []byte(",t2,s2,")) {
		t.Errorf("t2 export: %s", body)
	}
	if status, body, _ := get(t, f.base, t2Query, "/api/v1/export?month=2026-10&service_id=s1"); status != 403 {
		t.Errorf("t2 exporting s1: %d %s", status, body)
	}
}

// testGolden pins the response shapes.
func (f *fixture) testGolden(t *testing.T) {
	for _, c := range []struct{ name, path, token string }{
		{"usage", "/api/v1/usage?service_id=s1&metric=hits&app_id=app1&from=2026-11-01T04:00:00Z&to=2026-11-01T08:00:00Z&granularity=hour&tz=America/New_York", t1Query},
		{"usage_group_by_region", "/api/v1/usage?service_id=s1&metric=upload&from=2026-10-25T00:00:00Z&to=2026-10-27T00:00:00Z&granularity=day&group_by=region", t1Query},
		{"top", "/api/v1/top?service_id=s1&metric=hits&from=2026-10-25T00:00:00Z&to=2026-10-26T00:00:00Z&limit=3", t1Query},
		{"denials", "/api/v1/denials?service_id=s1&from=2026-10-25T00:00:00Z&to=2026-10-28T00:00:00Z&granularity=day", t1Query},
		{"stats_service", "/stats/services/s1/usage.json?metric_name=hits&period=week&since=2026-10-26", t1Query},
		{"stats_application", "/stats/applications/app2/usage.json?metric_name=search&period=day&since=2026-10-30&granularity=hour&service_id=s1", t1Query},
		{"error", "/api/v1/usage?service_id=s1&metric=hits&granularity=fortnight", t1Query},
		{"export_csv", "/api/v1/export?month=2026-10&service_id=s1b&format=csv", t1Query},
	} {
		_, body, _ := get(t, f.base, c.token, c.path)
		path := filepath.Join("testdata", c.name+".golden")
		if *update {
			os.MkdirAll("testdata", 0o755)
			if err := os.WriteFile(path, body, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -run TestQueryAPI/Golden -update)", err)
		}
		if !bytes.Equal(body, want) {
			t.Errorf("%s:\ngot  %s\nwant %s", c.name, body, want)
		}
	}
}
