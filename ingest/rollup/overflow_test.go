package rollup

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/chschema"
	"github.com/sluice-dev/sluice/ingest/event"
	"github.com/sluice-dev/sluice/limiter"
	"github.com/sluice-dev/sluice/query/billing"
)

const big = math.MaxInt64

// TestAggregatorNeverWraps folds batches whose sums pass the largest int64
// (one metric twice, children into a parent, minutes into an hour) and
// negative values: no row may be negative, a row past MaxInt64 holds
// MaxInt64, sums that fit stay exact, and the drops are counted.
func TestAggregatorNeverWraps(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	ev := func(app string, at time.Duration, usage ...event.Usage) event.Event {
		return event.Event{Kind: event.KindReport, TS: t0.Add(at).UnixMilli(), TenantID: "t1", ServiceID: "s1", AppID: app, Usage: usage}
	}
	u := func(m string, v int64) event.Usage { return event.Usage{Metric: m, Value: v} }
	minute, hour := t0.Unix(), t0.Unix()
	cases := []struct {
		name      string
		events    []event.Event
		minute    map[sumKey]int64 // expected minute rows (others must be absent)
		hour      map[sumKey]int64 // expected hour rows
		negative  uint64
		saturated bool
	}{
		{"MaxInt64 twice in one batch",
			[]event.Event{ev("a", 0, u("bytes", big)), ev("a", time.Second, u("bytes", big)), ev("b", 0, u("bytes", 5))},
			map[sumKey]int64{{"a", "bytes", minute}: big, {"b", "bytes", minute}: 5},
			map[sumKey]int64{{"a", "bytes", hour}: big, {"b", "bytes", hour}: 5}, 0, true},
		{"children pass MaxInt64 in their parent",
			[]event.Event{ev("a", 0, u("search", big-1), u("upload", 2))},
			map[sumKey]int64{{"a", "search", minute}: big - 1, {"a", "upload", minute}: 2, {"a", "hits", minute}: big},
			map[sumKey]int64{{"a", "search", hour}: big - 1, {"a", "upload", hour}: 2, {"a", "hits", hour}: big}, 0, true},
		{"minutes pass MaxInt64 in their hour",
			[]event.Event{ev("a", 0, u("bytes", big-3)), ev("a", 5*time.Minute, u("bytes", 4))},
			map[sumKey]int64{{"a", "bytes", minute}: big - 3, {"a", "bytes", minute + 300}: 4},
			map[sumKey]int64{{"a", "bytes", hour}: big}, 0, true},
		{"exactly MaxInt64 stays exact",
			[]event.Event{ev("a", 0, u("search", big-10)), ev("a", time.Minute, u("search", 10))},
			map[sumKey]int64{{"a", "search", minute}: big - 10, {"a", "search", minute + 60}: 10, {"a", "hits", minute}: big - 10, {"a", "hits", minute + 60}: 10},
			map[sumKey]int64{{"a", "search", hour}: big, {"a", "hits", hour}: big}, 0, false},
		{"negative values are dropped",
			[]event.Event{ev("a", 0, u("hits", -5), u("hits", 3)), ev("a", 0, event.Usage{Metric: "search", Value: -1, Set: true}), ev("a", 0, u("search", math.MinInt64))},
			map[sumKey]int64{{"a", "hits", minute}: 3},
			map[sumKey]int64{{"a", "hits", hour}: 3}, 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAggregator(testHierarchy, false)
			for i := range tc.events {
				a.add(&tc.events[i], 0, int64(i))
			}
			hourRows := map[aggKey]int64{}
			sat := regrain(hourRows, a.minute, hourOf, a.wide)
			check := func(what string, rows map[aggKey]int64, want map[sumKey]int64) {
				got := map[sumKey]int64{}
				for k, v := range rows {
					if v < 0 {
						t.Errorf("%s row %+v is negative: %d", what, k, v)
					}
					got[sumKey{k.app, k.metric, k.t}] += v
				}
				diff(t, what, want, got)
			}
			check("minute", a.minute, tc.minute)
			check("hour", hourRows, tc.hour)
			if a.negative != tc.negative {
				t.Errorf("negative = %d, want %d", a.negative, tc.negative)
			}
			if got := a.saturated+sat > 0; got != tc.saturated {
				t.Errorf("saturated = %d+%d, want some: %v", a.saturated, sat, tc.saturated)
			}
			for _, s := range a.sets {
				if s.value < 0 {
					t.Errorf("negative set kept: %+v", s)
				}
			}
		})
	}
}

