package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/configlog"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const (
	tokenAcme  = "adm-acme-secret"
	tokenOther = "adm-other-secret"
	svcSearch  = "2555417777820" // user_key, with a gateway block
	svcDefault = "2555417777821" // app_id, no gateway block: 3scale's defaults
	svcOther   = "2555417777899" // the other tenant's
)

func testDoc() *catalog.Document {
	return &catalog.Document{Tenants: []catalog.TenantSpec{{
		ID: "acme", AdminToken: tokenAcme,
		Services: []catalog.ServiceSpec{{
			ID: svcSearch, Tokens: []string{"st-search"},
			Metrics: []catalog.MetricSpec{{Name: "hits"}, {Name: "search", Parent: "hits"}, {Name: "items", Parent: "hits"}},
			Gateway: &catalog.GatewaySpec{
				APIBackend:          "https://backend.internal:443",
				Hosts:               []string{"api.example.com"},
				CredentialsLocation: catalog.CredentialsHeaders,
				MappingRules: []catalog.MappingRuleSpec{
					{HTTPMethod: "GET", Pattern: "/search", Metric: "search", Delta: 2},
					{HTTPMethod: "GET", Pattern: "/items/{id}.json?fields={f}&v=2", Metric: "items", Last: true},
					{HTTPMethod: "GET", Pattern: "/", Metric: "hits", Delta: 1},
				},
			},
		}, {
			ID: svcDefault, Tokens: []string{"st-default"}, AuthMode: catalog.ModeAppID,
			Metrics: []catalog.MetricSpec{{Name: "hits"}},
		}},
	}, {
		ID: "other", AdminToken: tokenOther,
		Services: []catalog.ServiceSpec{{
			ID: svcOther, Tokens: []string{"st-other"}, Metrics: []catalog.MetricSpec{{Name: "hits"}},
		}},
	}}}
}

