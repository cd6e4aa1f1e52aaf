package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/configlog"
)

const (
	acmeTok   = "adm-acme"
	globexTok = "adm-globex"
	acmeSvc   = "2555417777820"
)

// syncBuf is a log sink the test can inspect for leaked secrets.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t      testing.TB
	dir    string
	log    *configlog.FileLog
	proj   *configlog.Projection
	client *fasthttp.Client
	logs   *syncBuf
}

// newEnv starts the admin API over a file log holding testdata's two
// tenants (acme and globex), behind fasthttp's in-memory listener.
func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), logs: &syncBuf{}}
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, err := configlog.OpenFile(e.dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	e.log = l
	e.proj = configlog.NewProjection(l, &catalog.Store{}, catalog.NewKeyRegistry(), logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.proj.Run(ctx) }()
	doc, err := catalog.Load("../catalog/testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer acancel()
	if err := e.proj.Apply(actx, doc); err != nil {
		t.Fatal(err)
	}
	api := New(e.proj, logger, 5*time.Second)
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: api.Handler, MaxRequestBodySize: 4 << 20}
	go srv.Serve(ln)
	e.client = &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }, DisablePathNormalizing: true}
	t.Cleanup(func() {
		srv.Shutdown()
		cancel()
		<-done
		l.Close()
		// Invariant 4: no credential ever reaches the log.
		out := e.logs.String()
		for _, secret := range []string{acmeTok, globexTok, "st-acme", "pk-acme", "uk-1", "uk-2", "secret-1", "k1", "q-acme-1", "whsec-acme-0123456789"} {
			if strings.Contains(out, secret) {
				t.Errorf("log output contains the credential %q:\n%s", secret, out)
			}
		}
	})
	return e
}

type resp struct {
	status int
	body   []byte
	header *fasthttp.ResponseHeader
}

func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

func (e *env) do(method, path, token, body string) resp {
	e.t.Helper()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	res := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI("http://admin" + path)
	req.URI().DisablePathNormalizing = true // keep %2F in ids as sent
	req.Header.SetMethod(method)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.SetContentType("application/json")
		req.SetBodyString(body)
	}
	if err := e.client.DoTimeout(req, res, 10*time.Second); err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	h := &fasthttp.ResponseHeader{}
	res.Header.CopyTo(h)
	return resp{status: res.StatusCode(), body: append([]byte(nil), res.Body()...), header: h}
}

// expect checks the status and, for errors, the JSON error shape and code.
func (e *env) expect(method, path, token, body string, status int, code string) resp {
	e.t.Helper()
	r := e.do(method, path, token, body)
	if r.status != status {
		e.t.Fatalf("%s %s: status %d, want %d\n%s", method, path, r.status, status, r.body)
	}
	if status >= 400 {
		var eb struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.body, &eb); err != nil || eb.Error.Code != code || eb.Error.Message == "" {
			e.t.Fatalf("%s %s: error body %s, want code %q", method, path, r.body, code)
		}
		if ct := string(r.header.ContentType()); ct != "application/json" {
			e.t.Errorf("error content type %q", ct)
		}
	}
	return r
}

func (e *env) doc() *catalog.Document { return e.proj.Document() }

const v1 = "/admin/api/v1"

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	for _, tok := range []string{"", "nope", "q-acme-1", "st-acme", "pk-acme", "uk-1", acmeTok + "x", "adm-acm"} {
		r := e.expect("GET", v1+"/services", tok, "", 401, "unauthorized")
		if !bytes.HasPrefix(r.header.Peek("WWW-Authenticate"), []byte("Bearer")) {
			t.Error("401 without WWW-Authenticate")
		}
	}
	// Other schemes are refused; the scheme name is case-insensitive.
	for _, h := range []string{"Basic " + acmeTok, acmeTok, "Bearer", "Bearer "} {
		req := fasthttp.AcquireRequest()
		res := fasthttp.AcquireResponse()
		req.SetRequestURI("http://admin" + v1 + "/services")
		req.Header.Set("Authorization", h)
		if err := e.client.Do(req, res); err != nil || res.StatusCode() != 401 {
			t.Errorf("Authorization %q: %d %v", h, res.StatusCode(), err)
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(res)
	}
	req := fasthttp.AcquireRequest()
	res := fasthttp.AcquireResponse()
	req.SetRequestURI("http://admin" + v1 + "/services")
	req.Header.Set("Authorization", "bearer "+acmeTok)
	if err := e.client.Do(req, res); err != nil || res.StatusCode() != 200 {
		t.Errorf("lower-case bearer: %d %v", res.StatusCode(), err)
	}
}

func TestGetConfig(t *testing.T) {
	e := newEnv(t)
	r := e.expect("GET", v1+"/config", acmeTok, "", 200, "")
	doc, err := catalog.Parse(r.body, catalog.FormatJSON)
	if err != nil {
		t.Fatal(err)
	}
	want := &catalog.Document{Tenants: []catalog.TenantSpec{*e.doc().Tenant("acme")}}
	if !reflect.DeepEqual(doc, want) {
		t.Errorf("config:\n%s", r.body)
	}
	if err := doc.Validate(); err != nil {
		t.Errorf("exported config invalid: %v", err)
	}
	for _, q := range []string{"?format=yaml", ""} {
		req := fasthttp.AcquireRequest()
		res := fasthttp.AcquireResponse()
		req.SetRequestURI("http://admin" + v1 + "/config" + q)
		req.Header.Set("Authorization", "Bearer "+acmeTok)
		if q == "" {
			req.Header.Set("Accept", "application/yaml")
		}
		if err := e.client.Do(req, res); err != nil || res.StatusCode() != 200 {
			t.Fatalf("yaml export: %d %v", res.StatusCode(), err)
		}
		if ct := string(res.Header.ContentType()); ct != "application/yaml" {
			t.Errorf("content type %q", ct)
		}
		ydoc, err := catalog.Parse(res.Body(), catalog.FormatYAML)
		if err != nil || !reflect.DeepEqual(ydoc, want) {
			t.Errorf("yaml export differs: %v\n%s", err, res.Body())
		}
	}
	e.expect("GET", v1+"/config?format=xml", acmeTok, "", 400, "bad_request")
	e.expect("POST", v1+"/config", acmeTok, "{}", 405, "method_not_allowed")
}

