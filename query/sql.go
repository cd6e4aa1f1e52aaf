package query

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/limiter"
)

// scope is the tenant a request is authenticated as. It is the only way to
// build SQL in this package: every statement starts from scope.selectFrom,
// which makes `tenant_id = ?` (bound to the credential's tenant) the first
// condition of every WHERE clause. A scope is made only by authenticate.
type scope struct {
	tenant string
	// slowdown is Server.slowdown, the tests' constant condition that makes
	// every table read genuinely slow on the server.
	slowdown string
}

// stmt is SQL under construction plus its bound arguments. Only constant SQL
// text written in this package is ever appended; every value that comes from
// a request is an argument, bound by clickhouse-go, never spliced.
//
// Sets of values that grow with a request (the metrics of a group_by=metric,
// the candidates of a top-N, the UTC hours, days and months that bucket edges
// cut) are not written into the SQL at all: they travel as ClickHouse
// external tables (ext) beside it, and the SQL names them (`col IN name`).
// So the SQL text of every statement is bounded by a constant, whatever the
// range, the time zone or the number of values: ClickHouse never refuses it
// as too big, and parsing and analysing it costs nothing worth counting
// (ClickHouse 18.16's analysis of a WHERE is superlinear in its terms: 256
// time ranges OR'ed take a second, 2,400 over a minute, and neither the
// query's deadline nor KILL QUERY stops a query there).
type stmt struct {
	sql  strings.Builder
	args []any
	ext  []*ext.Table
	err  error // building an external table failed (a bug); run refuses the statement
}

// selectFrom starts `SELECT cols FROM db.table WHERE tenant_id = ?`. db is
// checked by New (chschema.CheckDatabase); table and cols are constants.
func (sc scope) selectFrom(db, table, cols string) *stmt {
	return sc.selectPre(db, table, cols, nil, nil)
}

// selectPre is selectFrom with the time condition of spans pre as PREWHERE
// (none when pre is empty): `SELECT cols FROM db.table PREWHERE (t ...) WHERE
// tenant_id = ?`. colArgs are the arguments of placeholders in cols.
//
// Why PREWHERE: a read that the sort key narrows only to whole applications
// (or not at all) goes through millions of rows to keep a few minutes or
// hours of them; ClickHouse then reads just the t column of those rows and
// the other columns only where t matched, several times fewer bytes. t is a
// sort-key column, so ClickHouse does not move the condition to PREWHERE by
// itself; the key analysis still uses both clauses. The tenant condition
// stays the first of WHERE, as everywhere.
func (sc scope) selectPre(db, table, cols string, colArgs []any, pre []span) *stmt {
	s := &stmt{}
	s.sql.WriteString("SELECT ")
	s.sql.WriteString(cols)
	s.args = append(s.args, colArgs...)
	s.sql.WriteString(" FROM ")
	s.sql.WriteString(db)
	s.sql.WriteByte('.')
	s.sql.WriteString(table)
	if len(pre) > 0 {
		s.sql.WriteString(" PREWHERE ")
		s.spanCond(pre)
	}
	s.sql.WriteString(" WHERE tenant_id = ?")
	s.args = append(s.args, sc.tenant)
	if sc.slowdown != "" {
		s.and(sc.slowdown)
	}
	return s
}

// and appends ` AND cond` with cond's arguments.
func (s *stmt) and(cond string, args ...any) *stmt {
	s.sql.WriteString(" AND ")
	s.sql.WriteString(cond)
	s.args = append(s.args, args...)
	return s
}

// inTable appends ` AND col IN name`, name being an external table of one
// String column that holds vals (sent with the query, see stmt). vals must
// not be empty.
func (s *stmt) inTable(col, name string, vals []string) *stmt {
	s.sql.WriteString(" AND ")
	s.sql.WriteString(col)
	s.sql.WriteString(" IN ")
	s.sql.WriteString(name)
	s.addExt(name, "String", len(vals), func(t *ext.Table, i int) error { return t.Append(vals[i]) })
	return s
}

// addExt attaches the external table name (one column v of type typ, n rows
// appended by row) unless the statement already has one of that name.
func (s *stmt) addExt(name, typ string, n int, row func(t *ext.Table, i int) error) {
	for _, t := range s.ext {
		if t.Name() == name {
			return
		}
	}
	t, err := ext.NewTable(name, ext.Column("v", column.Type(typ)))
	for i := 0; err == nil && i < n; i++ {
		err = row(t, i)
	}
	if err != nil {
		if s.err == nil {
			s.err = fmt.Errorf("query: external table %s: %w", name, err)
		}
		return
	}
	s.ext = append(s.ext, t)
}

