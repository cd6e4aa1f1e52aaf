package query

import (
	"context"
	"errors"
	"io"
	"sort"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/query/billing"
)

// seriesJSON is one series of a usage or denials answer.
type seriesJSON struct {
	Group  map[string]any `json:"group"`
	Points []pointJSON    `json:"points"`
	Total  int64          `json:"total"`
}

type pointJSON struct {
	T     string `json:"t"`
	Value int64  `json:"value"`
}

// seriesAnswer is the answer of /api/v1/usage and /api/v1/denials.
type seriesAnswer struct {
	From        string       `json:"from"`
	To          string       `json:"to"`
	Granularity string       `json:"granularity"`
	TZ          string       `json:"tz"`
	Series      []seriesJSON `json:"series"`
	Total       int64        `json:"total"`
}

// group is one series being summed.
type group struct {
	key    string
	values []int64
	total  int64
}

// Handlers run their queries under context.Background(): the deadline comes
// from run, and a fasthttp.RequestCtx is not a context to hand to a driver
// (it is tied to the server's shutdown, not to the client).

// series runs the series query of f over the buckets b and folds rows into
// buckets, one group per distinct key (just "" without group_by). Missing
// buckets stay zero.
func (s *Server) series(ctx context.Context, sc scope, f filter, groupBy string, b buckets) ([]*group, int64, *apiError) {
	q := sc.seriesSQL(s.db, planFor(b), f, groupBy)
	groups := map[string]*group{}
	if groupBy == "" {
		groups[""] = &group{values: make([]int64, b.n())}
	}
	// An answer holds at most MaxPoints points (series × buckets).
	maxSeries := min(s.maxGroups, max(1, MaxPoints/b.n()))
	tooMany := "group_by yields more than " + strconv.Itoa(maxSeries) + " series; filter with app_id or use /api/v1/top"
	if maxSeries < s.maxGroups {
		tooMany = "group_by yields more than " + strconv.Itoa(maxSeries) + " series of " + strconv.Itoa(b.n()) +
			" buckets (at most " + strconv.Itoa(MaxPoints) + " points per answer); use a coarser granularity, a shorter range, or filter with app_id"
	}
	var total int64
	e := s.run(ctx, q, func(r driver.Rows) error {
		var key string
		var ts uint32
		var v int64
		if err := r.Scan(&key, &ts, &v); err != nil {
			return err
		}
		i := b.index(time.Unix(int64(ts), 0))
		if i < 0 { // cannot happen: every span lies inside the buckets
			return nil
		}
		g := groups[key]
		if g == nil {
			if len(groups) >= maxSeries {
				return badRequest("too_many_groups", tooMany)
			}
			g = &group{key: key, values: make([]int64, b.n())}
			groups[key] = g
		}
		// Saturating: a total past the largest int64 reads as it (see
		// chschema.SaturatingSum), never as a wrapped negative.
		g.values[i] = chschema.AddTotal(g.values[i], v)
		g.total = chschema.AddTotal(g.total, v)
		total = chschema.AddTotal(total, v)
		return nil
	})
	if e != nil {
		return nil, 0, e
	}
	out := make([]*group, 0, len(groups))
	for _, g := range groups {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return lessKey(groupBy, out[i].key, out[j].key) })
	return out, total, nil
}

// lessKey orders series by group key (codes numerically).
func lessKey(groupBy, a, b string) bool {
	if groupBy == "code" {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		if x != y {
			return x < y
		}
	}
	return a < b
}

// fmtTime renders a bucket start in the query's zone.
func fmtTime(t time.Time, loc *time.Location) string { return t.In(loc).Format(time.RFC3339) }

func tzName(loc *time.Location) string { return loc.String() }

// seriesJSONOf renders groups over b.
func seriesJSONOf(groups []*group, groupBy string, b buckets, loc *time.Location) []seriesJSON {
	times := make([]string, b.n())
	for i := range times {
		times[i] = fmtTime(b[i], loc)
	}
	out := make([]seriesJSON, 0, len(groups))
	for _, g := range groups {
		sj := seriesJSON{Group: map[string]any{}, Points: make([]pointJSON, len(g.values)), Total: g.total}
		if groupBy != "" {
			if groupBy == "code" {
				n, _ := strconv.Atoi(g.key)
				sj.Group[groupBy] = n
			} else {
				sj.Group[groupBy] = g.key
			}
		}
		for i, v := range g.values {
			sj.Points[i] = pointJSON{T: times[i], Value: v}
		}
		out = append(out, sj)
	}
	return out
}

