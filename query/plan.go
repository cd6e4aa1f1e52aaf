package query

import (
	"time"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/limiter"
)

// grain is one rollup table and the UTC width of its rows.
type grain struct {
	table string
	floor func(time.Time) time.Time // start of the row's interval holding t
	next  func(time.Time) time.Time // start of the following row's interval
}

// grains, coarsest first. A row of usage_day covers one UTC day, and so on.
var grains = []grain{
	utcGrain(chschema.UsageMonth, limiter.Month),
	utcGrain(chschema.UsageDay, limiter.Day),
	utcGrain(chschema.UsageHour, limiter.Hour),
	utcGrain(chschema.UsageMinute, limiter.Minute),
}

// utcGrain is table's grain: the limiter's UTC windows of u.
func utcGrain(table string, u limiter.Unit) grain {
	return grain{table,
		func(t time.Time) time.Time { s, _ := limiter.CalendarBounds(u, t.Unix()); return time.Unix(s, 0).UTC() },
		func(t time.Time) time.Time { _, e := limiter.CalendarBounds(u, t.Unix()); return time.Unix(e, 0).UTC() }}
}

// span is a half-open UTC interval [from, to).
type span struct{ from, to time.Time }

// plan says which table answers which part of a query: for each table, the
// intervals to read from it. Every interval of a table is aligned to that
// table's rows and lies inside one bucket, so each row read belongs wholly to
// one bucket and the answer is exact.
type plan map[string][]span

// tables returns the tables of p, coarsest first (stable order for SQL).
func (p plan) tables() []string {
	var out []string
	for _, g := range grains {
		if len(p[g.table]) > 0 {
			out = append(out, g.table)
		}
	}
	return out
}

// planFor splits every bucket of b into the coarsest rows that fit in it:
// usage_month for the whole UTC months inside, usage_day for the whole UTC
// days left at its ends, then usage_hour, and usage_minute only for the
// fractions of an hour left at the very ends (time zones with half-hour
// offsets). Adjacent pieces of one table are merged. A 90-day chart of UTC
// days reads only usage_day; of New York days, only usage_hour.
//
// Equivalently (UTC months, days, hours and minutes nest): a row belongs to
// the plan when it lies inside one bucket and the row of the next coarser
// table holding it does not. seriesSQL selects the plan's rows by that rule
// (rowsOfPlan), not by listing the spans.
func planFor(b buckets) plan {
	p := plan{}
	for i := 0; i < b.n(); i++ {
		split(p, b[i].UTC(), b[i+1].UTC(), 0)
	}
	return p
}

// split adds [a, z) to p using grains[level] for its aligned middle and finer
// grains for the ends.
func split(p plan, a, z time.Time, level int) {
	if !a.Before(z) {
		return
	}
	g := grains[level]
	if level == len(grains)-1 {
		add(p, g.table, a, z)
		return
	}
	start := g.floor(a)
	if start.Before(a) {
		start = g.next(a)
	}
	end := g.floor(z)
	if !start.Before(end) {
		split(p, a, z, level+1)
		return
	}
	split(p, a, start, level+1)
	add(p, g.table, start, end)
	split(p, end, z, level+1)
}

// add appends [a, z) to table's spans, merging it with the last span when
// they touch (buckets are added in order).
func add(p plan, table string, a, z time.Time) {
	s := p[table]
	if n := len(s); n > 0 && s[n-1].to.Equal(a) {
		s[n-1].to = z
		return
	}
	p[table] = append(s, span{a, z})
}
