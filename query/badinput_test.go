package query

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// testBadInput: every malformed parameter gets its own code; the table
// covers every code of ErrorCodes except the 5xx ones (tested below).
func (f *fixture) testBadInput(t *testing.T) {
	const u = "/api/v1/usage?service_id=s1&metric=hits"
	covered := map[string]bool{}
	for _, c := range []struct {
		name, path, token string
		status            int
		code              string
	}{
		{"from not RFC 3339", u + "&from=yesterday", t1Query, 400, "invalid_from"},
		{"from too early", u + "&from=1999-12-31T00:00:00Z", t1Query, 400, "invalid_from"},
		{"to not RFC 3339", u + "&to=2026-11-01", t1Query, 400, "invalid_to"},
		{"to too late", u + "&to=2200-01-01T00:00:00Z", t1Query, 400, "invalid_to"},
		{"from after to", u + "&from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", t1Query, 400, "invalid_range"},
		{"from equals to", u + "&from=2026-11-01T00:00:00Z&to=2026-11-01T00:00:00Z", t1Query, 400, "invalid_range"},
		{"granularity", u + "&granularity=fortnight", t1Query, 400, "invalid_granularity"},
		{"granularity case", u + "&granularity=Hour", t1Query, 400, "invalid_granularity"},
		{"tz unknown", u + "&tz=Mars/Olympus", t1Query, 400, "invalid_tz"},
		{"tz Local", u + "&tz=Local", t1Query, 400, "invalid_tz"},
		{"tz path", u + "&tz=../../../etc/passwd", t1Query, 400, "invalid_tz"},
		{"group_by", u + "&group_by=plan_id", t1Query, 400, "invalid_group_by"},
		{"limit zero", "/api/v1/top?service_id=s1&metric=hits&limit=0", t1Query, 400, "invalid_limit"},
		{"limit huge", "/api/v1/top?service_id=s1&metric=hits&limit=100000", t1Query, 400, "invalid_limit"},
		{"limit text", "/api/v1/top?service_id=s1&metric=hits&limit=ten", t1Query, 400, "invalid_limit"},
		{"alerts limit", "/api/v1/alerts?limit=1001", t1Query, 400, "invalid_limit"},
		{"alerts cursor", "/api/v1/alerts?cursor=12-34", t1Query, 400, "invalid_cursor"},
		{"alerts cursor injection", "/api/v1/alerts?cursor=" + url.QueryEscape("1-' OR 1=1 --0123456789abcdef012"), t1Query, 400, "invalid_cursor"},
		{"app_id empty", u + "&app_id=", t1Query, 400, "invalid_app_id"},
		{"app_id space", u + "&app_id=a%20b", t1Query, 400, "invalid_app_id"},
		{"app_id too long", u + "&app_id=" + strings.Repeat("a", 256), t1Query, 400, "invalid_app_id"},
		{"month", "/api/v1/export?month=2026-13", t1Query, 400, "invalid_month"},
		{"month missing", "/api/v1/export?format=csv", t1Query, 400, "missing_month"},
		{"month future", "/api/v1/export?month=2099-01", t1Query, 400, "future_month"},
		{"format", "/api/v1/export?month=2026-10&format=xlsx", t1Query, 400, "invalid_format"},
		{"period", "/stats/services/s1/usage.json?metric_name=hits&period=fortnight", t1Query, 400, "invalid_period"},
		{"stats granularity", "/stats/services/s1/usage.json?metric_name=hits&granularity=minute", t1Query, 400, "invalid_granularity"},
		{"since", "/stats/services/s1/usage.json?metric_name=hits&since=tomorrow", t1Query, 400, "invalid_since"},
		{"stats timezone", "/stats/services/s1/usage.json?metric_name=hits&timezone=Nowhere", t1Query, 400, "invalid_tz"},
		{"stats too many buckets", "/stats/services/s1/usage.json?metric_name=hits&period=year&granularity=hour", t1Query, 400, "too_many_buckets"},
		{"service missing", "/api/v1/usage?metric=hits", t1Query, 400, "missing_service_id"},
		{"service missing on top", "/api/v1/top?metric=hits", t1Query, 400, "missing_service_id"},
		{"service missing on denials", "/api/v1/denials", t1Query, 400, "missing_service_id"},
		{"app in several services", "/stats/applications/app0/usage.json?metric_name=hits", t1Query, 400, "missing_service_id"},
		{"metric missing", "/api/v1/usage?service_id=s1", t1Query, 400, "missing_metric"},
		{"min_ratio", "/api/v1/utilization?service_id=s1&min_ratio=-0.5", t1Query, 400, "invalid_min_ratio"},
		{"utilization period", "/api/v1/utilization?service_id=s1&period=sliding:1s", t1Query, 400, "invalid_period"},
		{"utilization application", "/api/v1/utilization?service_id=s1&app_id=nosuchapp", t1Query, 404, "unknown_application"},
		{"changes limit", "/api/v1/changes?service_id=s1&limit=0", t1Query, 400, "invalid_limit"},
		{"metric missing on top", "/api/v1/top?service_id=s1", t1Query, 400, "missing_metric"},
		{"metric_name missing", "/stats/services/s1/usage.json", t1Query, 400, "missing_metric"},
		{"minutes over a year", u + "&granularity=minute&from=2025-11-01T00:00:00Z&to=2026-11-01T00:00:00Z", t1Query, 400, "too_many_buckets"},
		{"hours over a year", u + "&granularity=hour&from=2025-11-01T00:00:00Z&to=2026-11-01T00:00:00Z", t1Query, 400, "too_many_buckets"},
		{"no token", u, "", 401, "missing_token"},
		{"unknown token", u, "nope", 401, "invalid_token"},
		{"access_token outside stats", u + "&access_token=" + t1Query, "", 401, "missing_token"},
		{"another tenant's service", "/api/v1/usage?service_id=s2&metric=hits", t1Query, 403, "forbidden_service"},
		{"another tenant's service on stats", "/stats/services/s2/usage.json?metric_name=hits", t1Query, 403, "forbidden_service"},
		{"unknown service", "/api/v1/usage?service_id=nope&metric=hits", t1Query, 404, "unknown_service"},
		{"unknown service on export", "/api/v1/export?month=2026-10&service_id=nope", t1Query, 404, "unknown_service"},
		{"unknown metric", "/api/v1/usage?service_id=s1&metric=nope", t1Query, 404, "unknown_metric"},
		{"unknown metric of another service", "/api/v1/usage?service_id=s1b&metric=search", t1Query, 404, "unknown_metric"},
		{"unknown application", "/stats/applications/nope/usage.json?metric_name=hits", t1Query, 404, "unknown_application"},
		{"unknown application of service", "/stats/applications/solo/usage.json?metric_name=hits&service_id=s1", t1Query, 404, "unknown_application"},
		{"unknown path", "/api/v2/usage", t1Query, 404, "not_found"},
		{"stats without a service id", "/stats/services//usage.json?metric_name=hits", t1Query, 404, "not_found"},
		{"stats without an application id", "/stats/applications//usage.json?metric_name=hits", t1Query, 404, "not_found"},
		{"stats service id that is the suffix", "/stats/services/usage.json", t1Query, 404, "not_found"},
	} {
		status, body, hdr := get(t, f.base, c.token, c.path)
		var e errorBody
		if err := json.Unmarshal(body, &e); err != nil || status != c.status || e.Error.Code != c.code || e.Error.Message == "" {
			t.Errorf("%s: %d %s, want %d %s", c.name, status, body, c.status, c.code)
		}
		if status == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
		covered[c.code] = true
	}
	// method
	req, _ := http.NewRequest("POST", f.base+"/api/v1/usage", nil)
	req.Header.Set("Authorization", "Bearer "+t1Query)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("POST: %d", resp.StatusCode)
	}
	covered["method_not_allowed"] = true
	// malformed HTTP
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("GET /api/v1/usage HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"))
	buf := make([]byte, 512)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(buf)
	conn.Close()
	if !strings.Contains(string(buf[:n]), "400") || !strings.Contains(string(buf[:n]), "bad_request") {
		t.Errorf("malformed request: %q", buf[:n])
	}
	covered["bad_request"] = true
	// Requests the HTTP server cannot read, over raw sockets: each a JSON
	// error with its own code, answered at once.
	for _, c := range []struct {
		name, raw string
		status    int
		code      string
	}{
		{"URL of 16 KiB", "GET /api/v1/usage?x=" + strings.Repeat("a", 16<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"},
		{"headers over 16 KiB", "GET /api/v1/usage HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", 431, "header_too_large"},
		{"body over 64 KiB", "GET /api/v1/usage HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 413, "body_too_large"},
		{"bare LF", "GET /api/v1/usage HTTP/1.1\nHost: x\n\n", 400, "bad_request"},
	} {
		conn, err := net.Dial("tcp", strings.TrimPrefix(f.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte(c.raw))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Errorf("%s: no answer within 5s: %v", c.name, err)
			conn.Close()
			continue
		}
		var eb errorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil || resp.StatusCode != c.status || eb.Error.Code != c.code {
			t.Errorf("%s: %d %+v %v, want %d %s", c.name, resp.StatusCode, eb, err, c.status, c.code)
		}
		conn.Close()
		covered[c.code] = true
	}
	// too many groups, with the bound lowered to 2 (the data has 6 apps)
	few, err := New(Options{Catalog: f.store, Conn: f.conn, Database: testDB, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	few.maxGroups = 2
	status, body, _ := get(t, serve(t, few), t1Query, u+"&group_by=app_id&from="+dataFrom+"&to="+dataTo)
	if status != 400 || !strings.Contains(string(body), "too_many_groups") {
		t.Errorf("too many groups: %d %s", status, body)
	}
	covered["too_many_groups"] = true
	for code, status := range ErrorCodes {
		if status < 500 && !covered[code] {
			t.Errorf("error code %s is not tested", code)
		}
	}
}

// injections are hostile values tried in every parameter.
var injections = []string{
	"'", `"`, `\`, `\'`, "' OR '1'='1", "hits' OR 1=1 --", "x'; DROP TABLE sluice_qtest.usage_minute; --",
	"/* comment */", "hits--", "hits/**/", "' UNION SELECT app_id, 1, 1 FROM sluice_qtest.usage_minute --",
	"s1' UNION ALL SELECT * FROM system.tables --", "ünïcødé", "\u202e", "日本", "\x00", "hits\x00", "a\x00b",
	"%00", "${jndi}", "?", "hits?", "1;KILL QUERY WHERE 1", strings.Repeat("A", 5000),
}

// testInjection puts every injection in every parameter: the answer is a
// 400, or exactly the answer to a clean unknown value; the data never
// changes (TestQueryAPI compares checksums around all subtests).
func (f *fixture) testInjection(t *testing.T) {
	base := map[string]url.Values{
		"/api/v1/usage":                       {"service_id": {"s1"}, "metric": {"hits"}, "app_id": {"app1"}, "from": {dataFrom}, "to": {dataTo}, "granularity": {"day"}, "group_by": {"app_id"}, "tz": {"UTC"}},
		"/api/v1/top":                         {"service_id": {"s1"}, "metric": {"hits"}, "from": {dataFrom}, "to": {dataTo}, "limit": {"5"}},
		"/api/v1/denials":                     {"service_id": {"s1"}, "app_id": {"app6"}, "from": {dataFrom}, "to": {dataTo}, "granularity": {"day"}, "tz": {"UTC"}},
		"/api/v1/export":                      {"month": {"2026-10"}, "service_id": {"s1"}, "format": {"csv"}},
		"/api/v1/alerts":                      {"service_id": {"s1"}, "app_id": {"app1"}, "from": {dataFrom}, "to": {dataTo}, "limit": {"5"}, "cursor": {"1764806400-40868110bdcf40ba86df6a61c145946e"}},
		"/api/v1/utilization":                 {"service_id": {"s1"}, "app_id": {"app1"}, "metric": {"hits"}, "period": {"minute"}, "min_ratio": {"0"}},
		"/api/v1/applications":                {"service_id": {"s1"}, "limit": {"3"}},
		"/stats/services/s1/usage.json":       {"metric_name": {"hits"}, "period": {"week"}, "since": {"2026-10-26"}, "granularity": {"day"}, "timezone": {"UTC"}},
		"/stats/applications/app1/usage.json": {"metric_name": {"hits"}, "period": {"week"}, "since": {"2026-10-26"}, "service_id": {"s1"}},
	}
	clean := map[string]string{"service_id": "nosuchservice", "metric": "nosuchmetric", "metric_name": "nosuchmetric", "app_id": "nosuchapp"}
	tried := 0
	for path, params := range base {
		for name := range params {
			// the answer to a clean unknown value, where one exists
			var cleanStatus int
			var cleanBody []byte
			if cv, ok := clean[name]; ok {
				q := cloneValues(params)
				q.Set(name, cv)
				cleanStatus, cleanBody, _ = get(t, f.base, t1Query, path+"?"+q.Encode())
			}
			for _, inj := range injections {
				q := cloneValues(params)
				q.Set(name, inj)
				status, body, _ := get(t, f.base, t1Query, path+"?"+q.Encode())
				tried++
				if status == 400 {
					continue
				}
				if cleanStatus == 0 {
					t.Errorf("%s %s=%q: %d %s, want 400", path, name, inj, status, body)
					continue
				}
				if status != cleanStatus || string(normalize(body, inj)) != string(normalize(cleanBody, clean[name])) {
					t.Errorf("%s %s=%q: %d %s\nwant as clean unknown: %d %s", path, name, inj, status, body, cleanStatus, cleanBody)
				}
			}
		}
	}
	// and in the stats path ids
	for _, inj := range injections {
		for _, p := range []string{"/stats/services/", "/stats/applications/"} {
			status, body, _ := get(t, f.base, t1Query, p+url.PathEscape(inj)+"/usage.json?metric_name=hits&service_id=s1")
			if status != 400 && status != 404 {
				t.Errorf("%s%q: %d %s", p, inj, status, body)
			}
			tried++
		}
	}
	t.Logf("%d hostile requests", tried)
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// normalize replaces the echoed value in an error message, so that answers
// are compared by meaning: "no service \"x\"" equals "no service \"y\"".
func normalize(body []byte, value string) []byte {
	var e errorBody
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		return []byte(e.Error.Code)
	}
	return body
}

// testUnavailable: a ClickHouse that does not answer is a 503, never a hang.
func (f *fixture) testUnavailable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	dead, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	srv, err := New(Options{Catalog: f.store, Conn: dead, Database: testDB, QueryTimeout: 2 * time.Second, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	base := serve(t, srv)
	for _, p := range []string{
		"/api/v1/usage?service_id=s1&metric=hits", "/api/v1/top?service_id=s1&metric=hits", "/api/v1/denials?service_id=s1",
		"/api/v1/export?month=2026-10", "/stats/services/s1/usage.json?metric_name=hits", "/api/v1/utilization?service_id=s1",
	} {
		start := time.Now()
		status, body, _ := get(t, base, t1Query, p)
		var e errorBody
		json.Unmarshal(body, &e)
		if status != 503 || e.Error.Code != "clickhouse_unavailable" || time.Since(start) > 10*time.Second {
			t.Errorf("%s with ClickHouse down: %d %s after %v", p, status, body, time.Since(start))
		}
	}
}

// testTimeout: a query that runs past its deadline answers 503 and is gone
// from the server. The slowdown seam adds sleepEachRow to the query's WHERE
// (in small blocks), so the query genuinely runs on the server for seconds.
func (f *fixture) testTimeout(t *testing.T) {
	srv, err := New(Options{Catalog: f.store, Conn: f.conn, Database: testDB, QueryTimeout: 700 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv.slowdown = "sleepEachRow(0.002) = 0"
	base := serve(t, srv)
	ctx := context.Background()
	running := func() int {
		var n uint64
		if err := f.conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE query_id LIKE 'sluice-query-%' AND query LIKE '%sleepEachRow%'").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	for _, p := range []string{
		"/api/v1/usage?service_id=s1&metric=hits&granularity=minute&from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z",
		"/api/v1/top?service_id=s1&metric=hits&from=2026-10-24T00:01:00Z&to=2026-11-02T00:00:00Z",
	} {
		seen := make(chan int, 1)
		go func() { // the query is really running on the server meanwhile
			time.Sleep(400 * time.Millisecond)
			seen <- running()
		}()
		start := time.Now()
		status, body, _ := get(t, base, t1Query, p)
		took := time.Since(start)
		var e errorBody
		json.Unmarshal(body, &e)
		if status != 503 || e.Error.Code != "query_timeout" {
			t.Fatalf("%s: %d %s, want 503 query_timeout", p, status, body)
		}
		if n := <-seen; n != 1 {
			t.Errorf("%s: %d matching queries on the server while it ran, want 1", p, n)
		}
		if n := running(); n != 0 {
			t.Errorf("%s: %d queries still on the server after the 503", p, n)
		}
		if took > 5*time.Second {
			t.Errorf("%s: answered after %v", p, took)
		}
	}
}
