package query

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxSQLBytes is the most SQL text any statement of this package may send
// once its arguments are written in (as clickhouse-go binds them on servers
// without query parameters, such as 18.16): far below ClickHouse's
// max_query_size (256 KiB), and small enough that parsing and analysing it
// is instant.
const maxSQLBytes = 16 << 10

// maxSQLRanges bounds the `t >= ... AND t < ...` ranges of one statement:
// ClickHouse 18.16's analysis of OR'ed ranges grows faster than their number
// (a thousand take minutes, and no deadline stops a query there).
const maxSQLRanges = 4 * 16

// boundLen is the length of q's SQL with every argument written in as a
// literal: strings quoted with every byte possibly escaped, numbers in
// decimal, sets as lists.
func boundLen(q *stmt) int {
	var lit func(a any) int
	lit = func(a any) int {
		switch v := a.(type) {
		case string:
			return 2 + 2*len(v)
		case uint32:
			return len(strconv.FormatUint(uint64(v), 10))
		case int:
			return len(strconv.Itoa(v))
		case []any:
			n := 2
			for _, x := range v {
				n += lit(x) + 2
			}
			return n
		}
		// anything else (a set type of the driver): its printed form
		s := fmt.Sprint(a)
		return 2 * len(s)
	}
	n := len(q.sql.String()) - strings.Count(q.sql.String(), "?")
	for _, a := range q.args {
		n += lit(a)
	}
	return n
}

// TestSQLSizeBounded: the SQL of every series over any range the API accepts
// (up to the widest documented one, 2000..2100) in any zone, of a top-N over
// thousands of long candidate ids, and of a group_by=metric over the most and
// longest metric names a service may have, stays under maxSQLBytes and
// maxSQLRanges. Monthly buckets over the widest range in Asia/Kolkata once
// made 300 KB of SQL, which ClickHouse refused ("AST is too big").
func TestSQLSizeBounded(t *testing.T) {
	sc := scope{tenant: strings.Repeat("t", 64)}
	long := func(prefix string, i int) string {
		s := fmt.Sprintf("%s%d-", prefix, i)
		return s + strings.Repeat("x", 255-len(s))
	}
	var metrics []string
	for i := 0; i < 256; i++ { // catalog.MaxMetrics names of catalog.MaxNameLen bytes
		metrics = append(metrics, long("m", i))
	}
	app := long("app", 0)
	filters := map[string]filter{
		"one metric":        {service: strings.Repeat("s", 64), metrics: []string{long("hits", 0)}, app: app},
		"group_by=metric":   {service: strings.Repeat("s", 64), metrics: metrics},
		"every usage":       {service: strings.Repeat("s", 64), allUsage: true},
		"denials of an app": {service: strings.Repeat("s", 64), app: app},
	}
	check := func(name string, q *stmt) {
		t.Helper()
		if n := boundLen(q); n > maxSQLBytes {
			t.Errorf("%s: %d bytes of SQL, want at most %d", name, n, maxSQLBytes)
		}
		if n := strings.Count(q.sql.String(), "t >= "); n > maxSQLRanges {
			t.Errorf("%s: %d time ranges, want at most %d", name, n, maxSQLRanges)
		}
	}
	widest := [][2]time.Time{
		{minTime, maxTime},
		{d(2000, 1, 1, 0, 1), d(2099, 12, 31, 23, 59)},
		{d(2024, 2, 29, 13, 17), d(2026, 3, 29, 1, 0)},
	}
	zones := append([]string{"Etc/GMT-14", "Etc/GMT+12", "Pacific/Kiritimati", "America/St_Johns"}, testZones...)
	for _, zone := range zones {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range []Granularity{Minute, Hour, Day, Week, Month, Total} {
			for _, r := range widest {
				from, to := r[0], r[1]
				b, ok := makeBuckets(from, to, g, loc, MaxBuckets)
				if !ok {
					// the widest range that fits: MaxBuckets buckets from `from`
					to = from
					for i := 0; i < MaxBuckets; i++ {
						to = nextBoundary(floorBucket(to, g, loc), g, loc)
					}
					if b, ok = makeBuckets(from, to.Add(-time.Minute), g, loc, MaxBuckets); !ok {
						t.Fatalf("%s %s: %d buckets from %v do not fit", zone, g, MaxBuckets, from)
					}
				}
				p := planFor(b)
				for fname, f := range filters {
					for _, groupBy := range []string{"", "app_id", "code"} {
						check(fmt.Sprintf("%s %s %v..%v %s %s", zone, g, from, to, fname, groupBy), sc.seriesSQL("db", p, f, groupBy))
					}
				}
			}
		}
	}

	// top-N over ragged ends: thousands of candidates with the longest ids
	b, _ := makeBuckets(d(2026, 9, 14, 10, 17), d(2026, 11, 2, 3, 31), Total, time.UTC, 1)
	lo, hi := d(2026, 9, 14, 11, 0), d(2026, 11, 2, 3, 0)
	var cands []string
	for i := 0; i < MaxTopCandidates; i++ {
		cands = append(cands, long("app", i))
	}
	for fname, f := range filters {
		check("top "+fname, sc.topSQL("db", planFor(b), f, MaxLimit))
		check("top bounds "+fname, sc.topBoundsSQL("db", planFor(buckets{lo, hi}), lo, hi,
			[]span{{lo.Add(-time.Hour), lo}, {hi, hi.Add(time.Hour)}}, f))
		check("top edges "+fname, sc.topEdgeSQL("db", []span{{b[0], lo}, {hi, b[1]}}, f, cands))
	}
}

