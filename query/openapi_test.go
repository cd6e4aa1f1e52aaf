package query

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/internal/openapitest"
)

func loadOpenAPI(t *testing.T) *openapitest.Doc {
	t.Helper()
	d, err := openapitest.Parse(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fill replaces a path template's parameters with v.
func fill(tmpl, v string) string {
	segs := strings.Split(tmpl, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			segs[i] = v
		}
	}
	return strings.Join(segs, "/")
}

// TestOpenAPIRoutes checks openapi.json against the router, both ways: every
// endpoint constant is documented; every documented path is served (not
// not_found) and answers 405 with Allow "GET, HEAD" to undocumented methods;
// paths the document does not list are not_found. No ClickHouse is needed:
// routing and authentication come before any query.
func TestOpenAPIRoutes(t *testing.T) {
	d := loadOpenAPI(t)
	for _, p := range []string{PathUsage, PathTop, PathDenials, PathExport, PathAlerts, PathHealth, PathOpenAPI,
		statsService + "{service_id}" + statsSuffix, statsApp + "{app_id}" + statsSuffix} {
		if d.Paths[p] == nil {
			t.Errorf("%s is served and not documented", p)
		}
	}
	s := &Server{cat: catalog.NewStore(&catalog.Snapshot{}), log: quietLog()}
	call := func(method, path string) *fasthttp.Response {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(path)
		s.Handler(&ctx)
		var r fasthttp.Response
		ctx.Response.CopyTo(&r)
		return &r
	}
	for p, ops := range d.Paths {
		if len(ops) != 1 || ops["get"] == nil {
			t.Errorf("%s: documented methods %v, the API serves GET (and HEAD)", p, d.Methods(p))
			continue
		}
		op := ops["get"]
		path := fill(p, "x")
		r := call("GET", path)
		want := 401
		if len(op.Responses) == 1 { // /health and /openapi.json: no token
			want = 200
		}
		if r.StatusCode() != want {
			t.Errorf("GET %s without a token: %d %s, want %d", path, r.StatusCode(), r.Body(), want)
		}
		if err := d.CheckResponse(op, r.StatusCode(), string(r.Header.ContentType()), func(h string) string { return string(r.Header.Peek(h)) }, r.Body()); err != nil {
			t.Error(err)
		}
		if p == PathOpenAPI && string(r.Body()) != string(OpenAPI()) {
			t.Error("GET /openapi.json does not answer openapi.json")
		}
		for _, m := range []string{"PUT", "POST", "DELETE", "PATCH"} {
			r := call(m, path)
			if r.StatusCode() != 405 || string(r.Header.Peek("Allow")) != "GET, HEAD" {
				t.Errorf("%s %s: %d Allow %q, want 405 Allow \"GET, HEAD\"", m, path, r.StatusCode(), r.Header.Peek("Allow"))
			}
		}
	}
	for _, path := range []string{"/", "/api/v1", "/api/v1/zz", "/api/v1/usage/zz", "/stats/services/x/zz.json", "/openapi.yaml"} {
		r := call("GET", path)
		if r.StatusCode() != 404 || !strings.Contains(string(r.Body()), `"not_found"`) {
			t.Errorf("GET %s: %d %s, want 404 not_found", path, r.StatusCode(), r.Body())
		}
	}
}

// testOpenAPI calls every documented operation on the pipeline's data, and
// the error answers each documents, and checks each answer against
// openapi.json: status, content type, required headers, body schema.
func (f *fixture) testOpenAPI(t *testing.T) {
	d := loadOpenAPI(t)
	type call struct {
		name, path string
		q          url.Values
		token      string
		status     int
	}
	series := url.Values{"service_id": {"s1"}, "metric": {"hits"}, "from": {dataFrom}, "to": {dataTo}, "granularity": {"day"}, "tz": {"Europe/Berlin"}}
	with := func(v url.Values, kv ...string) url.Values {
		c := url.Values{}
		for k, vs := range v {
			c[k] = slices.Clone(vs)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				c.Del(kv[i])
			} else {
				c.Set(kv[i], kv[i+1])
			}
		}
		return c
	}
	calls := []call{
		{"usage", PathUsage, series, t1Query, 200},
		{"usage by app", PathUsage, with(series, "group_by", "app_id"), t1Query, 200},
		{"usage by code", PathUsage, with(series, "group_by", "code"), t1Query, 200},
		{"usage by metric", PathUsage, with(series, "group_by", "metric", "metric", ""), t1Admin, 200},
		{"usage bad granularity", PathUsage, with(series, "granularity", "fortnight"), t1Query, 400},
		{"usage unknown service", PathUsage, with(series, "service_id", "nope"), t1Query, 404},
		{"usage other tenant", PathUsage, with(series, "service_id", "s2"), t1Query, 403},
		{"usage no token", PathUsage, series, "", 401},
		{"usage bad token", PathUsage, series, "nope", 401},
		{"top", PathTop, url.Values{"service_id": {"s1"}, "metric": {"hits"}, "from": {dataFrom}, "to": {dataTo}, "limit": {"3"}}, t1Query, 200},
		{"top bad limit", PathTop, url.Values{"service_id": {"s1"}, "metric": {"hits"}, "limit": {"0"}}, t1Query, 400},
		{"denials", PathDenials, with(series, "metric", ""), t1Query, 200},
		{"export csv", PathExport, url.Values{"month": {"2026-10"}}, t1Query, 200},
		{"export json", PathExport, url.Values{"month": {"2026-10"}, "format": {"json"}, "service_id": {"s1"}}, t1Query, 200},
		{"export ndjson", PathExport, url.Values{"month": {"2026-11"}, "format": {"ndjson"}}, t1Query, 200},
		{"export bad month", PathExport, url.Values{"month": {"2026-13"}}, t1Query, 400},
		{"alerts", PathAlerts, url.Values{"service_id": {"s1"}, "from": {dataFrom}, "to": {dataTo}}, t1Query, 200},
		{"alerts bad cursor", PathAlerts, url.Values{"cursor": {"x"}}, t1Query, 400},
		{"alerts other tenant", PathAlerts, url.Values{"service_id": {"s2"}}, t1Query, 403},
		{"service stats", "/stats/services/s1/usage.json", url.Values{"metric_name": {"hits"}, "period": {"week"}, "since": {"2026-10-26"}}, t1Query, 200},
		{"service stats access_token", "/stats/services/s1/usage.json", url.Values{"metric_name": {"hits"}, "access_token": {t1Query}}, "", 200},
		{"application stats", "/stats/applications/app1/usage.json", url.Values{"metric_name": {"hits"}, "period": {"day"}, "since": {"2026-10-30"}, "service_id": {"s1"}}, t1Query, 200},
		{"application stats unknown", "/stats/applications/nope/usage.json", url.Values{"metric_name": {"hits"}}, t1Query, 404},
		{"health", PathHealth, nil, "", 200},
		{"openapi", PathOpenAPI, nil, "", 200},
	}
	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			tmpl := c.path
			if strings.HasPrefix(c.path, "/stats/") {
				tmpl = d.Match(c.path)
			}
			op := d.Paths[tmpl]["get"]
			if op == nil {
				t.Fatalf("GET %s is not documented", c.path)
			}
			path := c.path
			if len(c.q) > 0 {
				path += "?" + c.q.Encode()
			}
			status, body, h := get(t, f.base, c.token, path)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			if err := d.CheckResponse(op, status, h.Get("Content-Type"), http.Header(h).Get, body); err != nil {
				t.Error(err)
			}
		})
	}
}
