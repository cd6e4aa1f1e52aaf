package smapi

import (
	"bytes"
	"net"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/internal/metrics"
	"github.com/sluice-dev/sluice/limiter"
)

// fixedNow is a Friday; its day, week and month windows are stable in
// golden files.
var fixedNow = time.Date(2026, 5, 15, 10, 30, 20, 0, time.UTC)

// testDocument has two tenants. acme has a user_key service (default,
// with a child metric and calendar, eternity and sliding limits), an app_id
// service requiring referrer filters, an oauth service and a suspended
// service. beta has one user_key service. Credentials are distinct per
// tenant so that isolation tests can cross them.
func testDocument() *catalog.Document {
	basic := catalog.PlanSpec{ID: "basic", Name: "Basic", Limits: []catalog.LimitSpec{
		{Metric: "hits", Period: "day", Max: 100},
		{Metric: "hits", Period: "eternity", Max: 1000},
		{Metric: "search", Period: "sliding:1m", Max: 5},
	}}
	metricsHS := []catalog.MetricSpec{{Name: "hits"}, {Name: "search", Parent: "hits"}, {Name: "upload", Parent: "hits"}}
	return &catalog.Document{Tenants: []catalog.TenantSpec{
		{
			ID: "acme", AdminToken: "adm-acme",
			Services: []catalog.ServiceSpec{
				{
					ID: "svc-a", Tokens: []string{"st-a"}, ProviderKey: "pk-a", Default: true,
					AuthMode: "user_key", Metrics: metricsHS,
					Plans: []catalog.PlanSpec{basic, {ID: "free", Name: "Free"}},
					Applications: []catalog.AppSpec{
						{ID: "app1", Plan: "basic", UserKey: "uk-a1"},
						{ID: "app2", Plan: "basic", UserKey: "uk-a2"},
						{ID: "app-susp", Plan: "basic", UserKey: "uk-susp", State: "suspended"},
						{ID: "app-free", Plan: "free", UserKey: "uk-free"},
					},
				},
				{
					ID: "svc-ids", Tokens: []string{"st-a"}, ProviderKey: "pk-a",
					AuthMode: "app_id", ReferrerFiltersRequired: true, Metrics: metricsHS,
					Plans: []catalog.PlanSpec{basic},
					Applications: []catalog.AppSpec{
						{ID: "a1", Plan: "basic", Keys: []string{"k1", "k<2>"}, ReferrerFilters: []string{"*.example.com", "localhost"}},
						{ID: "a-nokeys", Plan: "basic"},
					},
				},
				{
					ID: "svc-oauth", Tokens: []string{"st-a"},
					AuthMode: "oauth", Metrics: metricsHS,
					Plans: []catalog.PlanSpec{basic},
					Applications: []catalog.AppSpec{
						{ID: "o1", Plan: "basic", Keys: []string{"secret"}, RedirectURL: "https://example.com/cb"},
					},
				},
				{
					ID: "svc-off", Tokens: []string{"st-a"}, State: "suspended",
					AuthMode: "user_key", Metrics: metricsHS,
					Plans:        []catalog.PlanSpec{basic},
					Applications: []catalog.AppSpec{{ID: "off1", Plan: "basic", UserKey: "uk-off"}},
				},
			},
		},
		{
			ID: "beta", AdminToken: "adm-beta",
			Services: []catalog.ServiceSpec{{
				ID: "svc-b", Tokens: []string{"st-b"}, ProviderKey: "pk-b", Default: true,
				AuthMode: "app_id", Metrics: metricsHS,
				Plans: []catalog.PlanSpec{basic},
				Applications: []catalog.AppSpec{
					{ID: "b1", Plan: "basic", Keys: []string{"kb"}},
				},
			}},
		},
	}}
}

// recordingSink is a MemorySink whose acceptance tests can switch off.
type recordingSink struct {
	event.MemorySink
	refuse   atomic.Bool // Accepting reports false
	failNext atomic.Bool // Append fails (the race after Accepting)
}

func (s *recordingSink) Accepting() bool { return !s.refuse.Load() }

func (s *recordingSink) Append(e *event.Event) error {
	if s.failNext.Load() {
		return sinkError("test sink: full")
	}
	return s.MemorySink.Append(e)
}

type env struct {
	t     testing.TB
	now   atomic.Int64 // unix ns
	store *catalog.Store
	snap  *catalog.Snapshot
	lim   *limiter.Limiter
	sink  *recordingSink
	reg   *metrics.Registry
	srv   *Server
	ready atomic.Bool
}

func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvWith(t, testDocument())
}

// newEnvWith is newEnv over another catalog document.
func newEnvWith(t testing.TB, doc *catalog.Document) *env {
	t.Helper()
	snap, err := catalog.Build(doc, nil)
	if err != nil {
		t.Fatalf("building test catalog: %v", err)
	}
	e := &env{t: t, store: catalog.NewStore(snap), snap: snap, sink: &recordingSink{}, reg: metrics.NewRegistry()}
	e.now.Store(fixedNow.UnixNano())
	e.ready.Store(true)
	clock := func() time.Time { return time.Unix(0, e.now.Load()).UTC() }
	e.lim = limiter.New(limiter.Options{Clock: clock})
	e.srv = New(Options{
		Catalog: e.store, Limiter: e.lim, Sink: e.sink, Clock: clock,
		Region: "eu-1", Node: "n1", Version: "0.1.0-test",
		Ready: e.ready.Load, Metrics: e.reg,
	})
	return e
}

// request describes one call for do.
type request struct {
	method      string
	uri         string
	headers     [][2]string
	contentType string
	body        string
}

// do runs r through the handler in-process and returns the response.
func (e *env) do(r request) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	var req fasthttp.Request
	if r.method == "" {
		r.method = "GET"
	}
	req.Header.SetMethod(r.method)
	req.SetRequestURI(r.uri)
	for _, h := range r.headers {
		req.Header.Set(h[0], h[1])
	}
	if r.contentType != "" {
		req.Header.SetContentType(r.contentType)
	}
	if r.body != "" {
		req.SetBodyString(r.body)
	}
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, nil)
	e.srv.Handler(&ctx)
	var resp fasthttp.Response
	ctx.Response.CopyTo(&resp)
	return &resp
}

// get is do for a GET of uri with optional 3scale-options.
func (e *env) get(uri, opts string) *fasthttp.Response {
	r := request{uri: uri}
	if opts != "" {
		r.headers = [][2]string{{"3scale-options", opts}}
	}
	return e.do(r)
}

// mustStatus fails unless resp has the given status.
func mustStatus(t testing.TB, resp *fasthttp.Response, want int) {
	t.Helper()
	if got := resp.StatusCode(); got != want {
		t.Fatalf("status %d, want %d; body %s", got, want, resp.Body())
	}
}

// dump renders the parts of a response golden files compare: status,
// content type, the 3scale and Allow headers (sorted), and the body.
func dump(resp *fasthttp.Response) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP ")
	b.WriteString(strconv.Itoa(resp.StatusCode()))
	b.WriteByte('\n')
	b.WriteString("Content-Type: ")
	b.Write(resp.Header.ContentType())
	b.WriteByte('\n')
	var hs []string
	for k, v := range resp.Header.All() {
		ks := string(k)
		if len(ks) > 7 && ks[:7] == "3scale-" || ks == "Allow" {
			hs = append(hs, ks+": "+string(v))
		}
	}
	sort.Strings(hs)
	for _, h := range hs {
		b.WriteString(h)
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	b.Write(resp.Body())
	b.WriteByte('\n')
	return b.Bytes()
}