// TestRowsOfPlanExact: the rows a series read keeps — t inside coverSpans's
// ranges of the table and rowsOfPlan's condition against cutUnits, here
// evaluated in Go as ClickHouse evaluates it — are exactly the rows of the
// plan, in every zone and granularity, also where coverSpans had to merge
// ranges (long charts in zones with half-hour offsets).
func TestRowsOfPlanExact(t *testing.T) {
	// keep mirrors rowsOfPlan.
	keep := func(table string, r time.Time, c cuts) bool {
		has := func(set []uint32, k uint32) bool {
			for _, x := range set {
				if x == k {
					return true
				}
			}
			return false
		}
		month := uint32(r.Year()*100 + int(r.Month()))
		day, hour := uint32(r.Unix()/86400), uint32(r.Unix()/3600)
		switch table {
		case "usage_month":
			return !has(c.months, month)
		case "usage_day":
			return has(c.months, month) && !has(c.days, day)
		case "usage_hour":
			return has(c.days, day) && !has(c.hours, hour)
		case "usage_minute":
			return has(c.hours, hour)
		}
		t.Fatalf("no condition for %s", table)
		return false
	}
	type rng struct {
		g        Granularity
		from, to time.Time
	}
	ranges := []rng{
		{Minute, d(2026, 3, 8, 5, 7), d(2026, 3, 9, 3, 0)},
		{Hour, d(2026, 2, 20, 7, 31), d(2026, 4, 10, 2, 13)},
		{Day, d(2026, 8, 25, 0, 0), d(2026, 11, 23, 0, 0)},
		{Day, d(2025, 12, 1, 7, 31), d(2026, 3, 29, 2, 13)},
		{Week, d(2025, 10, 20, 7, 31), d(2026, 11, 4, 2, 13)},
		{Month, d(2024, 1, 20, 7, 31), d(2026, 11, 4, 2, 13)},
		{Total, d(2024, 1, 20, 7, 31), d(2026, 11, 4, 2, 13)},
		{Total, d(2026, 10, 20, 7, 0), d(2026, 11, 4, 2, 0)},
	}
	merged := 0
	for _, zone := range append([]string{"Etc/GMT-14"}, testZones...) {
		loc, _ := time.LoadLocation(zone)
		for _, r := range ranges {
			b, ok := makeBuckets(r.from, r.to, r.g, loc, MaxBuckets)
			if !ok {
				t.Fatalf("%s %s: too many buckets", zone, r.g)
			}
			p := planFor(b)
			c := cutUnits(p)
			for _, set := range [][]uint32{c.months, c.days, c.hours} {
				if len(set) > b.n()+2 {
					t.Errorf("%s %s: %d cut units for %d buckets", zone, r.g, len(set), b.n())
				}
			}
			for _, g := range grains {
				sp := p[g.table]
				cover := coverSpans(sp, maxReadSpans)
				if len(cover) > maxReadSpans {
					t.Fatalf("%s %s %s: %d ranges", zone, r.g, g.table, len(cover))
				}
				if len(cover) < len(sp) {
					merged++
				}
				inPlan := func(x time.Time) bool {
					i := sort.Search(len(sp), func(i int) bool { return sp[i].to.After(x) })
					return i < len(sp) && !x.Before(sp[i].from)
				}
				n := 0
				for _, cs := range cover {
					for x := cs.from; x.Before(cs.to); x = g.next(x) {
						if got, want := keep(g.table, x, c), inPlan(x); got != want {
							t.Fatalf("%s %s %v..%v: %s row %v kept %v, in the plan %v", zone, r.g, r.from, r.to, g.table, x, got, want)
						}
						if inPlan(x) {
							n++
						}
					}
				}
				// every row of the plan lies inside the ranges
				for _, s := range sp {
					for x := s.from; x.Before(s.to); x = g.next(x) {
						n--
					}
				}
				if n != 0 {
					t.Fatalf("%s %s: %s ranges miss %d rows of the plan", zone, r.g, g.table, -n)
				}
			}
		}
	}
	if merged == 0 {
		t.Error("no case merged ranges: the test does not reach coverSpans's merging")
	}
}

// TestCoverSpans: at most max ranges, covering every span, keeping the
// largest gaps (the least extra time read).
func TestCoverSpans(t *testing.T) {
	h := func(a, z int) span {
		return span{d(2026, 1, 1, 0, 0).Add(time.Duration(a) * time.Hour), d(2026, 1, 1, 0, 0).Add(time.Duration(z) * time.Hour)}
	}
	for _, c := range []struct {
		name string
		in   []span
		max  int
		want []span
	}{
		{"none", nil, 3, nil},
		{"fewer than max", []span{h(0, 1), h(5, 6)}, 3, []span{h(0, 1), h(5, 6)}},
		{"exactly max", []span{h(0, 1), h(5, 6), h(8, 9)}, 3, []span{h(0, 1), h(5, 6), h(8, 9)}},
		{"smallest gap filled", []span{h(0, 1), h(5, 6), h(7, 8), h(20, 21)}, 3, []span{h(0, 1), h(5, 8), h(20, 21)}},
		{"two smallest gaps filled", []span{h(0, 1), h(2, 3), h(10, 11), h(12, 13), h(30, 31)}, 3, []span{h(0, 3), h(10, 13), h(30, 31)}},
		{"one range", []span{h(0, 1), h(2, 3), h(10, 11)}, 1, []span{h(0, 11)}},
		{"equal gaps: the later ones filled", []span{h(0, 1), h(2, 3), h(4, 5), h(6, 7)}, 2, []span{h(0, 1), h(2, 7)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := coverSpans(c.in, c.max)
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("coverSpans(%v, %d) = %v, want %v", c.in, c.max, got, c.want)
			}
		})
	}
}