// TestRollupTotalsNeverWrap writes usage past the largest int64 through the
// writer into a real ClickHouse, in one batch and across batches (separate
// parts, which ClickHouse sums modulo 2^64 when it merges them), for a metric
// without limits, and reads it back the way every reader does: the tables
// with chschema.SumValue, the restore's chschema.OpenWindowSums and the billing
// export. Before and after the parts merge, a total past MaxInt64 reads
// MaxInt64 and small totals stay exact; nothing reads negative.
func TestRollupTotalsNeverWrap(t *testing.T) {
	_, conn := startCH(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 10, 30, 30, 0, time.UTC)
	var off int64
	rec := func(app string, usage ...event.Usage) record {
		e := event.Event{Kind: event.KindReport, TS: now.Add(-10 * time.Second).UnixMilli(), Received: now.UnixMilli(),
			TenantID: "t1", ServiceID: "s1", AppID: app, PlanID: "basic", Usage: usage}
		off++
		return record{Partition: 0, Offset: off - 1, Value: event.AppendEvent(nil, &e)}
	}
	u := func(m string, v int64) event.Usage { return event.Usage{Metric: m, Value: v} }
	w := newWriter(conn, testDB, testHierarchy, false, nil, nil)
	if err := w.load(ctx, []int32{0}); err != nil {
		t.Fatal(err)
	}
	batches := [][]record{
		// One batch: the aggregator's own sum passes MaxInt64.
		{rec("one-batch", u("bytes", big)), rec("one-batch", u("bytes", big)), rec("small", u("bytes", 7))},
		// Across batches: each part holds MaxInt64; ClickHouse's sum wraps.
		{rec("two-parts", u("bytes", big)), rec("small", u("search", 2))},
		{rec("two-parts", u("bytes", big))},
		// Small rows are inserted unchecked: past MaxInt64 they make the
		// key's merged row negative, which readers saturate.
		{rec("two-parts", u("bytes", 5)), rec("one-batch", u("bytes", 1))},
		// Children into a parent across three parts: past 2^64 in total.
		{rec("three-parts", u("search", big))},
		{rec("three-parts", u("upload", big))},
		{rec("three-parts", u("search", big)), rec("small", u("bytes", 3))},
	}
	for _, b := range batches {
		if err := w.write(ctx, b, now); err != nil {
			t.Fatal(err)
		}
	}
	want := map[[2]string]int64{
		{"one-batch", "bytes"}: big, {"two-parts", "bytes"}: big,
		{"three-parts", "search"}: big, {"three-parts", "upload"}: big, {"three-parts", "hits"}: big,
		{"small", "bytes"}: 10, {"small", "search"}: 2, {"small", "hits"}: 2,
	}
	for _, merged := range []bool{false, true} {
		if merged {
			for _, table := range chschema.RollupTables {
				if err := conn.Exec(ctx, "OPTIMIZE TABLE "+testDB+"."+table+" FINAL"); err != nil {
					t.Fatal(err)
				}
			}
		}
		name := map[bool]string{false: "unmerged", true: "merged"}[merged]
		t.Run(name, func(t *testing.T) {
			for _, table := range chschema.RollupTables {
				got := readTotals(t, conn, table)
				checkTotals(t, table, got, want)
			}
			win, err := chschema.OpenWindowSums(ctx, conn, testDB, now)
			if err != nil {
				t.Fatal(err)
			}
			for _, unit := range []limiter.Unit{limiter.Minute, limiter.Hour, limiter.Day, limiter.Month, limiter.Eternity} {
				got := map[[2]string]int64{}
				for _, s := range win.Sums {
					if s.Unit == unit {
						got[[2]string{s.App, s.Metric}] = s.Sum
					}
				}
				checkTotals(t, "chschema.OpenWindowSums "+limiter.Period{Unit: unit}.String(), got, want)
			}
			var buf bytes.Buffer
			month := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
			if _, err := billing.Export(ctx, conn, testDB, billing.Request{TenantID: "t1", Month: month, Format: billing.JSON}, &buf); err != nil {
				t.Fatal(err)
			}
			var rows []billing.Row
			if err := json.Unmarshal(buf.Bytes(), &rows); err != nil {
				t.Fatalf("export %s: %v", buf.Bytes(), err)
			}
			got := map[[2]string]int64{}
			for _, r := range rows {
				got[[2]string{r.AppID, r.Metric}] = r.Value
			}
			checkTotals(t, "billing export", got, want)
		})
	}
}

// readTotals reads t1's total per (app, metric) from a rollup table with
// the readers' saturating sum.
func readTotals(t *testing.T, conn driver.Conn, table string) map[[2]string]int64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT app_id, metric, "+chschema.SumValue+" FROM "+testDB+"."+table+
		" WHERE tenant_id = 't1' AND metric != '' GROUP BY app_id, metric")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[[2]string]int64{}
	for rows.Next() {
		var app, metric string
		var v int64
		if err := rows.Scan(&app, &metric, &v); err != nil {
			t.Fatal(err)
		}
		got[[2]string{app, metric}] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

func checkTotals(t *testing.T, what string, got, want map[[2]string]int64) {
	t.Helper()
	for k, v := range got {
		if v < 0 {
			t.Errorf("%s: %v reads %d", what, k, v)
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %v = %d, want %d", what, k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%s: %d totals, want %d: %v", what, len(got), len(want), got)
	}
}
