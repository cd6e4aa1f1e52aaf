package query

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/chschema"
)

func d(y int, m time.Month, day, h, min int) time.Time {
	return time.Date(y, m, day, h, min, 0, 0, time.UTC)
}

// TestTableChoice is the table-driven check of which rollup tables answer a
// query: the coarsest that answer it exactly. A 90-day daily chart never
// reads minute data.
func TestTableChoice(t *testing.T) {
	const (
		M  = chschema.UsageMonth
		D  = chschema.UsageDay
		H  = chschema.UsageHour
		Mi = chschema.UsageMinute
	)
	for _, tc := range []struct {
		name     string
		from, to time.Time
		g        Granularity
		tz       string
		want     []string
	}{
		{"90-day daily chart, UTC", d(2026, 8, 1, 0, 0), d(2026, 10, 30, 0, 0), Day, "UTC", []string{D}},
		{"90-day daily chart, New York (DST inside)", d(2026, 8, 25, 0, 0), d(2026, 11, 23, 0, 0), Day, "America/New_York", []string{H}},
		{"90-day daily chart, Berlin (DST inside)", d(2026, 8, 25, 0, 0), d(2026, 11, 23, 0, 0), Day, "Europe/Berlin", []string{H}},
		{"90-day daily chart, Kolkata (+05:30)", d(2026, 8, 25, 0, 0), d(2026, 11, 23, 0, 0), Day, "Asia/Kolkata", []string{H, Mi}},
		{"30-day hourly, UTC", d(2026, 10, 1, 0, 0), d(2026, 10, 31, 0, 0), Hour, "UTC", []string{H}},
		{"30-day hourly, New York", d(2026, 10, 15, 0, 0), d(2026, 11, 14, 0, 0), Hour, "America/New_York", []string{H}},
		{"30-day hourly, Kolkata", d(2026, 10, 15, 0, 0), d(2026, 11, 14, 0, 0), Hour, "Asia/Kolkata", []string{Mi}},
		{"minutes of a day", d(2026, 11, 1, 0, 0), d(2026, 11, 2, 0, 0), Minute, "UTC", []string{Mi}},
		{"year by month, UTC", d(2025, 1, 1, 0, 0), d(2026, 1, 1, 0, 0), Month, "UTC", []string{M}},
		{"year by month, Berlin", d(2025, 1, 1, 0, 0), d(2026, 1, 1, 0, 0), Month, "Europe/Berlin", []string{D, H}},
		{"weeks, UTC", d(2026, 9, 7, 0, 0), d(2026, 11, 2, 0, 0), Week, "UTC", []string{D}},
		{"total over whole months", d(2026, 1, 1, 0, 0), d(2026, 7, 1, 0, 0), Total, "UTC", []string{M}},
		{"total over ragged range", d(2026, 9, 14, 10, 17), d(2026, 11, 2, 3, 0), Total, "UTC", []string{M, D, H, Mi}},
		{"total over whole hours", d(2026, 10, 14, 10, 0), d(2026, 10, 14, 15, 0), Total, "UTC", []string{H}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			loc, err := time.LoadLocation(tc.tz)
			if err != nil {
				t.Fatal(err)
			}
			b, ok := makeBuckets(tc.from, tc.to, tc.g, loc, MaxBuckets)
			if !ok {
				t.Fatal("too many buckets")
			}
			p := planFor(b)
			if got := p.tables(); !slices.Equal(got, tc.want) {
				t.Errorf("tables %v, want %v", got, tc.want)
			}
			checkPlan(t, p, b)
		})
	}
}