// seriesParams are the parameters usage and denials share.
type seriesParams struct {
	gran Granularity
	loc  *time.Location
	b    buckets
	app  string
}

func (s *Server) parseSeries(ctx *fasthttp.RequestCtx) (p seriesParams, e *apiError) {
	p.gran = Hour
	if v, ok := arg(ctx, "granularity"); ok {
		g, ok := ParseGranularity(v)
		if !ok {
			return p, badRequest("invalid_granularity", "granularity must be one of minute, hour, day, week, month, total, not "+quote(v))
		}
		p.gran = g
	}
	tz, _ := arg(ctx, "tz")
	if p.loc, e = parseTZ(tz, "invalid_tz"); e != nil {
		return p, e
	}
	if v, ok := arg(ctx, "app_id"); ok || ctx.QueryArgs().Has("app_id") {
		if e = checkAppID(v); e != nil {
			return p, e
		}
		p.app = v
	}
	from, to, e := timeRange(ctx, s.now())
	if e != nil {
		return p, e
	}
	b, ok := makeBuckets(from, to, p.gran, p.loc, MaxBuckets)
	if !ok {
		return p, badRequest("too_many_buckets", "the range holds more than 1500 "+p.gran.String()+" buckets; use a coarser granularity or a shorter range")
	}
	p.b = b
	return p, nil
}

// usage answers GET /api/v1/usage.
func (s *Server) usage(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
	id, ok := arg(ctx, "service_id")
	svc, e := service(snap, sc, id, ok)
	if e != nil {
		return e
	}
	groupBy, _ := arg(ctx, "group_by")
	switch groupBy {
	case "", "app_id", "metric", "region", "code":
	default:
		return badRequest("invalid_group_by", "group_by must be one of app_id, metric, region, code, not "+quote(groupBy))
	}
	f := filter{service: svc.ID}
	name, ok := arg(ctx, "metric")
	switch {
	case ok:
		m, e := metric(svc, name)
		if e != nil {
			return e
		}
		if groupBy == "metric" {
			f.metrics = descendants(svc, m) // the metric and its children, each a series
		} else {
			f.metrics = []string{m.Name}
		}
	case groupBy == "metric":
		f.allUsage = true
	default:
		return badRequest("missing_metric", "metric is required (or group_by=metric for every metric)")
	}
	p, e := s.parseSeries(ctx)
	if e != nil {
		return e
	}
	f.app = p.app
	groups, total, e := s.series(context.Background(), sc, f, groupBy, p.b)
	if e != nil {
		return e
	}
	return writeJSON(ctx, seriesAnswer{
		From: fmtTime(p.b[0], p.loc), To: fmtTime(p.b[len(p.b)-1], p.loc),
		Granularity: p.gran.String(), TZ: tzName(p.loc),
		Series: seriesJSONOf(groups, groupBy, p.b, p.loc), Total: total,
	})
}

// denials answers GET /api/v1/denials: denied calls per reason.
func (s *Server) denials(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
	id, ok := arg(ctx, "service_id")
	svc, e := service(snap, sc, id, ok)
	if e != nil {
		return e
	}
	p, e := s.parseSeries(ctx)
	if e != nil {
		return e
	}
	groups, total, e := s.series(context.Background(), sc, filter{service: svc.ID, app: p.app}, "reason", p.b)
	if e != nil {
		return e
	}
	return writeJSON(ctx, seriesAnswer{
		From: fmtTime(p.b[0], p.loc), To: fmtTime(p.b[len(p.b)-1], p.loc),
		Granularity: p.gran.String(), TZ: tzName(p.loc),
		Series: seriesJSONOf(groups, "reason", p.b, p.loc), Total: total,
	})
}

// topAnswer is the answer of /api/v1/top.
type topAnswer struct {
	From      string   `json:"from"`
	To        string   `json:"to"`
	ServiceID string   `json:"service_id"`
	Metric    string   `json:"metric"`
	Apps      []topApp `json:"apps"`
}

type topApp struct {
	AppID string `json:"app_id"`
	Value int64  `json:"value"`
}

