package query

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

// topRow is one usage row of the candidate test's model, at minute grain.
type topRow struct {
	tenant, metric, app string
	t                   time.Time // a whole minute
	value               int64
}

// topModel generates usage for the candidate top-N test: sparse background
// usage, heavy bursts in the first and last five minutes of "hot" hours (so
// ragged range ends change the ranking), a twin application (ties), and
// decoys that a correct query never counts (another tenant, another metric,
// both with huge values at the same minutes).
func topModel(seed uint64, start time.Time, days int) (rows []topRow, hot []time.Time) {
	r := rand.New(rand.NewPCG(seed, 3))
	span := time.Duration(days) * 24 * time.Hour
	minute := func() time.Time {
		return start.Add(time.Duration(r.Int64N(int64(span/time.Minute))) * time.Minute)
	}
	const apps = 24
	app := func(i int) string {
		if i == 5 { // stored ids may hold quotes and backslashes: the IN set must bind them
			return `a'05\`
		}
		return fmt.Sprintf("a%02d", i)
	}
	var own []topRow
	for i := 0; i < apps-1; i++ {
		rate := int64(1 + i%7)
		for k := 0; k < 150; k++ {
			own = append(own, topRow{"t1", "hits", app(i), minute(), 1 + r.Int64N(rate*10)})
		}
	}
	for h := 0; h < 40; h++ {
		hour := minute().Truncate(time.Hour)
		hot = append(hot, hour)
		for k := 0; k < 8; k++ {
			m := r.IntN(5) // first five minutes, or the last five
			if r.IntN(2) == 0 {
				m = 55 + r.IntN(5)
			}
			own = append(own, topRow{"t1", "hits", app(r.IntN(apps - 1)), hour.Add(time.Duration(m) * time.Minute), 300 + r.Int64N(3000)})
		}
	}
	for _, x := range own { // a23 is a21's twin: equal totals over every range
		rows = append(rows, x)
		if x.app == app(21) {
			x.app = app(23)
			rows = append(rows, x)
		}
	}
	for _, x := range own[:len(own)/3] { // decoys
		rows = append(rows, topRow{"t2", "hits", x.app, x.t, x.value * 1000})
		rows = append(rows, topRow{"t1", "search", x.app, x.t, x.value * 1000})
	}
	return rows, hot
}

// insertTopRows writes rows into all four grains, each grain summed from the
// minutes as the rollup does; every minute row is split in two (regions) so
// that queries must sum.
func insertTopRows(t *testing.T, srv *Server, rows []topRow) {
	t.Helper()
	ctx := context.Background()
	type key struct {
		tenant, metric, app string
		t                   time.Time
	}
	for _, g := range grains {
		sums := map[key]int64{}
		for _, x := range rows {
			sums[key{x.tenant, x.metric, x.app, g.floor(x.t)}] += x.value
		}
		b, err := srv.conn.PrepareBatch(ctx, "INSERT INTO "+srv.db+"."+g.table+" (written, tenant_id, service_id, app_id, plan_id, metric, reason, code, region, t, kp, ko, value)")
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range sums {
			half := v / 2
			for _, part := range []struct {
				region string
				v      int64
			}{{"eu", half}, {"us", v - half}} {
				if err := b.Append(k.t, k.tenant, "s1", k.app, "basic", k.metric, "", int16(200), part.region, k.t, int32(0), int64(0), part.v); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := b.Send(); err != nil {
			t.Fatalf("insert %s: %v", g.table, err)
		}
	}
}

// naiveTop is the reference: t1's hits summed minute by minute over [from,
// to), descending, ties by app_id, cut to limit.
func naiveTop(rows []topRow, from, to time.Time, limit int) []topApp {
	sums := map[string]int64{}
	for _, x := range rows {
		if x.tenant == "t1" && x.metric == "hits" && !x.t.Before(from) && x.t.Before(to) {
			sums[x.app] += x.value
		}
	}
	out := []topApp{}
	for a, v := range sums {
		out = append(out, topApp{a, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Value != out[j].Value {
			return out[i].Value > out[j].Value
		}
		return out[i].AppID < out[j].AppID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

// TestTopCandidates checks the candidate top-N (topApps) against a naive
// minute-by-minute computation for many ragged ranges and limits: long
// ranges over whole days and a whole month, ranges inside one hour, ranges
// across one hour boundary, hour-aligned ranges, ties and limits above the
// number of applications; and again with the candidate bound lowered so that
// the fallback answers.
func TestTopCandidates(t *testing.T) {
	ctx := context.Background()
	const db = "sluice_qtop"
	_, srv := newTestServer(t, db)
	start := time.Date(2026, 8, 29, 0, 0, 0, 0, time.UTC) // 35 days: all of September
	rows, hot := topModel(5, start, 35)
	insertTopRows(t, srv, rows)

	type rng struct {
		name     string
		from, to time.Time
	}
	r := rand.New(rand.NewPCG(17, 1))
	off := func() time.Duration { return time.Duration(r.IntN(60)) * time.Minute }
	sec := func() time.Duration { return time.Duration(r.IntN(60)) * time.Second }
	var ranges []rng
	for i := 0; i < 70; i++ {
		h1, h2 := hot[r.IntN(len(hot))], hot[r.IntN(len(hot))]
		if h2.Before(h1) {
			h1, h2 = h2, h1
		}
		ranges = append(ranges, rng{"long", h1.Add(off()), h2.Add(time.Hour + off())})
		a, z := off(), off()
		if z < a {
			a, z = z, a
		}
		ranges = append(ranges, rng{"one hour", h1.Add(a), h1.Add(z + time.Minute + sec())})
		ranges = append(ranges, rng{"across an hour", h1.Add(off()), h1.Add(time.Hour + off())})
		ranges = append(ranges, rng{"one ragged end", h1, h2.Add(time.Hour + off() + sec())})
	}
	ranges = append(ranges,
		rng{"september", time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)},
		rng{"september ragged", time.Date(2026, 8, 31, 23, 3, 0, 0, time.UTC), time.Date(2026, 10, 1, 0, 57, 0, 0, time.UTC)},
		rng{"everything ragged", start.Add(7 * time.Minute), start.Add(35*24*time.Hour - 7*time.Minute)},
		rng{"whole hours", hot[0], hot[0].Add(49 * time.Hour)},
	)
	limits := []int{1, 2, 3, 5, 10, 30}

	for _, maxCand := range []int{MaxTopCandidates, 3} {
		srv.maxCandidates = maxCand
		paths := map[topPath]int{}
		reordered, ties, fewer := 0, 0, 0
		for i, c := range ranges {
			limit := limits[i%len(limits)]
			b, _ := makeBuckets(c.from, c.to, Total, time.UTC, 1)
			qctx, cancel := context.WithTimeout(ctx, srv.timeout)
			got, path, e := srv.topApps(qctx, scope{tenant: "t1"}, filter{service: "s1", metrics: []string{"hits"}}, b, limit)
			cancel()
			if e != nil {
				t.Fatalf("%s %v–%v limit %d: %v", c.name, c.from, c.to, limit, e)
			}
			paths[path]++
			want := naiveTop(rows, b[0], b[1], limit)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("max %d, %s %v–%v limit %d (path %d):\n got %v\nwant %v", maxCand, c.name, c.from, c.to, limit, path, got, want)
			}
			// Is this case a real test of the edges? The whole-hour part
			// alone ranks differently when the edges move an app in or out.
			lo, hi := b[0].Truncate(time.Hour), b[1].Truncate(time.Hour)
			if lo.Before(b[0]) {
				lo = lo.Add(time.Hour)
			}
			if lo.Before(hi) && fmt.Sprint(names(naiveTop(rows, lo, hi, limit))) != fmt.Sprint(names(want)) {
				reordered++
			}
			for j := 1; j < len(want); j++ {
				if want[j].Value == want[j-1].Value {
					ties++
					break
				}
			}
			if len(want) < limit {
				fewer++
			}
		}
		t.Logf("max candidates %d: %d ranges, paths %v, edges reorder the top %d times, ties %d, fewer apps than limit %d",
			maxCand, len(ranges), paths, reordered, ties, fewer)
		// The data must exercise what the test claims to check.
		if reordered < 20 || ties < 5 || fewer < 5 || paths[topWhole] < 2 || paths[topFallback] < 20 {
			t.Errorf("weak data: reordered %d, ties %d, fewer %d, paths %v", reordered, ties, fewer, paths)
		}
		if maxCand == MaxTopCandidates && paths[topCandidates] < 100 {
			t.Errorf("candidate path taken %d times, want most long ranges", paths[topCandidates])
		}
		if maxCand == 3 && paths[topFallback] < 100 {
			t.Errorf("fallback taken %d times with at most 3 candidates", paths[topFallback])
		}
	}
}

// names are the app ids of a top answer, in order.
func names(apps []topApp) []string {
	out := make([]string, len(apps))
	for i, a := range apps {
		out[i] = a.AppID
	}
	return out
}
