package query

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
)

// downConn is a ClickHouse connection that never answers: enough to drive
// every handler up to its query without a server.
type downConn struct{ driver.Conn }

var errDown = errors.New("connection refused")

func (downConn) Query(context.Context, string, ...any) (driver.Rows, error) { return nil, errDown }
func (downConn) Exec(context.Context, string, ...any) error                 { return errDown }

func fuzzServer(tb testing.TB) *Server {
	snap, err := catalog.Build(testDocument(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(Options{Catalog: catalog.NewStore(snap), Conn: downConn{}, Database: "db", Logger: quietLog(),
		Now: func() time.Time { return time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC) }})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// FuzzHandler sends arbitrary request URIs and tokens through the handler:
// it never panics, always answers JSON with a known status, and an error
// answer always carries a code from ErrorCodes.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		"/api/v1/usage?service_id=s1&metric=hits&granularity=day&tz=Europe/Berlin&group_by=app_id",
		"/api/v1/usage?service_id=s1&metric=hits&from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z&granularity=minute",
		"/api/v1/top?service_id=s1&metric=hits&limit=3",
		"/api/v1/denials?service_id=s1&granularity=total",
		"/api/v1/export?month=2026-10&format=ndjson&service_id=s1",
		"/api/v1/alerts?service_id=s1&app_id=app1&limit=2&cursor=1764806400-40868110bdcf40ba86df6a61c145946e",
		"/stats/services/s1/usage.json?metric_name=hits&period=year&since=2026-01-01",
		"/stats/applications/app1/usage.json?metric_name=hits&service_id=s1&timezone=Asia/Kolkata",
		"/api/v1/usage?service_id=s1&metric=hits&app_id=%00%27",
		"/stats/services//usage.json?metric_name=hits", // folded to a path shorter than prefix+suffix
		"/api/v1/utilization?service_id=s1&app_id=app1&metric=hits&period=month&min_ratio=0.9",
		"/api/v1/changes?service_id=s1&app_id=app1&limit=5&from=2026-11-01T00:00:00Z",
		"/api/v1/services",
		"/api/v1/applications?service_id=s1&prefix=app&limit=2",
	} {
		f.Add(s, t1Query)
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, uri, token string) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(uri)
		ctx.Request.Header.SetMethod("GET")
		ctx.Request.Header.Set("Authorization", "Bearer "+token)
		s.Handler(&ctx)
		st := ctx.Response.StatusCode()
		body := ctx.Response.Body()
		if st == 200 {
			if !json.Valid(body) {
				t.Fatalf("%q: 200 with invalid JSON %q", uri, body)
			}
			return
		}
		var e errorBody
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("%q: %d with body %q", uri, st, body)
		}
		if want, ok := ErrorCodes[e.Error.Code]; !ok || want != st || st == 500 {
			t.Fatalf("%q: %d %s", uri, st, body)
		}
	})
}

// FuzzBuckets: for any range, granularity and zone, buckets are strictly
// increasing whole minutes that cover the range, and the plan covers them
// exactly.
func FuzzBuckets(f *testing.F) {
	f.Add(int64(1792800000), int64(86400*3), uint8(2), uint8(1))
	f.Add(int64(1792800000), int64(86400*40), uint8(3), uint8(8))
	f.Add(int64(1761350400), int64(7200), uint8(1), uint8(4))
	f.Fuzz(func(t *testing.T, from, length int64, g, zone uint8) {
		gran := Granularity(g%6 + 1)
		loc, err := time.LoadLocation(testZones[int(zone)%len(testZones)])
		if err != nil {
			t.Fatal(err)
		}
		lo, hi := minTime.Unix(), maxTime.Unix()-40*86400
		from = lo + (from%(hi-lo)+(hi-lo))%(hi-lo)
		length = 1 + (length%(400*86400)+400*86400)%(400*86400)
		a, z := time.Unix(from, 0), time.Unix(from+length, 0)
		b, ok := makeBuckets(a, z, gran, loc, MaxBuckets)
		if !ok {
			return
		}
		if b[0].After(a) || b[len(b)-1].Before(z) {
			t.Fatalf("%v..%v %s %s: buckets %v..%v do not cover", a, z, gran, loc, b[0], b[len(b)-1])
		}
		for i := 0; i < b.n(); i++ {
			if !b[i+1].After(b[i]) || b[i].Second() != 0 {
				t.Fatalf("bad boundaries %v %v", b[i], b[i+1])
			}
		}
		checkPlan(t, planFor(b), b)
	})
}

// FuzzParseSince: any since is a 400 or a time in range, never a panic.
func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"2026-11-01", "2010-1-27", "2026-11-01 10:00:00", "2026-11-01T10:00:00+05:30", "", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tm, e := parseSince(s, time.UTC)
		if e == nil && (tm.Before(minTime) || tm.After(maxTime)) {
			t.Fatalf("%q: %v out of range", s, tm)
		}
		if _, e := parseTime(s, "from"); e != nil && e.code != "invalid_from" {
			t.Fatalf("%q: %v", s, e)
		}
		if _, e := parseTZ(s, "invalid_tz"); e != nil && e.status != 400 {
			t.Fatalf("%q: %v", s, e)
		}
	})
}