// spans appends ` AND ((t >= ? AND t < ?) OR ...)` for the spans of one table.
func (s *stmt) spans(sp []span) *stmt {
	s.sql.WriteString(" AND ")
	return s.spanCond(sp)
}

// spanCond appends `((t >= ? AND t < ?) OR ...)`.
func (s *stmt) spanCond(sp []span) *stmt {
	s.sql.WriteString("(")
	for i, x := range sp {
		if i > 0 {
			s.sql.WriteString(" OR ")
		}
		s.sql.WriteString("(t >= toDateTime(?) AND t < toDateTime(?))")
		s.args = append(s.args, uint32(x.from.Unix()), uint32(x.to.Unix()))
	}
	s.sql.WriteByte(')')
	return s
}

// raw appends constant SQL text.
func (s *stmt) raw(text string) *stmt {
	s.sql.WriteString(text)
	return s
}

// unionAll joins statements with UNION ALL into one, with the external
// tables of all of them (those of one name are the same table: once).
func unionAll(parts []*stmt) *stmt {
	out := &stmt{}
	for i, p := range parts {
		if i > 0 {
			out.sql.WriteString(" UNION ALL ")
		}
		out.sql.WriteString(p.sql.String())
		out.args = append(out.args, p.args...)
		out.takeExt(p)
	}
	return out
}

// takeExt adds p's external tables (and build error) to s.
func (s *stmt) takeExt(p *stmt) {
	if s.err == nil {
		s.err = p.err
	}
next:
	for _, t := range p.ext {
		for _, have := range s.ext {
			if have.Name() == t.Name() {
				continue next
			}
		}
		s.ext = append(s.ext, t)
	}
}

// filter is what a usage or denial query selects, besides tenant and time.
type filter struct {
	service  string
	app      string   // "" = every application
	metrics  []string // usage rows of these metrics; nil = denial rows
	allUsage bool     // every usage row (metric != '')
}

// where appends the filter's conditions.
func (f filter) where(s *stmt) {
	s.and("service_id = ?", f.service)
	switch {
	case f.allUsage:
		s.and("metric != ''")
	case len(f.metrics) == 1:
		s.and("metric = ?", f.metrics[0])
	case len(f.metrics) > 1: // up to catalog.MaxMetrics names: not in the SQL
		s.inTable("metric", extMetrics, f.metrics)
	default:
		s.and("metric = ''").and("reason != ''")
	}
	if f.app != "" {
		s.and("app_id = ?", f.app)
	}
}

// groupCols maps a group_by value to the SQL expression selected as the
// group key (a String). Only these constants are ever spliced.
var groupCols = map[string]string{
	"":       "''",
	"app_id": "app_id",
	"metric": "metric",
	"region": "region",
	"code":   "toString(code)",
	"reason": "reason",
}

// seriesSQL is the series query of f over plan p: per table, the sums per
// (group, row time), as (g String, ts UInt32, v Int64) rows, UNION ALL'd.
// Every sum here is chschema's saturating one: never negative, at most
// chschema.MaxTotal.
// Go folds the row times into the calendar buckets.
//
// Its size does not depend on the plan. Each table read narrows t to at most
// maxReadSpans ranges (coverSpans: the plan's spans of that table, merged
// across their smallest gaps when there are more), which the sort key uses;
// which rows inside them belong to the plan is then decided exactly by
// rowsOfPlan, against the cut units of the plan sent as external tables.
func (sc scope) seriesSQL(db string, p plan, f filter, groupBy string) *stmt {
	col := groupCols[groupBy]
	var parts []*stmt
	for _, table := range p.tables() {
		s := sc.selectFrom(db, table, col+" AS g, toUInt32(t) AS ts, "+chschema.SumValue+" AS v")
		f.where(s)
		s.spans(coverSpans(p[table], maxReadSpans))
		s.raw(rowsOfPlan[table])
		s.raw(" GROUP BY g, ts")
		parts = append(parts, s)
	}
	out := unionAll(parts)
	cutUnits(p).attach(out)
	return out
}

// maxReadSpans bounds the time ranges OR'ed in one table read of a series.
// ClickHouse 18.16 analyses 16 in about 10 ms, 64 in 70 ms and 256 in a
// second (the cost grows faster than their number); 16 ranges keep a read
// of a long chart in a half-hour zone (one hour of minutes around every
// daily edge) to a few of the table's granules more than it needs.
const maxReadSpans = 16

