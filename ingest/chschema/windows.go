package chschema

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sluice-dev/sluice/limiter"
)

// restoreTables are the tables whose markers say what the counters'
// snapshot contains (events_raw is optional and not part of it).
var restoreTables = []string{UsageMinute, UsageHour, UsageDay, UsageMonth, UsageSets}

// ResumeOffsets returns, per Kafka partition, the next offset not yet in
// every rollup table: records below it are in all of them. A partition that
// some table has never seen maps to 0 (replay from the start of the log).
// Partitions no table has seen are absent.
func ResumeOffsets(ctx context.Context, conn driver.Conn, db string) (map[int32]int64, error) {
	per := make([]map[int32]int64, 0, len(restoreTables))
	all := map[int32]bool{}
	for _, t := range restoreTables {
		m, err := Markers(ctx, conn, db, t)
		if err != nil {
			return nil, err
		}
		per = append(per, m)
		for kp := range m {
			all[kp] = true
		}
	}
	out := make(map[int32]int64, len(all))
	for kp := range all {
		first := true
		for _, m := range per {
			n := m[kp] // 0 when absent
			if first || n < out[kp] {
				out[kp], first = n, false
			}
		}
	}
	return out, nil
}

// openWindowsTimeout bounds each restore read on the server. Generous: the
// API does not report ready without these sums, and a large minute table
// may take a while.
const openWindowsTimeout = 10 * time.Minute

