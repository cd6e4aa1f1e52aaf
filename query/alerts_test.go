package query

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/alerts"
	"github.com/sluice-dev/sluice/ingest/chschema"
)

// TestAlertsEndpoint: GET /api/v1/alerts lists the caller's tenant's
// alerts once each (copies of one id are one alert), filters by service,
// application and time, pages with a cursor, and refuses bad parameters with
// their codes.
func TestAlertsEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ClickHouse")
	}
	conn, srv := newTestServer(t, "sluice")
	base := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	srv.now = func() time.Time { return base.Add(time.Hour) }
	row := func(tenant, service, app string, th uint16, at time.Time, value int64, node string) chschema.AlertRow {
		ws := at.Truncate(time.Minute)
		return chschema.AlertRow{ID: alerts.KeyOf(tenant, service, app, "hits", "minute", ws.Unix(), th), TenantID: tenant, ServiceID: service,
			AppID: app, Metric: "hits", Period: "minute", WindowStart: ws, Threshold: th, Value: value, Max: 10, Time: at, Node: node}
	}
	rows := []chschema.AlertRow{
		row("t1", "s1", "app1", 50, base.Add(1*time.Second), 5, "n1"),
		row("t1", "s1", "app1", 50, base.Add(2*time.Second), 6, "n2"), // a copy seen later by another node
		row("t1", "s1", "app1", 80, base.Add(3*time.Second), 8, "n1"),
		row("t1", "s1", "app2", 50, base.Add(4*time.Second), 5, "n1"),
		row("t1", "s1b", "solo", 100, base.Add(5*time.Second), 10, "n2"),
		row("t2", "s2", "app0", 50, base.Add(6*time.Second), 5, "n1"),                // another tenant's
		row("t1", "s1", "app1", 90, base.Add(-48*time.Hour), 9, "n1"),                // outside the default range
		row("t1", "s1", "app1", 50, base.Add(-47*time.Hour).Add(time.Minute), 5, ""), // another window: another alert
	}
	if err := chschema.InsertAlerts(context.Background(), conn, "sluice", rows); err != nil {
		t.Fatal(err)
	}
	type item struct {
		ID        string `json:"id"`
		ServiceID string `json:"service_id"`
		AppID     string `json:"app_id"`
		Threshold int    `json:"threshold"`
		Value     int64  `json:"value"`
		Time      string `json:"time"`
	}
	type answer struct {
		Alerts []item `json:"alerts"`
		Next   string `json:"next"`
		Error  struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	doc := loadOpenAPI(t)
	call := func(token, query string) (int, answer) {
		var ctx fasthttp.RequestCtx
		ctx.Request.SetRequestURI(PathAlerts + "?" + query)
		ctx.Request.Header.SetMethod("GET")
		ctx.Request.Header.Set("Authorization", "Bearer "+token)
		srv.Handler(&ctx)
		r := &ctx.Response
		if err := doc.CheckResponse(doc.Paths[PathAlerts]["get"], r.StatusCode(), string(r.Header.ContentType()),
			func(h string) string { return string(r.Header.Peek(h)) }, r.Body()); err != nil {
			t.Errorf("%s: %v", query, err)
		}
		var a answer
		if err := json.Unmarshal(ctx.Response.Body(), &a); err != nil {
			t.Fatalf("%s: %v: %s", query, err, ctx.Response.Body())
		}
		return ctx.Response.StatusCode(), a
	}
	keys := func(a answer) (out []string) {
		for _, x := range a.Alerts {
			out = append(out, fmt.Sprintf("%s/%s@%d", x.ServiceID, x.AppID, x.Threshold))
		}
		return out
	}
	from := url.QueryEscape(base.Add(-72 * time.Hour).Format(time.RFC3339))
	for _, c := range []struct {
		name, token, query string
		want               []string
	}{
		{"the tenant's, last 24 h", t1Query, "", []string{"s1/app1@50", "s1/app1@80", "s1/app2@50", "s1b/solo@100"}},
		{"one service", t1Query, "service_id=s1", []string{"s1/app1@50", "s1/app1@80", "s1/app2@50"}},
		{"one application", t1Query, "service_id=s1&app_id=app1", []string{"s1/app1@50", "s1/app1@80"}},
		{"an application of any service", t1Query, "app_id=solo", []string{"s1b/solo@100"}},
		{"a longer range", t1Query, "app_id=app1&from=" + from, []string{"s1/app1@90", "s1/app1@50", "s1/app1@50", "s1/app1@80"}},
		{"the other tenant sees its own", t2Query, "", []string{"s2/app0@50"}},
		{"nothing in range", t1Query, "from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, a := call(c.token, c.query)
			if st != 200 || fmt.Sprint(keys(a)) != fmt.Sprint(c.want) {
				t.Fatalf("%d %v, want %v", st, keys(a), c.want)
			}
		})
	}
	// The first copy is the alert: its value and time.
	if _, a := call(t1Query, "app_id=app1&limit=1"); a.Alerts[0].Value != 5 || a.Alerts[0].Time != "2026-11-03T10:00:01Z" {
		t.Errorf("first copy: %+v", a.Alerts[0])
	}

	// Pages of one, following next, give the whole list once.
	var paged []string
	q := "service_id=s1&limit=1"
	for i := 0; ; i++ {
		if i > 5 {
			t.Fatal("paging does not end")
		}
		st, a := call(t1Query, q)
		if st != 200 || len(a.Alerts) > 1 {
			t.Fatalf("page %d: %d %+v", i, st, a)
		}
		paged = append(paged, keys(a)...)
		if a.Next == "" {
			break
		}
		q = "service_id=s1&limit=1&cursor=" + url.QueryEscape(a.Next)
	}
	if fmt.Sprint(paged) != "[s1/app1@50 s1/app1@80 s1/app2@50]" {
		t.Errorf("paged %v", paged)
	}

	for _, c := range []struct {
		name, query string
		status      int
		code        string
	}{
		{"another tenant's service", "service_id=s2", 403, "forbidden_service"},
		{"unknown service", "service_id=nope", 404, "unknown_service"},
		{"bad app id", "app_id=a%20b", 400, "invalid_app_id"},
		{"limit zero", "limit=0", 400, "invalid_limit"},
		{"limit too big", "limit=1001", 400, "invalid_limit"},
		{"bad from", "from=yesterday", 400, "invalid_from"},
		{"empty range", "from=2026-11-03T10:00:00Z&to=2026-11-03T10:00:00Z", 400, "invalid_range"},
		{"cursor garbage", "cursor=abc", 400, "invalid_cursor"},
		{"cursor id not hex", "cursor=1764806400-zz868110bdcf40ba86df6a61c145946e", 400, "invalid_cursor"},
		{"cursor time out of range", "cursor=99999999999999-40868110bdcf40ba86df6a61c145946e", 400, "invalid_cursor"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, a := call(t1Query, c.query)
			if st != c.status || a.Error.Code != c.code {
				t.Fatalf("%d %s, want %d %s", st, a.Error.Code, c.status, c.code)
			}
		})
	}
	if st, a := call("nope", ""); st != 401 || a.Error.Code != "invalid_token" {
		t.Errorf("unknown token: %d %s", st, a.Error.Code)
	}
}
