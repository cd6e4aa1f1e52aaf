package query

import (
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/sluice-dev/sluice/ingest/chschema"
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
type stmt struct {
	sql  strings.Builder
	args []any
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

// in appends ` AND col IN (?, ?, ...)` with one placeholder per value.
func (s *stmt) in(col string, vals []string) *stmt {
	s.sql.WriteString(" AND ")
	s.sql.WriteString(col)
	s.sql.WriteString(" IN (")
	for i, v := range vals {
		if i > 0 {
			s.sql.WriteString(", ")
		}
		s.sql.WriteByte('?')
		s.args = append(s.args, v)
	}
	s.sql.WriteByte(')')
	return s
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

// unionAll joins statements with UNION ALL into one.
func unionAll(parts []*stmt) *stmt {
	out := &stmt{}
	for i, p := range parts {
		if i > 0 {
			out.sql.WriteString(" UNION ALL ")
		}
		out.sql.WriteString(p.sql.String())
		out.args = append(out.args, p.args...)
	}
	return out
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
	case len(f.metrics) > 1:
		s.in("metric", f.metrics)
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
func (sc scope) seriesSQL(db string, p plan, f filter, groupBy string) *stmt {
	col := groupCols[groupBy]
	var parts []*stmt
	for _, table := range p.tables() {
		s := sc.selectFrom(db, table, col+" AS g, toUInt32(t) AS ts, "+chschema.SumValue+" AS v")
		f.where(s)
		s.spans(p[table])
		s.raw(" GROUP BY g, ts")
		parts = append(parts, s)
	}
	return unionAll(parts)
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
	return out
}

// inSet appends ` AND col IN ?` with vals bound as one argument, a
// clickhouse.GroupSet that the driver renders as a parenthesized list of
// escaped literals (ClickHouse 18.16 has no IN over an array). Used for the
// top-N candidates, which may be thousands: one argument instead of one
// placeholder each. vals must not be empty.
func (s *stmt) inSet(col string, vals []string) *stmt {
	set := clickhouse.GroupSet{Value: make([]any, len(vals))}
	for i, v := range vals {
		set.Value[i] = v
	}
	s.sql.WriteString(" AND ")
	s.sql.WriteString(col)
	s.sql.WriteString(" IN ?")
	s.args = append(s.args, set)
	return s
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
// t) narrows the read to their rows. Rows (app_id String, v Int64).
func (sc scope) topEdgeSQL(db string, edges []span, f filter, apps []string) *stmt {
	s := sc.selectPre(db, chschema.UsageMinute, "app_id, "+chschema.SumValue+" AS v", nil, edges)
	f.where(s)
	s.inSet("app_id", apps)
	s.raw(" GROUP BY app_id")
	return s
}