// coverSpans returns at most max spans that cover the sorted, disjoint spans
// sp: the max-1 largest gaps between them are kept, the others are filled
// in. Every returned span starts where a span of sp starts and ends where one
// ends, so it is aligned as they are, and lies inside their hull.
func coverSpans(sp []span, max int) []span {
	if len(sp) <= max || max < 1 {
		return sp
	}
	gaps := make([]int, len(sp)-1) // gap i lies between sp[i] and sp[i+1]
	for i := range gaps {
		gaps[i] = i
	}
	sort.SliceStable(gaps, func(a, b int) bool {
		return sp[gaps[a]+1].from.Sub(sp[gaps[a]].to) > sp[gaps[b]+1].from.Sub(sp[gaps[b]].to)
	})
	keep := make([]bool, len(sp)-1)
	for _, g := range gaps[:max-1] {
		keep[g] = true
	}
	out := make([]span, 0, max)
	cur := sp[0]
	for i := 1; i < len(sp); i++ {
		if keep[i-1] {
			out = append(out, cur)
			cur = sp[i]
			continue
		}
		cur.to = sp[i].to
	}
	return append(out, cur)
}

// External tables (see stmt). Their names are constants of this package;
// each has one column v.
const (
	extCutMonths = "sluice_cut_months" // UInt32 YYYYMM of UTC months
	extCutDays   = "sluice_cut_days"   // UInt32 UTC days since 1970-01-01
	extCutHours  = "sluice_cut_hours"  // UInt32 UTC hours since 1970-01-01 00:00
	extMetrics   = "sluice_metrics"    // String metric names of a filter
	extApps      = "sluice_apps"       // String application ids (top-N candidates)
)

// rowsOfPlan is, per table, the condition that keeps exactly the rows the
// plan assigns to that table, given that t lies inside the plan's spans of
// it (as coverSpans's ranges ensure).
//
// Why it is exact: planFor gives a table's row to a bucket when the row lies
// inside one bucket and the row of the next coarser table holding it does
// not (see planFor); UTC months, days, hours and minutes nest. A bucket edge
// strictly inside a unit "cuts" it. So the plan's rows are:
// months that no edge cuts; days no edge cuts in months one cuts; hours no
// edge cuts in days one cuts; minutes (edges are whole minutes: never cut)
// in hours one cuts. cutUnits lists the cut units from the plan itself.
var rowsOfPlan = map[string]string{
	chschema.UsageMonth: " AND toUInt32(toYYYYMM(t, 'UTC')) NOT IN " + extCutMonths,
	chschema.UsageDay: " AND toUInt32(toYYYYMM(t, 'UTC')) IN " + extCutMonths +
		" AND toUInt32(intDiv(toUInt32(t), 86400)) NOT IN " + extCutDays,
	chschema.UsageHour: " AND toUInt32(intDiv(toUInt32(t), 86400)) IN " + extCutDays +
		" AND toUInt32(intDiv(toUInt32(t), 3600)) NOT IN " + extCutHours,
	chschema.UsageMinute: " AND toUInt32(intDiv(toUInt32(t), 3600)) IN " + extCutHours,
}

// cuts are the UTC months (YYYYMM), days and hours (since the Unix epoch)
// that a bucket edge of a plan cuts, each with the sentinel 0 (no row has
// it) so that no external table is ever empty.
type cuts struct{ months, days, hours []uint32 }

// cutUnits returns the units that bucket edges cut, found from the plan p
// (of planFor): a unit is cut exactly when rows of a finer table lie in it
// (an uncut unit inside a bucket is read whole from its own table). The cut
// hours are those holding minute spans, the cut days those holding hour or
// minute spans, the cut months those holding day, hour or minute spans. Each
// unit listed holds a bucket edge, so none has more than MaxBuckets+1
// entries, whatever the range.
func cutUnits(p plan) cuts {
	months := map[uint32]bool{0: true}
	days := map[uint32]bool{0: true}
	hours := map[uint32]bool{0: true}
	hourG, dayG, monthG := utcGrain("", limiter.Hour), utcGrain("", limiter.Day), utcGrain("", limiter.Month)
	for _, x := range p[chschema.UsageMinute] {
		for h := hourG.floor(x.from); h.Before(x.to); h = hourG.next(h) {
			hours[uint32(h.Unix()/3600)] = true
		}
	}
	for _, table := range []string{chschema.UsageMinute, chschema.UsageHour} {
		for _, x := range p[table] {
			for d := dayG.floor(x.from); d.Before(x.to); d = dayG.next(d) {
				days[uint32(d.Unix()/86400)] = true
			}
		}
	}
	for _, table := range []string{chschema.UsageMinute, chschema.UsageHour, chschema.UsageDay} {
		for _, x := range p[table] {
			for m := monthG.floor(x.from); m.Before(x.to); m = monthG.next(m) {
				months[uint32(m.Year()*100+int(m.Month()))] = true
			}
		}
	}
	return cuts{months: sortedKeys(months), days: sortedKeys(days), hours: sortedKeys(hours)}
}

