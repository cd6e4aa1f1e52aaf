package query

import (
	"context"
	"encoding/json"
	"math"
	"net/url"
	"testing"
	"time"

	"github.com/sluice-dev/sluice/ingest/chschema"
)

// TestTotalsNeverWrap asks the query API for series and top applications
// over usage past the largest int64, stored as the rollup leaves it: one
// key at MaxInt64 followed by small rows in later parts (ClickHouse's sums
// wrap, and so do its merges), and totals that pass MaxInt64 only when Go
// folds rows into buckets. Every value past MaxInt64 must read
// 9223372036854775807, none negative; small totals stay exact.
func TestTotalsNeverWrap(t *testing.T) {
	ctx := context.Background()
	const db = "sluice_qoverflow"
	conn, srv := newTestServer(t, db)
	base := serve(t, srv)

	const big = math.MaxInt64
	day1 := time.Date(2026, 9, 1, 10, 5, 0, 0, time.UTC)
	day2 := time.Date(2026, 9, 2, 11, 0, 0, 0, time.UTC)
	type minuteRow struct {
		app string
		t   time.Time
		v   int64
	}
	// Each part is written to the four grains like one rollup batch.
	parts := [][]minuteRow{
		{{"app0", day1, big}, {"app1", day1, 3}},
		{{"app0", day1.Add(2 * time.Minute), 5}},
		{{"app0", day1.Add(3 * time.Minute), 6}, {"app0", day2, big}, {"app1", day2, 4}},
	}
	grains := []struct {
		table string
		floor func(time.Time) time.Time
	}{
		{chschema.UsageMinute, func(x time.Time) time.Time { return x }},
		{chschema.UsageHour, func(x time.Time) time.Time { return x.Truncate(time.Hour) }},
		{chschema.UsageDay, func(x time.Time) time.Time { return x.Truncate(24 * time.Hour) }},
		{chschema.UsageMonth, func(x time.Time) time.Time { return time.Date(x.Year(), x.Month(), 1, 0, 0, 0, 0, time.UTC) }},
	}
	type key struct {
		table, app string
		t          time.Time
	}
	stored := map[key]int64{}
	for _, p := range parts {
		for _, g := range grains {
			sums := map[key]int64{}
			for _, r := range p {
				k := key{g.table, r.app, g.floor(r.t)}
				sums[k] = chschema.AddTotal(sums[k], r.v) // as the rollup's batch sums
			}
			for k, v := range sums {
				// As the rollup clamps its large rows: a key's stored
				// total stops at MaxInt64; small rows may pass it.
				if v >= 1<<32 {
					sums[k] = min(v, big-stored[k])
				}
				stored[k] = chschema.AddTotal(stored[k], sums[k])
			}
			b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+g.table+" (written, tenant_id, service_id, app_id, plan_id, metric, reason, code, region, t, kp, ko, value)")
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range sums {
				if err := b.Append(k.t, "t1", "s1", k.app, "basic", "hits", "", int16(200), "eu", k.t, int32(0), int64(0), v); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Send(); err != nil {
				t.Fatal(err)
			}
		}
	}

	type seriesAns struct {
		Series []struct {
			Group  map[string]any `json:"group"`
			Points []struct {
				T     string `json:"t"`
				Value int64  `json:"value"`
			} `json:"points"`
			Total int64 `json:"total"`
		} `json:"series"`
		Total int64 `json:"total"`
	}
	usage := func(from, to, gran, tz string) url.Values {
		return url.Values{"service_id": {"s1"}, "metric": {"hits"}, "from": {from}, "to": {to}, "granularity": {gran}, "tz": {tz}, "group_by": {"app_id"}}
	}
	cases := []struct {
		name   string
		params url.Values
		points map[string][]int64 // app -> bucket values
		totals map[string]int64
		total  int64
	}{
		{"hourly, UTC: one hour past MaxInt64", usage("2026-09-01T10:00:00Z", "2026-09-01T12:00:00Z", "hour", "UTC"),
			map[string][]int64{"app0": {big, 0}, "app1": {3, 0}}, map[string]int64{"app0": big, "app1": 3}, big},
		{"daily, UTC: two days of MaxInt64 each", usage("2026-09-01T00:00:00Z", "2026-09-03T00:00:00Z", "day", "UTC"),
			map[string][]int64{"app0": {big, big}, "app1": {3, 4}}, map[string]int64{"app0": big, "app1": 7}, big},
		{"daily, Kolkata: minutes at the bucket edges", usage("2026-09-01T00:00:00+05:30", "2026-09-03T00:00:00+05:30", "day", "Asia/Kolkata"),
			map[string][]int64{"app0": {big, big}, "app1": {3, 4}}, map[string]int64{"app0": big, "app1": 7}, big},
		{"the month in one total", usage("2026-09-01T00:00:00Z", "2026-10-01T00:00:00Z", "total", "UTC"),
			map[string][]int64{"app0": {big}, "app1": {7}}, map[string]int64{"app0": big, "app1": 7}, big},
		{"ragged minutes", usage("2026-09-01T10:06:00Z", "2026-09-01T10:09:00Z", "minute", "UTC"),
			map[string][]int64{"app0": {0, 5, 6}}, map[string]int64{"app0": 11}, 11},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := get(t, base, t1Query, PathUsage+"?"+tc.params.Encode())
			if status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			var a seriesAns
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatal(err)
			}
			if a.Total != tc.total {
				t.Errorf("total %d, want %d", a.Total, tc.total)
			}
			if len(a.Series) != len(tc.points) {
				t.Fatalf("%d series, want %d: %s", len(a.Series), len(tc.points), body)
			}
			for _, s := range a.Series {
				app, _ := s.Group["app_id"].(string)
				if s.Total != tc.totals[app] {
					t.Errorf("%s: total %d, want %d", app, s.Total, tc.totals[app])
				}
				want := tc.points[app]
				if len(s.Points) != len(want) {
					t.Fatalf("%s: %d points, want %d", app, len(s.Points), len(want))
				}
				for i, p := range s.Points {
					if p.Value != want[i] {
						t.Errorf("%s %s: %d, want %d", app, p.T, p.Value, want[i])
					}
				}
			}
		})
	}

	for _, tc := range []struct {
		name, from, to string
	}{
		{"whole hours", "2026-09-01T00:00:00Z", "2026-09-03T00:00:00Z"},
		{"ragged ends", "2026-09-01T10:04:30Z", "2026-09-02T11:30:10Z"},
	} {
		t.Run("top, "+tc.name, func(t *testing.T) {
			q := url.Values{"service_id": {"s1"}, "metric": {"hits"}, "from": {tc.from}, "to": {tc.to}, "limit": {"5"}}
			status, body, _ := get(t, base, t1Query, PathTop+"?"+q.Encode())
			if status != 200 {
				t.Fatalf("%d %s", status, body)
			}
			var a struct {
				Apps []topApp `json:"apps"`
			}
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatal(err)
			}
			want := []topApp{{"app0", big}, {"app1", 7}}
			if len(a.Apps) != len(want) || a.Apps[0] != want[0] || a.Apps[1] != want[1] {
				t.Errorf("top %s, want %v", body, want)
			}
		})
	}
}
