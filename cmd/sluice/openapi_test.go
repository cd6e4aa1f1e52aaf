package main

import (
	"bytes"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/admin"
)

// TestRouteOpenAPI: the API listener answers GET /openapi.json with the
// admin API's document, without a token, before the Service Management API
// (which would answer 404 in XML) sees the path.
func TestRouteOpenAPI(t *testing.T) {
	h := route(nil, nil, nil, nil) // no API is reached for this path
	for _, tc := range []struct {
		method string
		status int
	}{{"GET", 200}, {"POST", 405}} {
		t.Run(tc.method, func(t *testing.T) {
			var ctx fasthttp.RequestCtx
			ctx.Request.Header.SetMethod(tc.method)
			ctx.Request.SetRequestURI("/openapi.json")
			h(&ctx)
			if got := ctx.Response.StatusCode(); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if ct := string(ctx.Response.Header.ContentType()); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if tc.status == 200 && !bytes.Equal(ctx.Response.Body(), admin.OpenAPI()) {
				t.Error("body is not the admin API's openapi.json")
			}
		})
	}
}
