package query

import (
	"context"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/valyala/fasthttp"

	"github.com/sluice-dev/sluice/ingest/catalog"
	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/limiter"
)

// PathUtilization is the path of the usage-against-limits endpoint.
const PathUtilization = "/api/v1/utilization"

// MaxUtilizationRows bounds the rows (application × plan limit) of one
// utilization answer. The rows are counted from the configuration before any
// query runs: more is a 400 too_many_groups that asks for a narrower filter.
const MaxUtilizationRows = 10_000

// utilizationRow is one limit of one application with its current window.
type utilizationRow struct {
	AppID       string  `json:"app_id"`
	PlanID      string  `json:"plan_id"`
	State       string  `json:"state"`
	Metric      string  `json:"metric"`
	Period      string  `json:"period"`
	Max         int64   `json:"max"`
	Usage       int64   `json:"usage"`
	Ratio       float64 `json:"ratio"`
	WindowStart string  `json:"window_start"`
	WindowEnd   string  `json:"window_end"`

	unit limiter.Unit
}

// utilizationAnswer is the answer of /api/v1/utilization.
type utilizationAnswer struct {
	ServiceID string           `json:"service_id"`
	Now       string           `json:"now"`
	Limits    []utilizationRow `json:"limits"`
}

// utilizationParams are the filters of a utilization call.
type utilizationParams struct {
	app      string
	metric   string
	period   limiter.Unit // 0: every calendar period
	minRatio float64
}

// parseUtilization reads app_id, metric, period and min_ratio.
func parseUtilization(ctx *fasthttp.RequestCtx, svc *catalog.Service) (p utilizationParams, e *apiError) {
	if v, ok := arg(ctx, "app_id"); ok || ctx.QueryArgs().Has("app_id") {
		if e = checkAppID(v); e != nil {
			return p, e
		}
		p.app = v
	}
	if v, ok := arg(ctx, "metric"); ok || ctx.QueryArgs().Has("metric") {
		m, e := metric(svc, v)
		if e != nil {
			return p, e
		}
		p.metric = m.Name
	}
	if v, ok := arg(ctx, "period"); ok || ctx.QueryArgs().Has("period") {
		per, err := limiter.ParsePeriod(v)
		if err != nil || per.Unit == limiter.Sliding {
			return p, badRequest("invalid_period", "period must be one of minute, hour, day, week, month, year, eternity, not "+quote(v))
		}
		p.period = per.Unit
	}
	if v, ok := arg(ctx, "min_ratio"); ok || ctx.QueryArgs().Has("min_ratio") {
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(r) || r < 0 || r > 1e6 {
			return p, badRequest("invalid_min_ratio", "min_ratio must be a number from 0 to 1000000, not "+quote(v))
		}
		p.minRatio = r
	}
	return p, nil
}

// utilization answers GET /api/v1/utilization: per application and calendar
// limit of its plan, the usage of the window that holds now against the
// limit's max.
//
// The rows come from the configuration (the applications of the service and
// their plans' limits, at most MaxUtilizationRows after the filters); the
// usage from the rollups, one query per distinct period (at most seven), each
// summing its window [start, end) per (application, metric) over the tables
// planFor picks for that one bucket, under one deadline for the call. The
// rollups already apply the metric hierarchy, so a limit on a parent counts
// its children as the limiter does. Sliding-window limits live only in the
// limiter's memory and are not listed.
func (s *Server) utilization(ctx *fasthttp.RequestCtx, sc scope, snap *catalog.Snapshot) *apiError {
	id, ok := arg(ctx, "service_id")
	svc, e := service(snap, sc, id, ok)
	if e != nil {
		return e
	}
	p, e := parseUtilization(ctx, svc)
	if e != nil {
		return e
	}
	now := s.now().UTC()
	rows, e := utilizationRows(svc, p, now)
	if e != nil {
		return e
	}
	// One query per period, with the metrics and applications it needs.
	type need struct{ metrics, apps map[string]bool }
	byUnit := map[limiter.Unit]*need{}
	for _, r := range rows {
		n := byUnit[r.unit]
		if n == nil {
			n = &need{metrics: map[string]bool{}, apps: map[string]bool{}}
			byUnit[r.unit] = n
		}
		n.metrics[r.Metric], n.apps[r.AppID] = true, true
	}
	units := make([]limiter.Unit, 0, len(byUnit))
	for u := range byUnit {
		units = append(units, u)
	}
	sort.Slice(units, func(i, j int) bool { return units[i] < units[j] })
	type key struct {
		unit        limiter.Unit
		app, metric string
	}
	usage := map[key]int64{}
	qctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	for _, u := range units {
		start, end := unitWindow(u, now)
		n := byUnit[u]
		q := sc.utilizationSQL(s.db, planFor(buckets{start, end}), svc.ID, sortedSet(n.metrics), sortedSet(n.apps))
		e := s.run(qctx, q, func(r driver.Rows) error {
			var app, m string
			var v int64
			if err := r.Scan(&app, &m, &v); err != nil {
				return err
			}
			k := key{u, app, m}
			usage[k] = chschema.AddTotal(usage[k], v)
			return nil
		})
		if e != nil {
			return e
		}
	}
	out := make([]utilizationRow, 0, len(rows)) // [] when none: never null
	for _, r := range rows {
		r.Usage = usage[key{r.unit, r.AppID, r.Metric}]
		r.Ratio = ratio(r.Usage, r.Max)
		if r.Ratio >= p.minRatio {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Ratio != out[j].Ratio {
			return out[i].Ratio > out[j].Ratio
		}
		if out[i].AppID != out[j].AppID {
			return out[i].AppID < out[j].AppID
		}
		if out[i].Metric != out[j].Metric {
			return out[i].Metric < out[j].Metric
		}
		return out[i].unit < out[j].unit
	})
	return writeJSON(ctx, utilizationAnswer{ServiceID: svc.ID, Now: now.Format(time.RFC3339), Limits: out})
}