// newTestAPI returns the API over a projection holding testDoc.
func newTestAPI(t *testing.T) (*API, *configlog.Projection) {
	t.Helper()
	proj := configlog.NewProjection(configlog.NewMemLog(), &catalog.Store{}, nil, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		proj.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
	actx, acancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer acancel()
	if err := proj.Apply(actx, testDoc()); err != nil {
		t.Fatal(err)
	}
	api, err := New(Options{Projection: proj, PublicURL: "http://sluice.example.com:3001", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return api, proj
}

type call struct {
	method, uri string
	auth        string // Authorization header
	ctype, body string
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func (a *API) do(c call) (int, []byte) {
	var ctx fasthttp.RequestCtx
	if c.method == "" {
		c.method = "GET"
	}
	ctx.Request.Header.SetMethod(c.method)
	ctx.Request.SetRequestURI(c.uri)
	if c.auth != "" {
		ctx.Request.Header.Set("Authorization", c.auth)
	}
	if c.ctype != "" {
		ctx.Request.Header.SetContentType(c.ctype)
	}
	ctx.Request.SetBodyString(c.body)
	a.Handler(&ctx)
	return ctx.Response.StatusCode(), append([]byte(nil), ctx.Response.Body()...)
}

// golden compares body with testdata/name.json (indented).
func golden(t *testing.T, name string, body []byte) {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", name, err, body)
	}
	got, _ := json.MarshalIndent(v, "", "  ")
	got = append(got, '\n')
	path := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from %s:\n%s", name, path, got)
	}
}

// TestAnswersGolden: every answer, byte for byte; the shapes are also held
// to the fields APIcast reads (TestFieldsAPIcastReads).
func TestAnswersGolden(t *testing.T) {
	api, _ := newTestAPI(t)
	for _, c := range goldenCases() {
		t.Run(c.name, func(t *testing.T) {
			status, body := api.do(c.call)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			golden(t, c.name, body)
		})
	}
}

type goldenCase struct {
	name   string
	call   call
	status int
}

func goldenCases() []goldenCase {
	auth := basic(tokenAcme, "")
	return []goldenCase{
		{"account_proxy_configs_production", call{uri: "/admin/api/account/proxy_configs/production.json?version=latest&page=1&per_page=500", auth: auth}, 200},
		{"account_proxy_configs_host", call{uri: "/admin/api/account/proxy_configs/staging.json?host=api.example.com", auth: auth}, 200},
		{"account_proxy_configs_past_end", call{uri: "/admin/api/account/proxy_configs/production.json?page=2&per_page=500", auth: auth}, 200},
		{"services", call{uri: "/admin/api/services.json", auth: auth}, 200},
		{"services_page2", call{uri: "/admin/api/services.json?page=2&per_page=1", auth: auth}, 200},
		{"service", call{uri: "/admin/api/services/" + svcDefault + ".json", auth: auth}, 200},
		{"proxy", call{uri: "/admin/api/services/" + svcSearch + "/proxy.json", auth: auth}, 200},
		{"proxy_defaults", call{uri: "/admin/api/services/" + svcDefault + "/proxy.json", auth: auth}, 200},
		{"configs_staging", call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging.json", auth: auth}, 200},
		{"config_production_latest", call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/production/latest.json", auth: auth}, 200},
		{"config_production_1", call{uri: "/admin/api/services/" + svcDefault + "/proxy/configs/production/1.json", auth: auth}, 200},
		{"error_missing_token", call{uri: "/admin/api/services.json"}, 401},
		{"error_wrong_token", call{uri: "/admin/api/services.json", auth: basic("adm-nope", "")}, 403},
		{"error_other_tenant", call{uri: "/admin/api/services/" + svcOther + "/proxy.json", auth: auth}, 404},
		{"error_per_page", call{uri: "/admin/api/services.json?per_page=501", auth: auth}, 400},
		{"error_version", call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/production/x.json", auth: auth}, 400},
		{"error_environment", call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/development.json", auth: auth}, 404},
		{"error_promote_to", call{method: "POST", uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/1/promote.json", auth: auth, ctype: "application/x-www-form-urlencoded", body: "to=staging"}, 422},
	}
}

// TestAuth: the credential forms 3scale's clients send open the token's
// tenant; a missing credential is 401, a wrong one 403, another tenant's
// service 404 like a missing one.
func TestAuth(t *testing.T) {
	api, _ := newTestAPI(t)
	own := "/admin/api/services/" + svcSearch + "/proxy.json"
	other := "/admin/api/services/" + svcOther + "/proxy.json"
	for _, c := range []struct {
		name   string
		call   call
		status int
	}{
		{"basic user", call{uri: own, auth: basic(tokenAcme, "")}, 200},
		{"basic password", call{uri: own, auth: basic("", tokenAcme)}, 200},
		{"access_token", call{uri: own + "?access_token=" + tokenAcme}, 200},
		{"other tenant's token, own service", call{uri: other, auth: basic(tokenOther, "")}, 200},
		{"missing", call{uri: own}, 401},
		{"empty access_token", call{uri: own + "?access_token="}, 401},
		{"basic user and password", call{uri: own, auth: basic(tokenAcme, "x")}, 401},
		{"basic garbage", call{uri: own, auth: "Basic !!!"}, 401},
		{"bearer", call{uri: own, auth: "Bearer " + tokenAcme}, 401},
		{"wrong token", call{uri: own, auth: basic("adm-acme-secreT", "")}, 403},
		{"service token", call{uri: own + "?access_token=st-search"}, 403},
		{"query token is not an admin token", call{uri: own + "?access_token=" + tokenAcme + "x"}, 403},
		{"cross tenant proxy", call{uri: other, auth: basic(tokenAcme, "")}, 404},
		{"cross tenant config", call{uri: "/admin/api/services/" + svcOther + "/proxy/configs/production/latest.json", auth: basic(tokenAcme, "")}, 404},
		{"cross tenant promote", call{method: "POST", uri: "/admin/api/services/" + svcOther + "/proxy/configs/staging/1/promote.json", auth: basic(tokenAcme, ""), body: "to=production", ctype: "application/x-www-form-urlencoded"}, 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			status, body := api.do(c.call)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			if strings.Contains(string(body), tokenOther) || strings.Contains(string(body), tokenAcme) {
				t.Errorf("answer echoes an admin token: %s", body)
			}
		})
	}
	// The account-wide list shows only the token's tenant.
	_, body := api.do(call{uri: "/admin/api/account/proxy_configs/production.json", auth: basic(tokenOther, "")})
	if !strings.Contains(string(body), svcOther) || strings.Contains(string(body), svcSearch) {
		t.Errorf("other tenant's list: %s", body)
	}
}

// TestBadInput: hostile paths and parameters get a 4xx with a code.
func TestBadInput(t *testing.T) {
	api, _ := newTestAPI(t)
	auth := basic(tokenAcme, "")
	for _, c := range []struct {
		name   string
		call   call
		status int
		code   string
	}{
		{"page zero", call{uri: "/admin/api/services.json?page=0"}, 400, "invalid_paging"},
		{"page huge", call{uri: "/admin/api/services.json?page=99999999999999999999"}, 400, "invalid_paging"},
		{"page text", call{uri: "/admin/api/services.json?page=two"}, 400, "invalid_paging"},
		{"per_page negative", call{uri: "/admin/api/account/proxy_configs/production.json?per_page=-1"}, 400, "invalid_paging"},
		{"page max is empty", call{uri: "/admin/api/services.json?page=1000000&per_page=500"}, 200, ""},
		{"version zero", call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/0.json"}, 400, "invalid_version"},
		{"version overflow", call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/9223372036854775808.json"}, 400, "invalid_version"},
		{"version missing", call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/7.json"}, 404, "not_found"},
		{"account version text", call{uri: "/admin/api/account/proxy_configs/production.json?version=abc"}, 400, "invalid_version"},
		{"no json suffix", call{uri: "/admin/api/services"}, 404, "not_found"},
		{"xml", call{uri: "/admin/api/services.xml"}, 404, "not_found"},
		{"unknown service", call{uri: "/admin/api/services/nope/proxy.json"}, 404, "not_found"},
		{"bad escape", call{uri: "/admin/api/services/%zz/proxy.json"}, 404, "not_found"},
		{"empty segment", call{uri: "/admin/api/services//proxy.json"}, 404, "not_found"},
		{"unknown route", call{uri: "/admin/api/accounts.json"}, 404, "not_found"},
		{"post on a list", call{method: "POST", uri: "/admin/api/services.json"}, 405, "method_not_allowed"},
		{"get promote", call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/1/promote.json"}, 405, "method_not_allowed"},
		{"promote from production", call{method: "POST", uri: "/admin/api/services/" + svcSearch + "/proxy/configs/production/1/promote.json", body: "to=production", ctype: "application/x-www-form-urlencoded"}, 422, "invalid_promotion"},
		{"promote latest", call{method: "POST", uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/latest/promote.json", body: "to=production", ctype: "application/x-www-form-urlencoded"}, 400, "invalid_version"},
		{"promote bad json", call{method: "POST", uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/1/promote.json", body: "{", ctype: "application/json"}, 400, "bad_request"},
		{"promote missing version", call{method: "POST", uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/5/promote.json", body: "to=production", ctype: "application/x-www-form-urlencoded"}, 404, "not_found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.call.auth = auth
			status, body := api.do(c.call)
			if status != c.status {
				t.Fatalf("status %d, want %d: %s", status, c.status, body)
			}
			if c.code == "" {
				return
			}
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil || e.Code != c.code || e.Error == "" {
				t.Errorf("body %s, want code %q", body, c.code)
			}
		})
	}
}

// TestPromote: 3scale's promotion call (form, JSON and query forms) makes
// a new production version from the staging version named, and leaves
// staging as it was.
func TestPromote(t *testing.T) {
	api, proj := newTestAPI(t)
	auth := basic(tokenAcme, "")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Staging version 2: a changed backend.
	if err := proj.Update(ctx, func(doc *catalog.Document) error {
		doc.Tenants[0].Service(svcSearch).Gateway.APIBackend = "https://v2.internal"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	staging := func() []byte {
		_, b := api.do(call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging.json", auth: auth})
		return b
	}
	before := staging()
	for i, c := range []call{
		{ctype: "application/x-www-form-urlencoded", body: "to=production"},
		{ctype: "application/json", body: `{"to":"production"}`},
		{uri: "?to=production"},
	} {
		c.method, c.auth = "POST", auth
		c.uri = "/admin/api/services/" + svcSearch + "/proxy/configs/staging/2/promote.json" + c.uri
		status, body := api.do(c)
		if status != 201 {
			t.Fatalf("promote %d: status %d: %s", i, status, body)
		}
		var got configEnvelope
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		want := int64(2 + i)
		if pc := got.ProxyConfig; pc.Version != want || pc.Environment != "production" || pc.Content.Proxy.APIBackend == nil || *pc.Content.Proxy.APIBackend != "https://v2.internal" {
			t.Errorf("promote %d: %+v, want production version %d of v2", i, pc, want)
		}
		if i == 0 {
			golden(t, "promote", body)
		}
	}
	if after := staging(); !bytes.Equal(before, after) {
		t.Errorf("staging changed by promotion:\n%s\nwas\n%s", after, before)
	}
	// A staging version naming a metric the service no longer has: 422.
	if err := proj.Update(ctx, func(doc *catalog.Document) error {
		s := doc.Tenants[0].Service(svcSearch)
		s.Gateway.MappingRules = s.Gateway.MappingRules[2:] // GET / -> hits
		s.Metrics = s.Metrics[:1]
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if status, body := api.do(call{method: "POST", uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/2/promote.json?to=production", auth: auth}); status != 422 || !strings.Contains(string(body), "invalid_promotion") {
		t.Errorf("promote a stale version: %d %s", status, body)
	}
	_, body := api.do(call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/production/1.json", auth: auth})
	if !strings.Contains(string(body), "https://backend.internal:443") {
		t.Errorf("production version 1 not readable as it was: %s", body)
	}
}

// fieldSpec is testdata/apicast_fields.json.
type fieldSpec map[string]json.RawMessage

func loadFields(t *testing.T) (fieldSpec, map[string]map[string]string) {
	t.Helper()
	b, err := os.ReadFile("testdata/apicast_fields.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw fieldSpec
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	objs := map[string]map[string]string{}
	for k, v := range raw {
		if k == "_about" || k == "threescale" {
			continue
		}
		var m map[string]string
		if err := json.Unmarshal(v, &m); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		objs[k] = m
	}
	return raw, objs
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	}
	return "object"
}

// checker walks an answer and holds every object to the fixture: every
// field APIcast reads is there with its type, and every field there is one
// APIcast reads or 3scale's API writes.
type checker struct {
	t          *testing.T
	objs       map[string]map[string]string
	threescale map[string][]string
}

func (c *checker) object(where, kind string, v any) {
	c.t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		c.t.Errorf("%s: %s is %s, want an object", where, kind, jsonType(v))
		return
	}
	spec := c.objs[kind]
	for name, typ := range spec {
		fv, present := m[name]
		optional := strings.HasSuffix(typ, "?")
		typ = strings.TrimSuffix(typ, "?")
		if !present {
			if !optional {
				c.t.Errorf("%s: %s has no %q, which APIcast reads", where, kind, name)
			}
			continue
		}
		if got := jsonType(fv); !strings.Contains("|"+typ+"|", "|"+got+"|") {
			c.t.Errorf("%s: %s.%s is %s, APIcast reads %s", where, kind, name, got, typ)
		}
	}
	for name := range m {
		_, known := spec[name]
		for _, x := range c.threescale[kind] {
			known = known || x == name
		}
		if !known {
			c.t.Errorf("%s: %s.%s is neither read by APIcast nor written by 3scale", where, kind, name)
		}
	}
	// Descend.
	each := func(field, kind string) {
		if arr, ok := m[field].([]any); ok {
			for _, x := range arr {
				c.object(where, kind, x)
			}
		}
	}
	switch kind {
	case "proxy_configs":
		each("proxy_configs", "proxy_config_envelope")
	case "proxy_config_envelope":
		c.object(where, "proxy_config", m["proxy_config"])
	case "proxy_config":
		c.object(where, "content", m["content"])
	case "content":
		c.object(where, "proxy", m["proxy"])
	case "proxy":
		c.object(where, "backend", m["backend"])
		each("proxy_rules", "proxy_rule")
		each("policy_chain", "policy")
	case "services":
		each("services", "service_envelope")
	case "service_envelope":
		c.object(where, "service", m["service"])
	case "proxy_envelope":
		c.object(where, "proxy", m["proxy"])
	}
}

// TestFieldsAPIcastReads holds every golden answer to the fields APIcast's
// loader and parser read (testdata/apicast_fields.json).
func TestFieldsAPIcastReads(t *testing.T) {
	raw, objs := loadFields(t)
	var threescale map[string][]string
	if err := json.Unmarshal(raw["threescale"], &threescale); err != nil {
		t.Fatal(err)
	}
	c := &checker{t: t, objs: objs, threescale: threescale}
	kinds := map[string]string{}
	for _, gc := range goldenCases() {
		switch {
		case strings.HasPrefix(gc.name, "error_"):
		case strings.HasPrefix(gc.name, "account_") || strings.HasPrefix(gc.name, "configs_"):
			kinds[gc.name] = "proxy_configs"
		case strings.HasPrefix(gc.name, "config_"):
			kinds[gc.name] = "proxy_config_envelope"
		case strings.HasPrefix(gc.name, "services"):
			kinds[gc.name] = "services"
		case gc.name == "service":
			kinds[gc.name] = "service_envelope"
		case strings.HasPrefix(gc.name, "proxy"):
			kinds[gc.name] = "proxy_envelope"
		default:
			t.Fatalf("golden case %s: which shape is it?", gc.name)
		}
	}
	kinds["promote"] = "proxy_config_envelope"
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	seen := 0
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", n+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		kind := kinds[n]
		c.object(n, kind, v)
		if arr, _ := v.(map[string]any)["proxy_configs"].([]any); len(arr) > 0 {
			seen++
		}
	}
	if seen == 0 {
		t.Fatal("no golden answer holds a proxy config: the check checked nothing")
	}
}