// checkPlan checks that p covers exactly the buckets' range, without overlap,
// and that every span is aligned to its table and lies inside one bucket.
func checkPlan(t *testing.T, p plan, b buckets) {
	t.Helper()
	var all []span
	for table, sp := range p {
		var g grain
		for _, x := range grains {
			if x.table == table {
				g = x
			}
		}
		for _, s := range sp {
			if !g.floor(s.from).Equal(s.from) || !g.floor(s.to).Equal(s.to) {
				t.Errorf("%s span %v..%v not aligned", table, s.from, s.to)
			}
			// every row of the span inside one bucket
			for r := s.from; r.Before(s.to); r = g.next(r) {
				i := b.index(r)
				if i < 0 || g.next(r).After(b[i+1]) {
					t.Fatalf("%s row at %v crosses a bucket boundary", table, r)
				}
			}
			all = append(all, s)
		}
	}
	slices.SortFunc(all, func(x, y span) int { return x.from.Compare(y.from) })
	cur := b[0]
	for _, s := range all {
		if !s.from.Equal(cur) {
			t.Fatalf("gap or overlap at %v (span starts %v)", cur, s.from)
		}
		cur = s.to
	}
	if !cur.Equal(b[len(b)-1]) {
		t.Fatalf("plan ends %v, buckets end %v", cur, b[len(b)-1])
	}
}

// TestPlanProperties checks coverage and exactness for every zone and
// granularity over ragged ranges.
func TestPlanProperties(t *testing.T) {
	for _, zone := range testZones {
		loc, _ := time.LoadLocation(zone)
		for _, g := range []Granularity{Minute, Hour, Day, Week, Month, Total} {
			from, to := d(2026, 10, 20, 7, 31), d(2026, 11, 4, 2, 13)
			if g == Minute {
				to = from.Add(20 * time.Hour)
			}
			b, ok := makeBuckets(from, to, g, loc, MaxBuckets)
			if !ok {
				t.Fatalf("%s %s: too many buckets", zone, g)
			}
			checkPlan(t, planFor(b), b)
		}
	}
}

// TestEveryQueryIsTenantScoped: each table read of every query shape has
// `WHERE tenant_id = ?` bound to the scope's tenant (the top-N reads put
// their time spans first, as PREWHERE), and every placeholder has its
// argument.
func TestEveryQueryIsTenantScoped(t *testing.T) {
	b, _ := makeBuckets(d(2026, 9, 14, 10, 17), d(2026, 11, 2, 3, 0), Total, time.UTC, 10)
	p := planFor(b)
	sc := scope{tenant: "t1"}
	f := filter{service: "s1", metrics: []string{"hits", "search"}, app: "a"}
	lo, hi := d(2026, 9, 14, 11, 0), d(2026, 11, 2, 3, 0)
	inner := planFor(buckets{lo, hi})
	edgeHours := []span{{lo.Add(-time.Hour), lo}}
	edges := []span{{b[0], lo}}
	for name, c := range map[string]struct {
		q     *stmt
		reads int
	}{
		"series":     {sc.seriesSQL("db", p, f, "app_id"), 4},
		"denials":    {sc.seriesSQL("db", p, filter{service: "s1"}, "reason"), 4},
		"top":        {sc.topSQL("db", p, f, 10), 4},
		"top bounds": {sc.topBoundsSQL("db", inner, lo, hi, edgeHours, f), 3},
		"top edges":  {sc.topEdgeSQL("db", edges, f, []string{"a", "b'c"}), 1},
	} {
		sql := c.q.sql.String()
		reads := countOf(sql, " FROM db.")
		scoped := countOf(sql, " WHERE tenant_id = ?")
		if reads != c.reads || scoped != reads {
			t.Errorf("%s: %d table reads, %d scoped: %s", name, reads, scoped, sql)
		}
		if countOf(sql, "?") != len(c.q.args) {
			t.Fatalf("%s: args %v for %d placeholders", name, c.q.args, countOf(sql, "?"))
		}
		for i := 0; i+len(" WHERE tenant_id = ?") <= len(sql); i++ {
			if strings.HasPrefix(sql[i:], " WHERE tenant_id = ?") {
				if arg := c.q.args[countOf(sql[:i], "?")]; arg != "t1" {
					t.Errorf("%s: tenant placeholder bound to %v", name, arg)
				}
			}
		}
	}
}

func countOf(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			n++
		}
	}
	return n
}
