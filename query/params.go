package query

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/limiter"
)

// MaxGroups bounds the series of one group_by answer.
const MaxGroups = 1000

// MaxPoints bounds the points (series × buckets) of one usage or denials
// answer, about 9 MB of JSON: a group_by answer of many buckets holds fewer
// series than MaxGroups (133 of 1,500 buckets, 166 of a century of months).
const MaxPoints = 200_000

// MaxLimit bounds top's limit.
const MaxLimit = 1000

// DefaultRange is the range when from and to are absent: the last day.
const DefaultRange = 24 * time.Hour

func appendJSONString(b []byte, s string) []byte {
	j, _ := json.Marshal(s) // strings always marshal
	return append(b, j...)
}

// arg returns a query parameter (the first one if repeated) and whether it
// was present with a non-empty value.
func arg(ctx *fasthttp.RequestCtx, name string) (string, bool) {
	v := ctx.QueryArgs().Peek(name)
	return string(v), len(v) > 0
}

// quote renders a user value for an error message: quoted, cut to 64 bytes,
// valid UTF-8 (invalid bytes are shown escaped by the JSON encoder).
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// locations caches loaded time zones: time.LoadLocation reads the zone file
// every time. Only valid names are stored, so the cache is bounded by the
// tz database.
var locations sync.Map

// parseTZ returns the location named s (IANA, e.g. Europe/Berlin); "" is UTC.
func parseTZ(s string, code string) (*time.Location, *apiError) {
	if s == "" || s == "UTC" {
		return time.UTC, nil
	}
	if l, ok := locations.Load(s); ok {
		return l.(*time.Location), nil
	}
	bad := badRequest(code, "tz must be an IANA time zone name such as Europe/Berlin, not "+quote(s))
	// "Local" would be the server's zone; paths and odd bytes are refused
	// before the zone database is consulted.
	if len(s) > 64 || s == "Local" || strings.Contains(s, "..") || strings.HasPrefix(s, "/") {
		return nil, bad
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '/' || c == '_' || c == '-' || c == '+') {
			return nil, bad
		}
	}
	l, err := time.LoadLocation(s)
	if err != nil {
		return nil, bad
	}
	locations.Store(s, l)
	return l, nil
}

// parseTime parses an RFC 3339 time within [minTime, maxTime].
func parseTime(s, name string) (time.Time, *apiError) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, badRequest("invalid_"+name, name+" must be an RFC 3339 time such as 2026-11-01T00:00:00Z, not "+quote(s))
	}
	if t.Before(minTime) || t.After(maxTime) {
		return time.Time{}, badRequest("invalid_"+name, name+" must lie between 2000-01-01 and 2100-01-01")
	}
	return t, nil
}

// timeRange reads from and to: to defaults to now, from to DefaultRange
// before to.
func timeRange(ctx *fasthttp.RequestCtx, now time.Time) (from, to time.Time, e *apiError) {
	to = now
	if s, ok := arg(ctx, "to"); ok {
		if to, e = parseTime(s, "to"); e != nil {
			return
		}
	}
	from = to.Add(-DefaultRange)
	if s, ok := arg(ctx, "from"); ok {
		if from, e = parseTime(s, "from"); e != nil {
			return
		}
	}
	if !from.Before(to) {
		e = badRequest("invalid_range", "from must be before to")
	}
	return
}

// checkAppID validates an application id the way the catalog does (1-255
// bytes of printable ASCII without spaces). It is bound as an argument, never
// spliced; the check only turns garbage into a clear 400.
func checkAppID(s string) *apiError {
	if len(s) == 0 || len(s) > catalog.MaxAppIDLen || !utf8.ValidString(s) {
		return badRequest("invalid_app_id", "app_id must be 1-255 bytes of printable ASCII without spaces")
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return badRequest("invalid_app_id", "app_id must be 1-255 bytes of printable ASCII without spaces")
		}
	}
	return nil
}

// service resolves service_id for the tenant: 400 missing, 404 unknown,
// 403 another tenant's.
func service(snap *catalog.Snapshot, sc scope, id string, present bool) (*catalog.Service, *apiError) {
	if !present {
		return nil, badRequest("missing_service_id", "service_id is required")
	}
	svc := snap.Services[id]
	if svc == nil {
		return nil, errf(404, "unknown_service", "no service "+quote(id))
	}
	if svc.Tenant == nil || svc.Tenant.ID != sc.tenant {
		return nil, errf(403, "forbidden_service", "service "+quote(id)+" belongs to another tenant")
	}
	return svc, nil
}

// metric resolves a metric name of svc: 404 unknown.
func metric(svc *catalog.Service, name string) (catalog.Metric, *apiError) {
	m, ok := svc.MetricByName(name)
	if !ok {
		return catalog.Metric{}, errf(404, "unknown_metric", "service "+quote(svc.ID)+" has no metric "+quote(name))
	}
	return m, nil
}

// descendants returns name and every metric below it in svc's hierarchy.
func descendants(svc *catalog.Service, m catalog.Metric) []string {
	out := []string{m.Name}
	queue := []limiter.MetricID{m.ID}
	for len(queue) > 0 && len(out) <= len(svc.Metrics) {
		i := svc.MetricPos(queue[0])
		queue = queue[1:]
		if i < 0 || i >= len(svc.Children) {
			continue
		}
		for _, c := range svc.Children[i] {
			if name := svc.MetricName(c); name != "" {
				out = append(out, name)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// parseLimit reads top's limit (default 10).
func parseLimit(ctx *fasthttp.RequestCtx) (int, *apiError) {
	s, ok := arg(ctx, "limit")
	if !ok {
		return 10, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		return 0, badRequest("invalid_limit", "limit must be an integer from 1 to 1000, not "+quote(s))
	}
	return n, nil
}