// top answers GET /api/v1/top: applications by usage of a metric,
// descending (ties by app_id), computed by topApps.
func (s *Server) top(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
	id, ok := arg(ctx, "service_id")
	svc, e := service(snap, sc, id, ok)
	if e != nil {
		return e
	}
	name, ok := arg(ctx, "metric")
	if !ok {
		return badRequest("missing_metric", "metric is required")
	}
	m, e := metric(svc, name)
	if e != nil {
		return e
	}
	limit, e := parseLimit(ctx)
	if e != nil {
		return e
	}
	from, to, e := timeRange(ctx, s.now())
	if e != nil {
		return e
	}
	b, _ := makeBuckets(from, to, Total, time.UTC, 1)
	// One deadline for the whole answer: topApps may run two or three queries.
	qctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	apps, _, e := s.topApps(qctx, sc, filter{service: svc.ID, metrics: []string{m.Name}}, b, limit)
	if e != nil {
		return e
	}
	ans := topAnswer{From: fmtTime(b[0], time.UTC), To: fmtTime(b[1], time.UTC), ServiceID: svc.ID, Metric: m.Name, Apps: apps}
	return writeJSON(ctx, ans)
}

// exportHandler answers GET /api/v1/export by streaming billing.Export.
func (s *Server) exportHandler(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
	ms, ok := arg(ctx, "month")
	if !ok {
		return badRequest("missing_month", "month is required (YYYY-MM)")
	}
	month, err := billing.ParseMonth(ms)
	if err != nil {
		return badRequest("invalid_month", "month must be YYYY-MM, not "+quote(ms))
	}
	if err := billing.CheckMonth(month, s.now()); err != nil {
		return badRequest("future_month", "month "+ms+" has not begun yet")
	}
	format := billing.CSV
	if v, ok := arg(ctx, "format"); ok {
		if format, err = billing.ParseFormat(v); err != nil {
			return badRequest("invalid_format", "format must be one of csv, json, ndjson, not "+quote(v))
		}
	}
	req := billing.Request{TenantID: sc.tenant, Month: month, Format: format, Timeout: s.export}
	if id, ok := arg(ctx, "service_id"); ok || ctx.QueryArgs().Has("service_id") {
		svc, e := service(snap, sc, id, ok)
		if e != nil {
			return e
		}
		req.ServiceID = svc.ID
	}
	if ctx.IsHead() { // headers only: do not run an export nobody reads
		ctx.SetContentType(billing.ContentType(req.Format))
		return nil
	}
	return s.stream(ctx, req)
}

// stream runs the export in a goroutine that writes into a pipe. The answer's
// status is decided when the export writes its first byte (200, streamed) or
// fails before that (503): billing.Export writes nothing until its query has
// started, so a ClickHouse failure is still a clean error answer.
func (s *Server) stream(ctx *fasthttp.RequestCtx, req billing.Request) *apiError {
	pr, pw := io.Pipe()
	started := make(chan struct{})
	done := make(chan error, 1)
	ectx, cancel := context.WithTimeout(context.Background(), s.export+5*time.Second)
	go func() {
		defer cancel()
		_, err := billing.Export(ectx, s.conn, s.db, req, &firstWrite{w: pw, started: started})
		if err != nil {
			s.log.Error("export failed", "tenant", req.TenantID, "month", req.Month.Format("2006-01"), "err", err)
		}
		done <- err
		pw.CloseWithError(err) // nil: EOF
	}()
	select {
	case <-started:
	case err := <-done:
		select {
		case <-started: // wrote and finished at once
		default:
			pr.Close()
			switch {
			case err == nil: // no rows in a format without framing (NDJSON): an empty file
				exportHeaders(ctx, req)
				return nil
			case errors.Is(err, billing.ErrInvalidFormat), errors.Is(err, billing.ErrInvalidMonth), errors.Is(err, billing.ErrInvalidRequest):
				return badRequest("invalid_month", err.Error())
			default:
				return errf(503, "clickhouse_unavailable", "ClickHouse could not run the export; try again")
			}
		}
	}
	exportHeaders(ctx, req)
	ctx.SetBodyStream(pr, -1) // fasthttp closes pr when done, which stops the export if the client left
	return nil
}

// exportHeaders starts a successful export answer.
func exportHeaders(ctx *fasthttp.RequestCtx, req billing.Request) {
	ctx.SetStatusCode(200)
	ctx.SetContentType(billing.ContentType(req.Format))
	ctx.Response.Header.Set("Content-Disposition", `attachment; filename="sluice-`+req.Month.Format("2006-01")+"."+string(req.Format)+`"`)
}

// firstWrite signals the first Write before passing it on.
type firstWrite struct {
	w       io.Writer
	started chan struct{}
	once    bool
}

func (f *firstWrite) Write(p []byte) (int, error) {
	if !f.once {
		f.once = true
		close(f.started)
	}
	return f.w.Write(p)
}
