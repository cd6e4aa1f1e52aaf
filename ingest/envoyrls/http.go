package envoyrls

import (
	"encoding/json"

	rlpb "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// JSONPath is where Envoy ratelimit serves its HTTP form of ShouldRateLimit.
const JSONPath = "/json"

// jsonErrors are the error codes of POST /json, by HTTP status.
var jsonErrors = map[string]int{
	"method_not_allowed": 405,
	"invalid_json":       400,
	"invalid_argument":   400,
	"unavailable":        503,
}

var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: false}

// ServeJSON answers Envoy ratelimit's POST /json: the body is a
// RateLimitRequest in protobuf's JSON mapping, the answer the
// RateLimitResponse, with status 200 (OK) or 429 (OVER_LIMIT). Bad input is
// a 400 with a JSON error ({"error":{"code","message"}}), as is every
// refusal ShouldRateLimit answers InvalidArgument; Unavailable is a 503.
// The body's size is bounded by the listener (MaxMessageBytes or less).
func (s *Service) ServeJSON(ctx *fasthttp.RequestCtx) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		writeJSONError(ctx, "method_not_allowed", "POST a RateLimitRequest as JSON")
		return
	}
	body := ctx.PostBody()
	if len(body) > MaxMessageBytes {
		writeJSONError(ctx, "invalid_json", "body larger than 1 MiB")
		return
	}
	var req rlpb.RateLimitRequest
	if err := unmarshal.Unmarshal(body, &req); err != nil {
		writeJSONError(ctx, "invalid_json", "body is not a RateLimitRequest: "+err.Error())
		return
	}
	resp, err := s.decide(&req)
	if err != nil {
		code := "invalid_argument"
		if status.Code(err) == codes.Unavailable {
			code = "unavailable"
			ctx.Response.Header.Set("Retry-After", "1")
		}
		writeJSONError(ctx, code, status.Convert(err).Message())
		return
	}
	out, err := protojson.Marshal(resp)
	if err != nil {
		writeJSONError(ctx, "unavailable", "cannot encode the response")
		return
	}
	ctx.SetContentType("application/json")
	if resp.OverallCode == rlpb.RateLimitResponse_OVER_LIMIT {
		ctx.SetStatusCode(fasthttp.StatusTooManyRequests)
	}
	ctx.SetBody(out)
}

func writeJSONError(ctx *fasthttp.RequestCtx, code, msg string) {
	b, _ := json.Marshal(struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{Error: struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
	ctx.SetContentType("application/json")
	ctx.SetStatusCode(jsonErrors[code])
	ctx.SetBody(b)
}