func TestServices(t *testing.T) {
	e := newEnv(t)
	r := e.expect("GET", v1+"/services", acmeTok, "", 200, "")
	if svcs := r.json(t)["services"].([]any); len(svcs) != 2 {
		t.Errorf("acme services: %s", r.body)
	}
	r = e.expect("GET", v1+"/services/"+acmeSvc, acmeTok, "", 200, "")
	if m := r.json(t); m["id"] != acmeSvc || m["provider_key"] != "pk-acme" {
		t.Errorf("service: %s", r.body)
	}
	// Partial PUT: only state changes, everything else is kept.
	e.expect("PUT", v1+"/services/"+acmeSvc, acmeTok, `{"state":"suspended"}`, 200, "")
	s := e.doc().Tenant("acme").Service(acmeSvc)
	if s.State != "suspended" || s.ProviderKey != "pk-acme" || len(s.Applications) != 2 || len(s.Metrics) != 3 {
		t.Errorf("after partial put: %+v", s)
	}
	if e.proj.Store().Load().Services[acmeSvc].State != catalog.Suspended {
		t.Error("snapshot not updated before the answer")
	}
	// Create.
	r = e.expect("PUT", v1+"/services/new-svc", acmeTok, `{"auth_mode":"app_id","metrics":[{"name":"hits"}],"plans":[{"id":"p"}]}`, 201, "")
	if m := r.json(t); m["id"] != "new-svc" || m["auth_mode"] != "app_id" {
		t.Errorf("created: %s", r.body)
	}
	if e.proj.Store().Load().Tenants["acme"].Services["new-svc"] == nil {
		t.Error("created service not in the snapshot")
	}
	// Ids with odd characters travel escaped in the path.
	e.expect("PUT", v1+"/services/"+url.PathEscape("odd/id"), acmeTok, `{}`, 201, "")
	e.expect("GET", v1+"/services/"+url.PathEscape("odd/id"), acmeTok, "", 200, "")
	// Bad bodies.
	e.expect("PUT", v1+"/services/x", acmeTok, `{"id":"y"}`, 422, "invalid_config")
	e.expect("PUT", v1+"/services/x", acmeTok, `not json`, 400, "bad_request")
	e.expect("PUT", v1+"/services/x", acmeTok, `[1]`, 400, "bad_request")
	r = e.expect("PUT", v1+"/services/x", acmeTok, `{"colour":"red","default":"yes"}`, 422, "invalid_config")
	if got := details(t, r); !reflect.DeepEqual(got, []string{"colour: unknown field", "default: expected true or false, got a string"}) {
		t.Errorf("details %q", got)
	}
	r = e.expect("PUT", v1+"/services/x", acmeTok, `{"auth_mode":"magic","default":true}`, 422, "invalid_config")
	// acme's services are sorted by id in the log's state: 2555417777820,
	// acme-oauth, new-svc, odd/id, then the new x.
	want := []string{
		`services[4].default: tenant already has a default service (services[0])`,
		`services[4].auth_mode: unknown auth_mode "magic": want user_key, app_id or oauth`,
	}
	if got := details(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("details %q, want %q", got, want)
	}
	if e.doc().Tenant("acme").Service("x") != nil {
		t.Error("refused service was created")
	}
	// Delete.
	e.expect("DELETE", v1+"/services/new-svc", acmeTok, "", 204, "")
	e.expect("GET", v1+"/services/new-svc", acmeTok, "", 404, "not_found")
	e.expect("DELETE", v1+"/services/new-svc", acmeTok, "", 404, "not_found")
	if e.proj.Store().Load().Services["new-svc"] != nil {
		t.Error("deleted service still in the snapshot")
	}
	r = e.expect("PATCH", v1+"/services/"+acmeSvc, acmeTok, "{}", 405, "method_not_allowed")
	if string(r.header.Peek("Allow")) != "GET, PUT, DELETE" {
		t.Errorf("Allow: %q", r.header.Peek("Allow"))
	}
	e.expect("POST", v1+"/services", acmeTok, "{}", 405, "method_not_allowed")
	e.expect("GET", v1+"/nothing", acmeTok, "", 404, "not_found")
	e.expect("GET", v1+"/services/"+acmeSvc+"/widgets", acmeTok, "", 404, "not_found")
	e.expect("GET", v1+"/services/"+acmeSvc+"/metrics/hits/extra", acmeTok, "", 404, "not_found")
	e.expect("GET", v1+"/services/%zz", acmeTok, "", 400, "bad_request")
}