// utilizationRows lists the (application, limit) rows p selects, with their
// windows and no usage yet, in no particular order. It stops at
// MaxUtilizationRows+1 rows (a 400), so its work is bounded by the
// service's applications plus that many rows.
func utilizationRows(svc *catalog.Service, p utilizationParams, now time.Time) ([]utilizationRow, *apiError) {
	apps := svc.Apps().All()
	if p.app != "" {
		a := svc.App(p.app)
		if a == nil {
			return nil, errf(404, "unknown_application", "service "+quote(svc.ID)+" has no application "+quote(p.app))
		}
		apps = func(yield func(string, *catalog.App) bool) { yield(p.app, a) }
	}
	// Each plan's matching limits, computed once per plan.
	type lim struct {
		metric string
		unit   limiter.Unit
		period string
		max    int64
		start  string
		end    string
	}
	perPlan := map[*catalog.Plan][]lim{}
	var rows []utilizationRow
	for _, a := range apps {
		plan := a.Plan()
		if plan == nil {
			continue
		}
		ls, ok := perPlan[plan]
		if !ok {
			for _, l := range plan.Limits {
				name := svc.MetricName(l.Metric)
				if l.Period.Unit == limiter.Sliding || name == "" || (p.metric != "" && name != p.metric) || (p.period != 0 && l.Period.Unit != p.period) {
					continue
				}
				start, end := unitWindow(l.Period.Unit, now)
				ls = append(ls, lim{metric: name, unit: l.Period.Unit, period: l.Period.String(), max: l.Max,
					start: start.Format(time.RFC3339), end: end.Format(time.RFC3339)})
			}
			perPlan[plan] = ls
		}
		if len(rows)+len(ls) > MaxUtilizationRows {
			return nil, badRequest("too_many_groups", "more than "+strconv.Itoa(MaxUtilizationRows)+
				" limits match; filter with app_id, metric, period")
		}
		state := stateName(a.State)
		for _, l := range ls {
			rows = append(rows, utilizationRow{AppID: a.ID, PlanID: plan.ID, State: state, Metric: l.metric,
				Period: l.period, Max: l.max, WindowStart: l.start, WindowEnd: l.end, unit: l.unit})
		}
	}
	return rows, nil
}

// eternityEnd is where an eternity window ends for the rollups: the largest
// DateTime, 2106-02-07.
var eternityEnd = time.Unix(1<<32-1, 0).UTC()

// unitWindow is the calendar window [start, end) of u holding now, cut where
// the limiter cuts it (limiter.CalendarBounds); eternity is all of the
// rollups' time.
func unitWindow(u limiter.Unit, now time.Time) (time.Time, time.Time) {
	if u == limiter.Eternity {
		return time.Unix(0, 0).UTC(), eternityEnd
	}
	s, e := limiter.CalendarBounds(u, now.Unix())
	return time.Unix(s, 0).UTC(), time.Unix(e, 0).UTC()
}

// ratio is usage / max. A limit of 0 forbids every unit: it is reached (1)
// when nothing was used, and past it by the usage otherwise.
func ratio(usage, max int64) float64 {
	if max <= 0 {
		return 1 + float64(usage)
	}
	return float64(usage) / float64(max)
}

// sortedSet returns the keys of m, sorted.
func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// utilizationSQL sums, per (app_id, metric), the usage of the metrics and
// applications given over the one-bucket plan p: rows (app_id String,
// metric String, v Int64). The metrics (at most catalog.MaxMetrics) and
// applications (at most MaxUtilizationRows) travel as external tables, so the
// statement's size is constant.
func (sc scope) utilizationSQL(db string, p plan, service string, metrics, apps []string) *stmt {
	var parts []*stmt
	for _, table := range p.tables() {
		s := sc.selectFrom(db, table, "app_id, metric, "+chschema.SumValue+" AS v")
		s.and("service_id = ?", service)
		s.inTable("metric", extMetrics, metrics)
		s.inTable("app_id", extApps, apps)
		s.spans(coverSpans(p[table], maxReadSpans))
		s.raw(rowsOfPlan[table])
		s.raw(" GROUP BY app_id, metric")
		parts = append(parts, s)
	}
	out := unionAll(parts)
	cutUnits(p).attach(out)
	return out
}