func sortedKeys(m map[uint32]bool) []uint32 {
	out := make([]uint32, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// attach adds the three cut tables to s.
func (c cuts) attach(s *stmt) {
	for _, x := range []struct {
		name string
		keys []uint32
	}{{extCutMonths, c.months}, {extCutDays, c.days}, {extCutHours, c.hours}} {
		s.addExt(x.name, "UInt32", len(x.keys), func(t *ext.Table, i int) error { return t.Append(x.keys[i]) })
	}
}

// topSQL is the top-N query: applications by their sum over every table of
// the plan, descending, ties by app_id.
func (sc scope) topSQL(db string, p plan, f filter, limit int) *stmt {
	var parts []*stmt
	for _, table := range p.tables() {
		s := sc.selectPre(db, table, "app_id, "+chschema.SumValue+" AS v", nil, p[table])
		f.where(s)
		s.raw(" GROUP BY app_id")
		parts = append(parts, s)
	}
	inner := unionAll(parts)
	out := &stmt{}
	out.sql.WriteString("SELECT app_id, " + chschema.SaturatingSum("v") + " AS total FROM (")
	out.sql.WriteString(inner.sql.String())
	out.sql.WriteString(") GROUP BY app_id ORDER BY total DESC, app_id ASC LIMIT ?")
	out.args = append(inner.args, limit)
	out.takeExt(inner)
	return out
}

// topBoundsSQL is the first query of the candidate top-N (see topApps): per
// application, lo = the sum over the whole-hour part [lo, hi) of the range
// (plan inner, coarsest tables) and hi = lo + the sum over the partial hours
// at the ends (edgeHours, from usage_hour, outside [lo, hi)), and whole = 1
// if the application has a row in the whole-hour part. usage_hour is read
// once for both: a row's k says whether it lies outside [lo, hi). Rows
// (app_id String, lo Int64, hi Int64, whole UInt8), in no order.
func (sc scope) topBoundsSQL(db string, inner plan, lo, hi time.Time, edgeHours []span, f filter) *stmt {
	var parts []*stmt
	for _, table := range inner.tables() {
		if table == chschema.UsageHour {
			continue
		}
		s := sc.selectPre(db, table, "app_id, toUInt8(0) AS k, "+chschema.SumValue+" AS v", nil, inner[table])
		f.where(s)
		s.raw(" GROUP BY app_id")
		parts = append(parts, s)
	}
	hours := mergeSpans(append(append([]span(nil), inner[chschema.UsageHour]...), edgeHours...))
	if len(hours) > 0 {
		s := sc.selectPre(db, chschema.UsageHour, "app_id, toUInt8(t < toDateTime(?) OR t >= toDateTime(?)) AS k, "+chschema.SumValue+" AS v",
			[]any{uint32(lo.Unix()), uint32(hi.Unix())}, hours)
		f.where(s)
		s.raw(" GROUP BY app_id, k")
		parts = append(parts, s)
	}
	u := unionAll(parts)
	out := &stmt{}
	out.sql.WriteString("SELECT app_id, " + chschema.SaturatingSumIf("v", "k = 0") + " AS lo, " + chschema.SaturatingSum("v") + " AS hi, toUInt8(min(k) = 0) AS whole FROM (")
	out.sql.WriteString(u.sql.String())
	out.sql.WriteString(") GROUP BY app_id")
	out.args = u.args
	out.takeExt(u)
	return out
}

// mergeSpans sorts spans and joins those that touch or overlap.
func mergeSpans(sp []span) []span {
	sort.Slice(sp, func(i, j int) bool { return sp[i].from.Before(sp[j].from) })
	var out []span
	for _, x := range sp {
		if n := len(out); n > 0 && !x.from.After(out[n-1].to) {
			if x.to.After(out[n-1].to) {
				out[n-1].to = x.to
			}
			continue
		}
		out = append(out, x)
	}
	return out
}

// topEdgeSQL is the second query of the candidate top-N: the exact sums over
// the ragged minutes at the ends of the range (edges, from usage_minute) of
// the candidate applications only, so that the sort key (…, metric, app_id,
// t) narrows the read to their rows. Rows (app_id String, v Int64). The
// candidates (up to MaxTopCandidates ids of up to 255 bytes) travel as an
// external table, not in the SQL. apps must not be empty.
func (sc scope) topEdgeSQL(db string, edges []span, f filter, apps []string) *stmt {
	s := sc.selectPre(db, chschema.UsageMinute, "app_id, "+chschema.SumValue+" AS v", nil, edges)
	f.where(s)
	s.inTable("app_id", extApps, apps)
	s.raw(" GROUP BY app_id")
	return s
}