func details(t *testing.T, r resp) []string {
	t.Helper()
	var eb struct {
		Error struct {
			Details []catalog.Problem `json:"details"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range eb.Error.Details {
		out = append(out, p.String())
	}
	return out
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	base := v1 + "/services/" + acmeSvc + "/metrics"
	r := e.expect("GET", base, acmeTok, "", 200, "")
	if ms := r.json(t)["metrics"].([]any); len(ms) != 3 {
		t.Errorf("metrics: %s", r.body)
	}
	r = e.expect("GET", base+"/search", acmeTok, "", 200, "")
	if m := r.json(t); m["name"] != "search" || m["parent"] != "hits" {
		t.Errorf("metric: %s", r.body)
	}
	ids := func() map[string]uint16 {
		out := map[string]uint16{}
		for n, id := range e.proj.Store().Load().Services[acmeSvc].MetricIndex {
			out[n] = uint16(id)
		}
		return out
	}
	before := ids()
	e.expect("PUT", base+"/export", acmeTok, `{"parent":"hits"}`, 201, "")
	after := ids()
	if after["export"] != 3 || after["hits"] != before["hits"] || after["search"] != before["search"] {
		t.Errorf("new metric must go last, keeping ids: %v -> %v", before, after)
	}
	e.expect("PUT", base+"/export", acmeTok, `{"parent":null}`, 200, "")
	if s := e.doc().Tenant("acme").Service(acmeSvc); s.Metrics[s.Metric("export")].Parent != "" {
		t.Error("parent not reset")
	}
	e.expect("PUT", base+"/export", acmeTok, `{"name":"other"}`, 422, "invalid_config")
	r = e.expect("PUT", base+"/loop", acmeTok, `{"parent":"nope"}`, 422, "invalid_config")
	if got := details(t, r); !reflect.DeepEqual(got, []string{`services[0].metrics[4].parent: unknown metric "nope"`}) {
		t.Errorf("details %q", got)
	}
	// A metric that limits use cannot go.
	r = e.expect("DELETE", base+"/hits", acmeTok, "", 422, "invalid_config")
	if len(details(t, r)) == 0 {
		t.Error("no details")
	}
	e.expect("DELETE", base+"/export", acmeTok, "", 204, "")
	e.expect("DELETE", base+"/export", acmeTok, "", 404, "not_found")
	e.expect("GET", base+"/export", acmeTok, "", 404, "not_found")
	e.expect("POST", base, acmeTok, "{}", 405, "method_not_allowed")
	e.expect("GET", v1+"/services/nope/metrics", acmeTok, "", 404, "not_found")
	e.expect("PUT", v1+"/services/nope/metrics/x", acmeTok, "{}", 404, "not_found")
}

func TestPlansAndLimits(t *testing.T) {
	e := newEnv(t)
	plans := v1 + "/services/" + acmeSvc + "/plans"
	r := e.expect("GET", plans, acmeTok, "", 200, "")
	if ps := r.json(t)["plans"].([]any); len(ps) != 2 {
		t.Errorf("plans: %s", r.body)
	}
	e.expect("GET", plans+"/basic", acmeTok, "", 200, "")
	e.expect("GET", plans+"/gold", acmeTok, "", 404, "not_found")
	e.expect("PUT", plans+"/gold", acmeTok, `{"name":"Gold","limits":[{"metric":"hits","period":"day","max":10}]}`, 201, "")
	e.expect("PUT", plans+"/gold", acmeTok, `{"name":"Gold 2"}`, 200, "")
	if p := e.doc().Tenant("acme").Service(acmeSvc).Plan("gold"); p.Name != "Gold 2" || len(p.Limits) != 1 {
		t.Errorf("plan after partial put: %+v", p)
	}
	r = e.expect("DELETE", plans+"/basic", acmeTok, "", 422, "invalid_config")
	if got := details(t, r); !reflect.DeepEqual(got, []string{`services[0].applications[0].plan: unknown plan "basic"`}) {
		t.Errorf("details %q", got)
	}
	e.expect("DELETE", plans+"/gold", acmeTok, "", 204, "")
	e.expect("DELETE", plans+"/gold", acmeTok, "", 404, "not_found")

	limits := plans + "/basic/limits"
	r = e.expect("GET", limits, acmeTok, "", 200, "")
	if ls := r.json(t)["limits"].([]any); len(ls) != 3 {
		t.Errorf("limits: %s", r.body)
	}
	e.expect("POST", limits, acmeTok, `{"metric":"hits","period":"day","max":500}`, 201, "")
	e.expect("POST", limits, acmeTok, `{"metric":"hits","period":"day","max":1}`, 409, "conflict")
	e.expect("POST", limits, acmeTok, `{"metric":"search","period":"sliding:10000ms","max":1}`, 409, "conflict")
	r = e.expect("POST", limits, acmeTok, `{"metric":"hits","period":"fortnight","max":1}`, 422, "invalid_config")
	if got := details(t, r); !reflect.DeepEqual(got, []string{`services[0].plans[0].limits[4].period: unknown period "fortnight"`}) {
		t.Errorf("details %q", got)
	}
	e.expect("POST", limits, acmeTok, `{"metric":"hits","period":"year","max":-5}`, 422, "invalid_config")
	r = e.expect("GET", limits+"/hits/day", acmeTok, "", 200, "")
	if m := r.json(t); m["max"] != float64(500) {
		t.Errorf("limit: %s", r.body)
	}
	e.expect("PUT", limits+"/hits/day", acmeTok, `{"max":600}`, 200, "")
	e.expect("PUT", limits+"/hits/hour", acmeTok, `{"max":50}`, 201, "")
	e.expect("PUT", limits+"/hits/hour", acmeTok, `{"metric":"search"}`, 422, "invalid_config")
	e.expect("GET", limits+"/search/"+url.PathEscape("sliding:10s"), acmeTok, "", 200, "")
	e.expect("GET", limits+"/search/sliding:10000ms", acmeTok, "", 200, "") // same period
	snapLimits := e.proj.Store().Load().Services[acmeSvc].Plan("basic").Limits
	if len(snapLimits) != 5 || snapLimits[3].Max != 600 || snapLimits[4].Max != 50 {
		t.Errorf("snapshot limits %+v", snapLimits)
	}
	e.expect("DELETE", limits+"/hits/hour", acmeTok, "", 204, "")
	e.expect("DELETE", limits+"/hits/hour", acmeTok, "", 404, "not_found")
	e.expect("GET", limits+"/hits/hour", acmeTok, "", 404, "not_found")
	e.expect("GET", plans+"/nope/limits", acmeTok, "", 404, "not_found")
	e.expect("POST", plans+"/nope/limits", acmeTok, `{"metric":"hits","period":"day","max":1}`, 404, "not_found")
	e.expect("DELETE", limits, acmeTok, "", 405, "method_not_allowed")
	e.expect("GET", plans+"/basic/other", acmeTok, "", 404, "not_found")
}

func TestApplications(t *testing.T) {
	e := newEnv(t)
	apps := v1 + "/services/" + acmeSvc + "/applications"
	r := e.expect("GET", apps, acmeTok, "", 200, "")
	if as := r.json(t)["applications"].([]any); len(as) != 2 {
		t.Errorf("apps: %s", r.body)
	}
	e.expect("GET", apps+"/app1", acmeTok, "", 200, "")
	// New app in user_key mode: the user_key is generated.
	r = e.expect("PUT", apps+"/app3", acmeTok, `{"plan":"free"}`, 201, "")
	uk, _ := r.json(t)["user_key"].(string)
	if len(uk) != 32 {
		t.Fatalf("generated user_key %q", uk)
	}
	if a := e.proj.Store().Load().Services[acmeSvc].AppByUserKey([]byte(uk)); a == nil || a.ID != "app3" {
		t.Error("new app not found by its user_key in the snapshot")
	}
	e.expect("PUT", apps+"/app3", acmeTok, `{"state":"suspended"}`, 200, "")
	if a := e.doc().Tenant("acme").Service(acmeSvc).App("app3"); a.UserKey != uk || a.State != "suspended" || a.Plan != "free" {
		t.Errorf("after partial put: %+v", a)
	}
	r = e.expect("PUT", apps+"/app4", acmeTok, `{"plan":"free","user_key":"uk-1"}`, 422, "invalid_config")
	if got := details(t, r); !reflect.DeepEqual(got, []string{`services[0].applications[3].user_key: duplicate user_key (also services[0].applications[0].user_key)`}) {
		t.Errorf("details %q", got)
	}
	e.expect("PUT", apps+"/app4", acmeTok, `{"plan":"nope"}`, 422, "invalid_config")
	// app_id mode: no user_key generated.
	r = e.expect("PUT", v1+"/services/acme-oauth/applications/o2", acmeTok, `{"plan":"p","redirect_url":"https://a.example/cb"}`, 201, "")
	if _, has := r.json(t)["user_key"]; has {
		t.Errorf("oauth app got a user_key: %s", r.body)
	}
	e.expect("DELETE", apps+"/app3", acmeTok, "", 204, "")
	e.expect("DELETE", apps+"/app3", acmeTok, "", 404, "not_found")
	e.expect("GET", apps+"/app3", acmeTok, "", 404, "not_found")
	if e.proj.Store().Load().Services[acmeSvc].AppByUserKey([]byte(uk)) != nil {
		t.Error("deleted app still found by user_key")
	}
	e.expect("POST", apps, acmeTok, "{}", 405, "method_not_allowed")
}

func TestKeys(t *testing.T) {
	e := newEnv(t)
	keys := v1 + "/services/globex-1/applications/g1/keys"
	r := e.expect("GET", keys, globexTok, "", 200, "")
	if !reflect.DeepEqual(r.json(t)["keys"], []any{"k1", "k2"}) {
		t.Errorf("keys: %s", r.body)
	}
	e.expect("POST", keys, globexTok, `{"key":"k3"}`, 201, "")
	e.expect("POST", keys, globexTok, `{"key":"k3"}`, 409, "conflict")
	r = e.expect("POST", keys, globexTok, ``, 201, "")
	gen, _ := r.json(t)["key"].(string)
	if len(gen) != 32 {
		t.Errorf("generated key %q", gen)
	}
	e.expect("POST", keys, globexTok, `{"key":"k","extra":1}`, 400, "bad_request")
	e.expect("POST", keys, globexTok, `{"key":"has space"}`, 422, "invalid_config")
	e.expect("PUT", keys+"/k9", globexTok, "", 201, "")
	e.expect("PUT", keys+"/k9", globexTok, "", 200, "")
	e.expect("GET", keys+"/k9", globexTok, "", 200, "")
	if a := e.proj.Store().Load().Services["globex-1"].App("g1"); !reflect.DeepEqual(a.Keys, []string{"k1", "k2", "k3", gen, "k9"}) {
		t.Errorf("snapshot keys %q", a.Keys)
	}
	e.expect("DELETE", keys+"/k9", globexTok, "", 204, "")
	e.expect("DELETE", keys+"/k9", globexTok, "", 404, "not_found")
	e.expect("GET", keys+"/k9", globexTok, "", 404, "not_found")
	// No app keys in user_key mode.
	r = e.expect("POST", v1+"/services/"+acmeSvc+"/applications/app1/keys", acmeTok, `{"key":"x"}`, 422, "invalid_config")
	if got := details(t, r); !reflect.DeepEqual(got, []string{"services[0].applications[0].keys: app keys are not allowed in user_key mode"}) {
		t.Errorf("details %q", got)
	}
	e.expect("GET", v1+"/services/globex-1/applications/nope/keys", globexTok, "", 404, "not_found")
	e.expect("DELETE", keys, globexTok, "", 405, "method_not_allowed")
}

func TestReferrerFilters(t *testing.T) {
	e := newEnv(t)
	rf := v1 + "/services/acme-oauth/applications/oapp/referrer_filters"
	r := e.expect("GET", rf, acmeTok, "", 200, "")
	if !reflect.DeepEqual(r.json(t)["referrer_filters"], []any{"*.example.com", "localhost:8080"}) {
		t.Errorf("filters: %s", r.body)
	}
	e.expect("POST", rf, acmeTok, `{"filter":"api.example.org"}`, 201, "")
	e.expect("POST", rf, acmeTok, `{"filter":"api.example.org"}`, 409, "conflict")
	r = e.expect("POST", rf, acmeTok, `{"filter":"http://bad/"}`, 422, "invalid_config")
	if got := details(t, r); len(got) != 1 || !strings.HasPrefix(got[0], "services[1].applications[0].referrer_filters[3]: invalid referrer filter") {
		t.Errorf("details %q", got)
	}
	e.expect("GET", rf+"/"+url.PathEscape("*.example.com"), acmeTok, "", 200, "")
	e.expect("DELETE", rf+"/"+url.PathEscape("*.example.com"), acmeTok, "", 204, "")
	e.expect("DELETE", rf+"/"+url.PathEscape("*.example.com"), acmeTok, "", 404, "not_found")
	e.expect("PUT", rf, acmeTok, `["a.example.com","*.b.example.com"]`, 200, "")
	if a := e.proj.Store().Load().Services["acme-oauth"].App("oapp"); !reflect.DeepEqual(a.ReferrerFilters, []string{"a.example.com", "*.b.example.com"}) {
		t.Errorf("snapshot filters %q", a.ReferrerFilters)
	}
	e.expect("PUT", rf, acmeTok, `{"a":1}`, 422, "invalid_config")
	e.expect("PUT", rf, acmeTok, `[`, 400, "bad_request")
	e.expect("PUT", rf, acmeTok, `[]`, 200, "")
	if a := e.doc().Tenant("acme").Service("acme-oauth").App("oapp"); a.ReferrerFilters != nil {
		t.Errorf("filters after clearing %q", a.ReferrerFilters)
	}
	e.expect("DELETE", rf, acmeTok, "", 405, "method_not_allowed")
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t)
	big := `{"name":"` + strings.Repeat("x", MaxBodySize) + `"}`
	e.expect("PUT", v1+"/services/"+acmeSvc+"/plans/big", acmeTok, big, 413, "body_too_large")
	if e.doc().Tenant("acme").Service(acmeSvc).Plan("big") != nil {
		t.Error("oversized body applied")
	}
}

// TestTenantIsolation: globex's admin token on every route of acme's
// resources, with every method, answers 404 (or 409 for taking a service id)
// and changes nothing; and the other way round.
func TestTenantIsolation(t *testing.T) {
	e := newEnv(t)
	type target struct{ owner, intruder, svc, app, plan, key, filter string }
	targets := []target{
		{acmeTok, globexTok, acmeSvc, "app1", "basic", "k", "f"},
		{acmeTok, globexTok, "acme-oauth", "oapp", "p", "secret-1", url.PathEscape("*.example.com")},
		{globexTok, acmeTok, "globex-1", "g1", "gold", "k1", "f"},
	}
	bodies := map[string]string{"GET": "", "DELETE": "", "PUT": `{}`, "POST": `{"key":"x","filter":"x.example.com","metric":"hits","period":"day","max":1}`}
	for _, tg := range targets {
		before := e.expect("GET", v1+"/config", tg.owner, "", 200, "").body
		s := v1 + "/services/" + url.PathEscape(tg.svc)
		routes := []string{
			s, s + "/metrics", s + "/metrics/hits",
			s + "/plans", s + "/plans/" + tg.plan, s + "/plans/" + tg.plan + "/limits", s + "/plans/" + tg.plan + "/limits/hits/minute",
			s + "/applications", s + "/applications/" + tg.app,
			s + "/applications/" + tg.app + "/keys", s + "/applications/" + tg.app + "/keys/" + tg.key,
			s + "/applications/" + tg.app + "/referrer_filters", s + "/applications/" + tg.app + "/referrer_filters/" + tg.filter,
		}
		for _, route := range routes {
			for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
				r := e.do(m, route, tg.intruder, bodies[m])
				switch {
				case r.status == 404 || r.status == 405:
				case r.status == 409 && m == "PUT" && route == s:
					// Taking another tenant's service id: refused as taken.
					if strings.Contains(string(r.body), "tenant") {
						t.Errorf("409 says too much: %s", r.body)
					}
				default:
					t.Errorf("%s %s with the other tenant's token: %d %s", m, route, r.status, r.body)
				}
				if r.status == 405 {
					// 405 depends on the route only, never on the
					// resource; GET is allowed everywhere and must be 404.
					if g := e.do("GET", route, tg.intruder, ""); g.status != 404 {
						t.Errorf("GET %s with the other tenant's token: %d", route, g.status)
					}
				}
				if strings.Contains(string(r.body), tg.svc) && r.status != 409 {
					t.Errorf("%s %s leaks the resource: %s", m, route, r.body)
				}
			}
		}
		after := e.expect("GET", v1+"/config", tg.owner, "", 200, "").body
		if !bytes.Equal(before, after) {
			t.Errorf("the other tenant's requests changed %s's configuration", tg.svc)
		}
	}
	// The whole-config export shows only the caller's tenant.
	r := e.expect("GET", v1+"/config", globexTok, "", 200, "")
	if bytes.Contains(r.body, []byte("acme")) || !bytes.Contains(r.body, []byte("globex")) {
		t.Errorf("globex export: %s", r.body)
	}
	r = e.expect("GET", v1+"/services", globexTok, "", 200, "")
	if bytes.Contains(r.body, []byte("acme")) || bytes.Contains(r.body, []byte(acmeSvc)) {
		t.Errorf("globex service list: %s", r.body)
	}
	// Colliding with another tenant's secret is refused without saying where.
	r = e.expect("PUT", v1+"/services/globex-1", globexTok, `{"provider_key":"pk-acme"}`, 422, "invalid_config")
	if got := details(t, r); !reflect.DeepEqual(got, []string{"services[0].provider_key: already in use by another tenant"}) {
		t.Errorf("details %q", got)
	}
	if bytes.Contains(r.body, []byte("tenants[")) || bytes.Contains(r.body, []byte("acme")) {
		t.Errorf("refusal mentions the other tenant: %s", r.body)
	}
	// Taking acme's service id.
	e.expect("PUT", v1+"/services/"+acmeSvc, globexTok, `{}`, 409, "conflict")
	if e.proj.Store().Load().Services[acmeSvc].Tenant.ID != "acme" {
		t.Error("service changed hands")
	}
}

// TestChangesSurviveRestart: what the admin API wrote is there after the
// process restarts (a new projection over the reopened log).
func TestChangesSurviveRestart(t *testing.T) {
	e := newEnv(t)
	e.expect("PUT", v1+"/services/"+acmeSvc+"/plans/gold", acmeTok, `{"limits":[{"metric":"hits","period":"week","max":7}]}`, 201, "")
	e.expect("DELETE", v1+"/services/globex-1/applications/g1/keys/k2", globexTok, "", 204, "")
	want := e.doc()
	e.log.Close()
	l, err := configlog.OpenFile(e.dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	p := configlog.NewProjection(l, &catalog.Store{}, nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go p.Run(ctx)
	if err := p.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(p.Document(), want) {
		t.Error("configuration after restart differs")
	}
	if p.Store().Load().Services[acmeSvc].Plan("gold") == nil {
		t.Error("plan gold lost")
	}
}

func TestPrefixRequired(t *testing.T) {
	e := newEnv(t)
	e.expect("GET", "/other/services", acmeTok, "", 404, "not_found")
	e.expect("GET", v1+"/services/", acmeTok, "", 200, "") // trailing slash
	e.expect("GET", v1+"/", acmeTok, "", 404, "not_found")
}

// BenchmarkPutLimit measures one admin change end to end: validation, log
// append with fsync, projection rebuild, answer.
func BenchmarkPutLimit(b *testing.B) {
	e := newEnv(b)
	path := v1 + "/services/" + acmeSvc + "/plans/basic/limits/hits/minute"
	i := 0
	for b.Loop() {
		i++
		if r := e.do("PUT", path, acmeTok, fmt.Sprintf(`{"max":%d}`, i)); r.status != 200 {
			b.Fatalf("status %d: %s", r.status, r.body)
		}
	}
}

// TestLimitConsistency: a limit's consistency is set and read through the
// admin API, decides whether the plan is exact, and is validated.
func TestLimitConsistency(t *testing.T) {
	e := newEnv(t)
	limits := v1 + "/services/" + acmeSvc + "/plans/basic/limits"
	exact := func() bool { return e.proj.Store().Load().Services[acmeSvc].Plan("basic").Exact }
	if !exact() {
		t.Fatal("a plan whose limits do not say is not exact")
	}
	for _, l := range e.doc().Tenant("acme").Service(acmeSvc).Plan("basic").Limits {
		e.expect("PUT", limits+"/"+l.Metric+"/"+url.PathEscape(l.Period), acmeTok, `{"consistency":"local"}`, 200, "")
	}
	if exact() {
		t.Error("a plan whose limits are all local is exact")
	}
	r := e.expect("GET", limits+"/hits/minute", acmeTok, "", 200, "")
	if m := r.json(t); m["consistency"] != "local" {
		t.Errorf("limit: %s", r.body)
	}
	e.expect("POST", limits, acmeTok, `{"metric":"hits","period":"day","max":5,"consistency":"exact"}`, 201, "")
	if !exact() {
		t.Error("a plan with an exact limit is not exact")
	}
	r = e.expect("PUT", limits+"/hits/day", acmeTok, `{"consistency":"eventual"}`, 422, "invalid_config")
	if got := details(t, r); len(got) != 1 || !strings.Contains(got[0], `consistency: unknown consistency "eventual"`) {
		t.Errorf("details %q", got)
	}
}

// TestLimitScope: a limit's scope is set and read through the admin API,
// decides whether peer regions' usage counts toward it, and is validated.
func TestLimitScope(t *testing.T) {
	e := newEnv(t)
	limits := v1 + "/services/" + acmeSvc + "/plans/basic/limits"
	global := func() int { return len(e.proj.Store().Load().Services[acmeSvc].Plan("basic").Global) }
	all := len(e.doc().Tenant("acme").Service(acmeSvc).Plan("basic").Limits)
	if global() != all {
		t.Fatalf("%d global limits of %d: a limit that does not say is global", global(), all)
	}
	e.expect("PUT", limits+"/hits/minute", acmeTok, `{"scope":"region"}`, 200, "")
	if global() != all-1 {
		t.Errorf("%d global limits of %d after one became region-scoped", global(), all)
	}
	if m := e.expect("GET", limits+"/hits/minute", acmeTok, "", 200, "").json(t); m["scope"] != "region" {
		t.Errorf("limit: %v", m)
	}
	e.expect("PUT", limits+"/hits/minute", acmeTok, `{"scope":null}`, 200, "")
	if global() != all {
		t.Errorf("%d global limits of %d after the scope was reset", global(), all)
	}
	r := e.expect("PUT", limits+"/hits/minute", acmeTok, `{"scope":"planet"}`, 422, "invalid_config")
	if got := details(t, r); len(got) != 1 || !strings.Contains(got[0], `scope: unknown scope "planet"`) {
		t.Errorf("details %q", got)
	}
}

// TestStrictTypes: a JSON number, boolean or object where the API expects a
// string is refused with 422 and the path of the field, on every route that
// takes a body; nothing is stored (a number is never read as its text).
func TestStrictTypes(t *testing.T) {
	e := newEnv(t)
	s := v1 + "/services/" + acmeSvc
	app := v1 + "/services/acme-oauth/applications/oapp"
	for _, c := range []struct {
		name, method, path, body string
		want                     []string
	}{
		{"user_key number", "PUT", s + "/applications/app9", `{"plan":"basic","user_key":12}`,
			[]string{"user_key: expected a string, got an integer"}},
		{"user_key float", "PUT", s + "/applications/app9", `{"plan":"basic","user_key":1.5}`,
			[]string{"user_key: expected a string, got a number"}},
		{"plan number", "PUT", s + "/applications/app9", `{"plan":7,"user_key":"uk-9"}`,
			[]string{"plan: expected a string, got an integer"}},
		{"app keys item", "PUT", app, `{"keys":["ok",12]}`,
			[]string{"keys[1]: expected a string, got an integer"}},
		{"service provider_key", "PUT", s, `{"provider_key":12345}`,
			[]string{"provider_key: expected a string, got an integer"}},
		{"service tokens item", "PUT", s, `{"tokens":[1]}`,
			[]string{"tokens[0]: expected a string, got an integer"}},
		{"service id", "PUT", v1 + "/services/77", `{"id":77}`,
			[]string{"id: expected a string, got an integer"}},
		{"metric parent", "PUT", s + "/metrics/m9", `{"parent":1}`,
			[]string{"parent: expected a string, got an integer"}},
		{"plan name", "PUT", s + "/plans/p9", `{"name":2.5}`,
			[]string{"name: expected a string, got a number"}},
		{"limit period", "POST", s + "/plans/basic/limits", `{"metric":"hits","period":60,"max":1}`,
			[]string{"period: expected a string, got an integer"}},
		{"limit max string", "POST", s + "/plans/basic/limits", `{"metric":"hits","period":"day","max":"1"}`,
			[]string{"max: expected an integer, got a string"}},
		{"new key number", "POST", app + "/keys", `{"key":12}`,
			[]string{"key: expected a string, got a number"}},
		{"new referrer filter number", "POST", app + "/referrer_filters", `{"filter":1}`,
			[]string{"filter: expected a string, got a number"}},
		{"referrer filter list item", "PUT", app + "/referrer_filters", `["a.example.com",2]`,
			[]string{"[1]: expected a string, got an integer"}},
	} {
		// e's helpers fail the parent test, so the cases run in one loop
		// and report by name.
		before := e.expect("GET", v1+"/config", acmeTok, "", 200, "").body
		r := e.do(c.method, c.path, acmeTok, c.body)
		var eb struct {
			Error struct{ Code string } `json:"error"`
		}
		if err := json.Unmarshal(r.body, &eb); err != nil || r.status != 422 || eb.Error.Code != "invalid_config" {
			t.Errorf("%s: %d %s, want 422 invalid_config", c.name, r.status, r.body)
			continue
		}
		if got := details(t, r); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: details %q, want %q", c.name, got, c.want)
		}
		if after := e.expect("GET", v1+"/config", acmeTok, "", 200, "").body; !bytes.Equal(before, after) {
			t.Errorf("%s: a refused body changed the configuration", c.name)
		}
	}
}

// TestServiceIDRace: two tenants PUT the same new service id at the same
// time. Whoever comes second is told the id is taken (409 conflict), never
// 422: the conflict is decided against the configuration the change is
// applied to, not against an earlier snapshot.
func TestServiceIDRace(t *testing.T) {
	e := newEnv(t)
	const rounds = 20
	type answer struct {
		tenant string
		status int
		code   string
	}
	for i := range rounds {
		id := fmt.Sprintf("race-%d", i)
		start := make(chan struct{})
		answers := make(chan answer, 2)
		var wg sync.WaitGroup
		for _, tok := range []string{acmeTok, globexTok} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := e.do("PUT", v1+"/services/"+id, tok, `{"metrics":[{"name":"hits"}]}`)
				var eb struct {
					Error struct{ Code string } `json:"error"`
				}
				_ = json.Unmarshal(r.body, &eb)
				answers <- answer{tok, r.status, eb.Error.Code}
			}()
		}
		close(start)
		wg.Wait()
		close(answers)
		var won, lost int
		for a := range answers {
			switch {
			case a.status == 201:
				won++
			case a.status == 409 && a.code == "conflict":
				lost++
			default:
				t.Errorf("%s: PUT by %s answered %d %q, want 201 for the winner and 409 conflict for the loser", id, a.tenant, a.status, a.code)
			}
		}
		if won != 1 || lost != 1 {
			t.Errorf("%s: %d created and %d conflicts, want one each", id, won, lost)
		}
	}
}

// peer returns the admin API of a second node sharing e's configuration
// log: its own projection, its own serialization of changes, as two API
// nodes of a cluster sharing the config topic.
func (e *env) peer(t *testing.T) *env {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := configlog.NewProjection(e.log, &catalog.Store{}, catalog.NewKeyRegistry(), logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := p.Sync(sctx); err != nil {
		t.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: New(p, logger, 5*time.Second).Handler, MaxRequestBodySize: 4 << 20}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(); cancel(); <-done })
	return &env{t: t, dir: e.dir, log: e.log, proj: p, logs: e.logs,
		client: &fasthttp.Client{Dial: func(string) (net.Conn, error) { return ln.Dial() }, DisablePathNormalizing: true}}
}

// TestServiceIDRaceAcrossNodes: two tenants PUT the same new service id at
// the same time through two nodes sharing the configuration log, where no
// lock serializes the two changes. Each answer is 201 or 409 conflict, at
// most one tenant gets the id, and the log's configuration stays valid (a
// change that turned out to collide is taken back, not left to block every
// later change).
func TestServiceIDRaceAcrossNodes(t *testing.T) {
	e := newEnv(t)
	f := e.peer(t)
	const rounds = 30
	for i := range rounds {
		id := fmt.Sprintf("xrace-%d", i)
		start := make(chan struct{})
		type answer struct {
			tenant string
			status int
			code   string
		}
		answers := make(chan answer, 2)
		var wg sync.WaitGroup
		for _, node := range []struct {
			env *env
			tok string
		}{{e, acmeTok}, {f, globexTok}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := node.env.do("PUT", v1+"/services/"+id, node.tok, `{"metrics":[{"name":"hits"}]}`)
				var eb struct {
					Error struct{ Code string } `json:"error"`
				}
				_ = json.Unmarshal(r.body, &eb)
				answers <- answer{node.tok, r.status, eb.Error.Code}
			}()
		}
		close(start)
		wg.Wait()
		close(answers)
		winners := map[string]bool{}
		for a := range answers {
			switch {
			case a.status == 201:
				winners[strings.TrimPrefix(a.tenant, "adm-")] = true
			case a.status == 409 && a.code == "conflict":
			default:
				t.Errorf("%s: PUT by %s answered %d %q, want 201 or 409 conflict", id, a.tenant, a.status, a.code)
			}
		}
		if len(winners) > 1 {
			t.Errorf("%s: both tenants were told they created it", id)
		}
		for _, n := range []*env{e, f} {
			if err := n.proj.Sync(ctx5s(t)); err != nil {
				t.Fatal(err)
			}
			if err := n.proj.Err(); err != nil {
				t.Fatalf("%s: the log's configuration is invalid after the race: %v", id, err)
			}
			svc := n.proj.Store().Load().Services[id]
			switch {
			case len(winners) == 0 && svc != nil:
				t.Errorf("%s: exists for %s though both were refused", id, svc.Tenant.ID)
			case len(winners) == 1 && (svc == nil || !winners[svc.Tenant.ID]):
				t.Errorf("%s: the tenant told 201 does not hold it", id)
			}
		}
	}
}

func ctx5s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestListPaging: list endpoints answer one page with its bounds, in id
// order for applications, and refuse a page or per_page out of range.
func TestListPaging(t *testing.T) {
	e := newEnv(t)
	apps := v1 + "/services/" + acmeSvc + "/applications"
	for i := range 5 {
		e.expect("PUT", apps+"/p"+strconv.Itoa(i), acmeTok, `{"plan":"free"}`, 201, "")
	}
	ids := func(r resp) []string {
		var out []string
		for _, a := range r.json(t)["applications"].([]any) {
			out = append(out, a.(map[string]any)["id"].(string))
		}
		return out
	}
	tests := []struct {
		name  string
		query string
		want  []string
		total float64
	}{
		{"default page", "", []string{"app1", "app2", "p0", "p1", "p2", "p3", "p4"}, 7},
		{"first page of 3", "?per_page=3", []string{"app1", "app2", "p0"}, 7},
		{"third page of 3", "?page=3&per_page=3", []string{"p4"}, 7},
		{"past the end", "?page=9&per_page=3", nil, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.expect("GET", apps+tc.query, acmeTok, "", 200, "")
			if got := ids(r); !reflect.DeepEqual(got, tc.want) || r.json(t)["total"] != tc.total {
				t.Errorf("page %v total %v, want %v total %v", got, r.json(t)["total"], tc.want, tc.total)
			}
		})
	}
	for _, q := range []string{"?page=0", "?page=-1", "?page=x", "?per_page=0", "?per_page=501", "?per_page=99999999999999999999", "?page=1099511627777"} {
		e.expect("GET", apps+q, acmeTok, "", 400, "bad_request")
		e.expect("GET", v1+"/services"+q, acmeTok, "", 400, "bad_request")
	}
	r := e.expect("GET", v1+"/services/"+acmeSvc+"/plans?per_page=1&page=2", acmeTok, "", 200, "")
	if m := r.json(t); len(m["plans"].([]any)) != 1 || m["total"] != float64(2) || m["page"] != float64(2) || m["per_page"] != float64(1) {
		t.Errorf("plans page: %s", r.body)
	}
}
