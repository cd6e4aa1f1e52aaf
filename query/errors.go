package query

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

// apiError is an error answer: {"error":{"code":..,"message":..}}.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errf(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, message: msg}
}

func badRequest(code, msg string) *apiError { return errf(400, code, msg) }

// Error codes with their status, documented in docs/query-api.md and
// listed here so a test can check that every one is reachable.
var ErrorCodes = map[string]int{
	// 400: one code per malformed parameter
	"invalid_from":        400, // not RFC 3339, or outside 2000-01-01..2100-01-01
	"invalid_to":          400, // idem
	"invalid_range":       400, // from is not before to
	"invalid_granularity": 400, // not minute, hour, day, week, month, total
	"invalid_tz":          400, // not an IANA time zone name
	"invalid_group_by":    400, // not app_id, metric, region, code
	"invalid_limit":       400, // not an integer 1..1000
	"invalid_app_id":      400, // empty or not printable ASCII without spaces, or over 255 bytes
	"invalid_cursor":      400, // alerts: not the next value of an earlier answer
	"invalid_month":       400, // not YYYY-MM
	"future_month":        400, // the month has not begun
	"invalid_format":      400, // not csv, json, ndjson
	"invalid_period":      400, // stats: not day, week, month, year; utilization: not a calendar period
	"invalid_min_ratio":   400, // utilization: not a number 0..1000000
	"invalid_since":       400, // stats: not YYYY-MM-DD, YYYY-MM-DD HH:MM:SS or RFC 3339
	"missing_service_id":  400,
	"missing_metric":      400,
	"too_many_buckets":    400, // more than MaxBuckets buckets
	"too_many_groups":     400, // group_by yields more than MaxGroups series, or more than MaxPoints points
	"missing_month":       400,
	"bad_request":         400, // the HTTP request itself is malformed
	// 413, 414, 431: requests the HTTP server cannot read
	"body_too_large":   413, // a body over 64 KiB (no call takes one)
	"uri_too_long":     414, // a request line over MaxURLLength
	"header_too_large": 431, // request line and headers over 16 KiB
	// 401, 403, 404, 405
	"missing_token":       401,
	"invalid_token":       401,
	"forbidden_service":   403, // the service belongs to another tenant
	"unknown_service":     404,
	"unknown_metric":      404,
	"unknown_application": 404, // stats: application not in the service
	"not_found":           404, // no such endpoint
	"method_not_allowed":  405,
	// 500: a bug (a recovered panic, a statement ClickHouse refuses for its
	// shape); never expected
	"internal_error": 500,
	// 503
	"clickhouse_unavailable": 503,
	"query_timeout":          503,
	"changes_unavailable":    503, // the node runs without a change feed
}

// writeError answers e as JSON. It resets the response first, so the
// headers an error carries (Allow, WWW-Authenticate, Retry-After) are set
// here, from its status.
func writeError(ctx *fasthttp.RequestCtx, e *apiError) {
	ctx.Response.Reset()
	ctx.SetStatusCode(e.status)
	ctx.SetContentType("application/json")
	if e.status == 405 { // every endpoint answers GET and HEAD only
		ctx.Response.Header.Set("Allow", "GET, HEAD")
	}
	if e.status == 401 {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="sluice-query"`)
	}
	if e.status == 503 {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	b := make([]byte, 0, 64+len(e.message))
	b = append(b, `{"error":{"code":`...)
	b = strconv.AppendQuote(b, e.code)
	b = append(b, `,"message":`...)
	b = appendJSONString(b, e.message)
	b = append(b, "}}\n"...)
	ctx.SetBody(b)
}
