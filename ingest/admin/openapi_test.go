package admin

import (
	"bytes"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

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

// concrete fills a path template's parameters from vals (escaped).
func concrete(tmpl string, vals map[string]string) string {
	segs := strings.Split(tmpl, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			segs[i] = url.PathEscape(vals[strings.Trim(s, "{}")])
		}
	}
	return strings.Join(segs, "/")
}

// TestOpenAPIOperations calls every operation of openapi.json on the
// testdata configuration, each on a fresh API, and checks the answer against
// the document: a documented status (the one the table expects), content
// type, headers and body schema. An operation the document lists and the
// API does not serve, or one the table does not know, fails.
func TestOpenAPIOperations(t *testing.T) {
	d := loadOpenAPI(t)
	// acme-oauth has an application with a key and referrer filters; the
	// user_key service has metrics and plans nothing else uses.
	base := map[string]string{"service_id": "acme-oauth", "name": "hits", "plan_id": "p", "metric": "hits",
		"period": "eternity", "app_id": "oapp", "key": "secret-1", "filter": "*.example.com"}
	userKey := map[string]string{"service_id": acmeSvc, "name": "search.deep", "plan_id": "basic", "metric": "hits", "period": "minute"}
	cases := map[string]struct {
		params map[string]string
		body   string
		status int
	}{
		"getConfig":            {status: 200},
		"listServices":         {status: 200},
		"getService":           {status: 200},
		"putService":           {body: `{"state": "suspended"}`, status: 200},
		"deleteService":        {status: 204},
		"listMetrics":          {status: 200},
		"getMetric":            {status: 200},
		"putMetric":            {params: map[string]string{"name": "new"}, body: `{}`, status: 201},
		"deleteMetric":         {params: userKey, status: 204},
		"listPlans":            {status: 200},
		"getPlan":              {status: 200},
		"putPlan":              {body: `{"name": "P"}`, status: 200},
		"deletePlan":           {status: 422}, // oapp is on plan p
		"listLimits":           {status: 200},
		"postLimit":            {body: `{"metric": "hits", "period": "day", "max": 5}`, status: 201},
		"getLimit":             {status: 200},
		"putLimit":             {body: `{"max": 7}`, status: 200},
		"deleteLimit":          {params: userKey, status: 204},
		"listApplications":     {status: 200},
		"getApplication":       {status: 200},
		"putApplication":       {params: map[string]string{"app_id": "new"}, body: `{"plan": "p"}`, status: 201},
		"deleteApplication":    {status: 204},
		"listKeys":             {status: 200},
		"postKey":              {body: `{"key": "k-new"}`, status: 201},
		"getKey":               {status: 200},
		"putKey":               {status: 200},
		"deleteKey":            {status: 204},
		"listReferrerFilters":  {status: 200},
		"putReferrerFilters":   {body: `["a.example.com"]`, status: 200},
		"postReferrerFilter":   {body: `{"filter": "b.example.com"}`, status: 201},
		"getReferrerFilter":    {status: 200},
		"deleteReferrerFilter": {status: 204},
		"getGateway":           {status: 200},
		"putGateway":           {body: `{"credentials_location": "headers", "mapping_rules": [{"http_method": "GET", "pattern": "/{id}", "metric": "hits"}]}`, status: 200},
		"promoteGateway":       {body: `{}`, status: 201},
	}
	seen := map[string]bool{}
	for _, op := range d.Operations() {
		if op.ID == "getOpenAPI" { // ServeOpenAPI, not Handler: TestServeOpenAPI
			continue
		}
		if !strings.HasPrefix(op.Path, strings.TrimSuffix(Prefix, "/")) { // package gateway serves and tests these
			continue
		}
		t.Run(op.ID, func(t *testing.T) {
			c, ok := cases[op.ID]
			if !ok {
				t.Fatalf("%s %s (%s) is documented and not tested here", op.Method, op.Path, op.ID)
			}
			seen[op.ID] = true
			vals := map[string]string{}
			for k, v := range base {
				vals[k] = v
			}
			for k, v := range c.params {
				vals[k] = v
			}
			e := newEnv(t)
			r := e.do(strings.ToUpper(op.Method), concrete(op.Path, vals), acmeTok, c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			if err := d.CheckResponse(op, r.status, string(r.header.ContentType()), func(h string) string { return string(r.header.Peek(h)) }, r.body); err != nil {
				t.Error(err)
			}
		})
	}
	for id := range cases {
		if !seen[id] {
			t.Errorf("operation %s is not in openapi.json", id)
		}
	}
}

// TestOpenAPIErrors checks the error answers every operation documents:
// without a token (401 with WWW-Authenticate), for entities that do not
// exist (404), and a request body that is not JSON (400).
func TestOpenAPIErrors(t *testing.T) {
	d := loadOpenAPI(t)
	e := newEnv(t)
	missing := map[string]string{"service_id": "nope", "name": "nope", "plan_id": "nope", "metric": "nope",
		"period": "day", "app_id": "nope", "key": "nope", "filter": "nope"}
	for _, op := range d.Operations() {
		if !strings.HasPrefix(op.Path, strings.TrimSuffix(Prefix, "/")) {
			continue
		}
		t.Run(op.ID, func(t *testing.T) {
			m := strings.ToUpper(op.Method)
			check := func(token, body string, want int) {
				t.Helper()
				r := e.do(m, concrete(op.Path, missing), token, body)
				if r.status != want {
					t.Fatalf("status %d, want %d: %s", r.status, want, r.body)
				}
				if err := d.CheckResponse(op, r.status, string(r.header.ContentType()), func(h string) string { return string(r.header.Peek(h)) }, r.body); err != nil {
					t.Error(err)
				}
			}
			check("", "", 401)
			switch op.ID {
			case "getConfig", "listServices":
			case "putService": // creates the service: the body is read first
				check(acmeTok, "{not json", 400)
			default: // under a service that does not exist
				check(acmeTok, "", 404)
			}
		})
	}
}

// TestOpenAPIRoutes checks the other direction: the API serves no method
// and no path the document does not list. Each documented path answers 405
// with an Allow header naming exactly its documented methods for every
// other method, and one more segment under it is a documented path or
// "route not found".
func TestOpenAPIRoutes(t *testing.T) {
	d := loadOpenAPI(t)
	e := newEnv(t)
	vals := map[string]string{"service_id": "acme-oauth", "name": "hits", "plan_id": "p", "metric": "hits",
		"period": "eternity", "app_id": "oapp", "key": "secret-1", "filter": "*.example.com"}
	var paths []string
	for p := range d.Paths {
		if strings.HasPrefix(p, strings.TrimSuffix(Prefix, "/")) {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		documented := d.Methods(p)
		allow := slices.Clone(documented)
		for _, m := range []string{"GET", "PUT", "POST", "DELETE", "PATCH"} {
			if slices.Contains(documented, m) {
				continue
			}
			r := e.do(m, concrete(p, vals), acmeTok, "{}")
			if r.status != 405 {
				t.Errorf("%s %s: status %d, want 405 (undocumented method): %s", m, p, r.status, r.body)
				continue
			}
			got := strings.Split(string(r.header.Peek("Allow")), ", ")
			sort.Strings(got)
			if !slices.Equal(got, allow) {
				t.Errorf("%s %s: Allow %v, documented %v", m, p, got, allow)
			}
		}
		deeper := p + "/zz"
		if d.Match(deeper) != "" {
			continue
		}
		for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
			r := e.do(m, concrete(p, vals)+"/zz", acmeTok, "{}")
			if r.status != 404 || !strings.Contains(string(r.body), "route not found") {
				t.Errorf("%s %s: status %d %s, want 404 route not found (undocumented path)", m, deeper, r.status, r.body)
			}
		}
	}
	for _, p := range []string{Prefix, Prefix + "zz", Prefix + "config/zz", Prefix + "services/acme-oauth/zz"} {
		if r := e.do("GET", p, acmeTok, ""); r.status != 404 || !strings.Contains(string(r.body), "route not found") {
			t.Errorf("GET %s: status %d %s, want 404 route not found", p, r.status, r.body)
		}
	}
}

// TestServeOpenAPI: GET /openapi.json answers the embedded file as
// documented, without a token; other methods get 405.
func TestServeOpenAPI(t *testing.T) {
	d := loadOpenAPI(t)
	op := d.Paths[OpenAPIPath]["get"]
	if op == nil {
		t.Fatal("openapi.json does not document GET " + OpenAPIPath)
	}
	for _, tc := range []struct {
		method string
		status int
	}{{"GET", 200}, {"HEAD", 200}, {"POST", 405}, {"DELETE", 405}} {
		t.Run(tc.method, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod(tc.method)
			ctx.Request.SetRequestURI(OpenAPIPath)
			ServeOpenAPI(&ctx)
			if got := ctx.Response.StatusCode(); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if tc.method != "GET" {
				return
			}
			if !bytes.Equal(ctx.Response.Body(), OpenAPI()) {
				t.Error("the body is not openapi.json")
			}
			if err := d.CheckResponse(op, 200, string(ctx.Response.Header.ContentType()), func(h string) string { return string(ctx.Response.Header.Peek(h)) }, ctx.Response.Body()); err != nil {
				t.Error(err)
			}
		})
	}
}