// lastSets reads the latest set per (tenant, service, app, metric) and the
// markers of usage_sets in one SELECT (one snapshot).
func lastSets(ctx context.Context, conn driver.Conn, db string) ([]LastSet, map[int32]int64, error) {
	rows, err := Query(ctx, conn, openWindowsTimeout, `SELECT tenant_id, service_id, app_id, metric, kp, max(ko), max(ts_ms), argMax(value, ts_ms)
FROM `+db+`.usage_sets GROUP BY tenant_id, service_id, app_id, metric, kp`)
	if err != nil {
		return nil, nil, fmt.Errorf("rollup: last sets: %w", err)
	}
	defer rows.Close()
	type key struct{ tenant, service, app, metric string }
	latest := map[key]LastSet{}
	offs := map[int32]int64{}
	for rows.Next() {
		var k key
		var kp int32
		var ko, ts, v int64
		if err := rows.Scan(&k.tenant, &k.service, &k.app, &k.metric, &kp, &ko, &ts, &v); err != nil {
			return nil, nil, fmt.Errorf("rollup: last sets: %w", err)
		}
		if k.tenant == "" {
			offs[kp] = ko
			continue
		}
		// One app's events share a partition, but keep the latest anyway.
		if cur, ok := latest[k]; !ok || ts > cur.TS.UnixMilli() {
			latest[k] = LastSet{Tenant: k.tenant, Service: k.service, App: k.app, Metric: k.metric, TS: time.UnixMilli(ts).UTC(), Value: v}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("rollup: last sets: %w", err)
	}
	out := make([]LastSet, 0, len(latest))
	for _, s := range latest {
		out = append(out, s)
	}
	return out, offs, nil
}

// WindowSum is the usage of one metric of one application in the calendar
// window of Unit that contains the restore time (UTC; weeks start Monday;
// Eternity has Start zero). The metric hierarchy is already applied. Sets
// ("#N") are not included (see doc.go).
type WindowSum struct {
	Unit                         limiter.Unit
	Start                        time.Time
	Tenant, Service, App, Metric string
	Sum                          int64
}

// OpenWindows is a snapshot of every open calendar window's usage, with the
// Kafka offsets each unit's sums are consistent with. Different units are
// read from different tables, which the rollup writes one after the other,
// so their offsets may differ by a batch; each unit's own offsets are exact.
type OpenWindows struct {
	Now  time.Time
	Sums []WindowSum
	// Offsets[unit][partition]: the sums of that unit contain exactly the
	// records of the partition below this offset (0 or absent: none).
	Offsets map[limiter.Unit]map[int32]int64
	// Sets are the latest "#N" set of every (tenant, service, app, metric)
	// that ever had one, read with SetOffsets (same meaning as Offsets).
	// Sums do not apply them: a restore that honours a set seeds each window
	// containing TS with Value plus the usage after TS, which the rollups
	// resolve only to the minute (usage in the set's own minute is before or
	// after it; the raw events, if kept, tell exactly).
	Sets       []LastSet
	SetOffsets map[int32]int64
}

// LastSet is the latest set of one metric of one application.
type LastSet struct {
	Tenant, Service, App, Metric string
	TS                           time.Time // usage time of the set (ms precision)
	Value                        int64
}

// From returns where a tail replay must start per partition: the smallest
// offset over the units.
func (w *OpenWindows) From() map[int32]int64 {
	out := map[int32]int64{}
	seen := map[int32]bool{}
	all := make([]map[int32]int64, 0, len(w.Offsets)+1)
	for _, m := range w.Offsets {
		all = append(all, m)
	}
	if w.SetOffsets != nil {
		all = append(all, w.SetOffsets)
	}
	for _, m := range all {
		for kp := range m {
			seen[kp] = true
		}
	}
	for kp := range seen {
		first := true
		for _, m := range all {
			if n := m[kp]; first || n < out[kp] {
				out[kp], first = n, false
			}
		}
	}
	return out
}

// Includes reports whether the sums of unit u already contain the record at
// (partition, offset). A tail replay applies a record to u's counters only
// when Includes is false, so nothing is counted twice or missed.
func (w *OpenWindows) Includes(u limiter.Unit, partition int32, offset int64) bool {
	return offset < w.Offsets[u][partition]
}

// window returns the calendar window [start, end) of u containing now (UTC),
// as the limiter counts it; eternity spans DateTime's whole range.
func window(u limiter.Unit, now time.Time) (time.Time, time.Time) {
	if u == limiter.Eternity {
		return time.Time{}, time.Unix(1<<32-1, 0).UTC()
	}
	s, e := limiter.WindowBounds(limiter.Period{Unit: u}, now)
	return time.Unix(s, 0).UTC(), time.Unix(e, 0).UTC()
}

// windowQuery reads several units from one table in ONE select, so the
// sums and the markers come from the same snapshot of the table's parts.
type windowQuery struct {
	table string
	units []limiter.Unit
}

var windowQueries = []windowQuery{
	{UsageMinute, []limiter.Unit{limiter.Minute, limiter.Hour}},
	{UsageHour, []limiter.Unit{limiter.Day, limiter.Week}},
	{UsageMonth, []limiter.Unit{limiter.Month, limiter.Year, limiter.Eternity}},
}

// RestoreTimeout is max_execution_time of each OpenWindowSums query.
const RestoreTimeout = 120 * time.Second

// OpenWindowSums reads the usage of every open calendar window at now, per
// (tenant, service, app, metric), for seeding the limiter on startup. Only
// non-zero sums are returned.
func OpenWindowSums(ctx context.Context, conn driver.Conn, db string, now time.Time) (*OpenWindows, error) {
	if err := CheckDatabase(db); err != nil {
		return nil, err
	}
	ctx = Settings(ctx, RestoreTimeout)
	out := &OpenWindows{Now: now, Offsets: map[limiter.Unit]map[int32]int64{}}
	for _, q := range windowQueries {
		var sel string
		starts := make([]time.Time, len(q.units))
		lo := time.Unix(1<<32-1, 0)
		var hi time.Time
		for i, u := range q.units {
			s, e := window(u, now)
			starts[i] = s
			if u == limiter.Eternity {
				starts[i] = time.Time{}
			}
			// Times are whole seconds computed here, not user input.
			// Saturated, never wrapped: a counter seeded with MaxTotal is
			// past every limit, which is what usage past it means.
			sel += ", " + SaturatingSumIf("value", fmt.Sprintf("t >= toDateTime(%d, 'UTC') AND t < toDateTime(%d, 'UTC')", max(s.Unix(), 0), e.Unix()))
			if s.Before(lo) {
				lo = s
			}
			if e.After(hi) {
				hi = e
			}
		}
		sql := fmt.Sprintf(`SELECT tenant_id, service_id, app_id, metric, kp, max(ko)%s
FROM %s.%s
WHERE tenant_id = '' OR (metric != '' AND t >= toDateTime(%d, 'UTC') AND t < toDateTime(%d, 'UTC'))
GROUP BY tenant_id, service_id, app_id, metric, kp`, sel, db, q.table, max(lo.Unix(), 0), hi.Unix())
		rows, err := Query(ctx, conn, openWindowsTimeout, sql)
		if err != nil {
			return nil, fmt.Errorf("rollup: open windows from %s: %w", q.table, err)
		}
		offs := map[int32]int64{}
		for rows.Next() {
			var tenant, service, app, metric string
			var kp int32
			var ko int64
			sums := make([]int64, len(q.units))
			dest := []any{&tenant, &service, &app, &metric, &kp, &ko}
			for i := range sums {
				dest = append(dest, &sums[i])
			}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("rollup: open windows from %s: %w", q.table, err)
			}
			if tenant == "" {
				offs[kp] = ko
				continue
			}
			for i, u := range q.units {
				if sums[i] != 0 {
					out.Sums = append(out.Sums, WindowSum{Unit: u, Start: starts[i], Tenant: tenant, Service: service, App: app, Metric: metric, Sum: sums[i]})
				}
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("rollup: open windows from %s: %w", q.table, err)
		}
		for _, u := range q.units {
			out.Offsets[u] = offs
		}
	}
	sets, offs, err := lastSets(ctx, conn, db)
	if err != nil {
		return nil, err
	}
	out.Sets, out.SetOffsets = sets, offs
	return out, nil
}
