package envoyrls

import (
	"encoding/json"
	"testing"

	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/valyala/fasthttp"
	"google.golang.org/protobuf/encoding/protojson"
)

func serveJSON(s *Service, method, body string) *fasthttp.RequestCtx {
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(JSONPath)
	ctx.Request.SetBodyString(body)
	s.ServeJSON(&ctx)
	return &ctx
}

func TestServeJSON(t *testing.T) {
	h := newHarness(t, Options{})
	h.load(t, "testdata/semantics")
	const admin = `{"domain":"sem","descriptors":[{"entries":[{"key":"path","value":"/api/admin"}]}]}`
	tests := []struct {
		name, method, body string
		status             int
		want               *rlpb.RateLimitResponse // nil: an error
		code               string
	}{
		{"ok", "POST", admin, 200, &rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 1, perMin, 0, 60))}, ""},
		{"over limit", "POST", admin, 429, &rlpb.RateLimitResponse{OverallCode: over, Statuses: st(dstatus(over, 1, perMin, 0, 60))}, ""},
		{"hits_addend", "POST", `{"domain":"sem","hits_addend":3,"descriptors":[{"entries":[{"key":"user","value":"j"}]}]}`, 200,
			&rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(dstatus(ok, 5, perMin, 2, 60))}, ""},
		{"unknown domain", "POST", `{"domain":"nope","descriptors":[{"entries":[{"key":"a"}]}]}`, 200,
			&rlpb.RateLimitResponse{OverallCode: ok, Statuses: st(okStatus())}, ""},
		{"GET", "GET", "", 405, nil, "method_not_allowed"},
		{"not json", "POST", `{"domain":`, 400, nil, "invalid_json"},
		{"unknown field", "POST", `{"domain":"sem","descriptorz":[]}`, 400, nil, "invalid_json"},
		{"wrong type", "POST", `{"domain":"sem","hits_addend":-1,"descriptors":[]}`, 400, nil, "invalid_json"},
		{"no descriptors", "POST", `{"domain":"sem"}`, 400, nil, "invalid_argument"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := serveJSON(h.svc, tc.method, tc.body)
			if ctx.Response.StatusCode() != tc.status {
				t.Fatalf("status %d, want %d: %s", ctx.Response.StatusCode(), tc.status, ctx.Response.Body())
			}
			if ct := string(ctx.Response.Header.ContentType()); ct != "application/json" {
				t.Fatalf("content type %q", ct)
			}
			if tc.want == nil {
				var e struct {
					Error struct{ Code, Message string } `json:"error"`
				}
				if err := json.Unmarshal(ctx.Response.Body(), &e); err != nil || e.Error.Code != tc.code || e.Error.Message == "" {
					t.Fatalf("body %s (%v), want error code %q with a message", ctx.Response.Body(), err, tc.code)
				}
				return
			}
			var got rlpb.RateLimitResponse
			if err := protojson.Unmarshal(ctx.Response.Body(), &got); err != nil {
				t.Fatalf("body %s: %v", ctx.Response.Body(), err)
			}
			wantResp(t, tc.name, &got, tc.want)
		})
	}
}

func FuzzServeJSON(f *testing.F) {
	for _, s := range []string{
		`{"domain":"sem","descriptors":[{"entries":[{"key":"user","value":"x"}]}]}`,
		`{"domain":"sem","descriptors":[{"entries":[{"key":"path","value":"/api/a"}],"hits_addend":"18446744073709551615"}]}`,
		`{"domain":"sem","descriptors":[{"entries":[{"key":"tier","value":"free"},{"key":"user"}]}],"hits_addend":4294967295}`,
		`{"domain":"sem","descriptors":[{}]}`,
		`[]`,
	} {
		f.Add(s)
	}
	h := newHarness(f, Options{})
	h.load(f, "testdata/semantics")
	f.Fuzz(func(t *testing.T, body string) {
		ctx := serveJSON(h.svc, "POST", body)
		if s := ctx.Response.StatusCode(); s != 200 && s != 429 && s != 400 {
			t.Fatalf("status %d for %q: %s", s, body, ctx.Response.Body())
		}
	})
}
