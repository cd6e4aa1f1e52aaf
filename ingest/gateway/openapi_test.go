package gateway

import (
	"regexp"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/admin"
	"github.com/sluice-dev/sluice/internal/openapitest"
)

// TestOpenAPI: every answer of the golden, auth and bad-input tables is
// documented in the listener's openapi.json (status, content type,
// headers, body schema), and every operation documented under /admin/api/
// outside the admin API's /admin/api/v1 is one this package answers.
func TestOpenAPI(t *testing.T) {
	d, err := openapitest.Parse(admin.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	type tmpl struct {
		re *regexp.Regexp
		op *openapitest.Operation
	}
	var ops []tmpl
	for _, op := range d.Operations() {
		if !Owns([]byte(op.Path)) {
			continue
		}
		re := regexp.QuoteMeta(op.Path)
		re = regexp.MustCompile(`\\\{[a-z_]+\\\}`).ReplaceAllString(re, `[^/]+`)
		ops = append(ops, tmpl{regexp.MustCompile("^" + re + "$"), op})
	}
	if len(ops) == 0 {
		t.Fatal("openapi.json documents no gateway configuration path")
	}
	api, _ := newTestAPI(t)
	var calls []call
	for _, c := range goldenCases() {
		calls = append(calls, c.call)
	}
	calls = append(calls,
		call{method: "POST", uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/1/promote.json", auth: basic(tokenAcme, ""), ctype: "application/x-www-form-urlencoded", body: "to=production"},
		call{uri: "/admin/api/services/" + svcSearch + "/proxy/configs/staging/0.json", auth: basic(tokenAcme, "")},
		call{method: "POST", uri: "/admin/api/services.json", auth: basic(tokenAcme, "")},
	)
	seen := map[string]bool{}
	for _, c := range calls {
		path, _, _ := strings.Cut(c.uri, "?")
		var op *openapitest.Operation
		method := c.method
		if method == "" {
			method = "GET"
		}
		for _, o := range ops {
			if o.re.MatchString(path) && (strings.EqualFold(o.op.Method, method) || op == nil) {
				op = o.op
			}
		}
		if op == nil {
			t.Errorf("%s %s: no documented path", method, path)
			continue
		}
		seen[op.ID] = true
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(method)
		ctx.Request.SetRequestURI(c.uri)
		if c.auth != "" {
			ctx.Request.Header.Set("Authorization", c.auth)
		}
		if c.ctype != "" {
			ctx.Request.Header.SetContentType(c.ctype)
		}
		ctx.Request.SetBodyString(c.body)
		api.Handler(&ctx)
		if err := d.CheckResponse(op, ctx.Response.StatusCode(), string(ctx.Response.Header.ContentType()),
			func(h string) string { return string(ctx.Response.Header.Peek(h)) }, ctx.Response.Body()); err != nil {
			t.Errorf("%s %s: %v", method, c.uri, err)
		}
	}
	for _, o := range ops {
		if !seen[o.op.ID] {
			t.Errorf("%s %s (%s) is documented and not called here", o.op.Method, o.op.Path, o.op.ID)
		}
	}
}
