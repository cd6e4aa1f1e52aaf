package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/chschema"
)

// tableSums are one table's row counts and sums by row kind.
type tableSums struct {
	usageRows, usageSum   uint64
	denialRows, denialSum uint64
	markerRows            uint64
	minT, maxT            time.Time
}

func readSums(ctx context.Context, conn driver.Conn, db, table string) (tableSums, error) {
	var s tableSums
	// Sums, not counts, for the usage and denial figures that must agree
	// between grains: SummingMergeTree may or may not have merged rows.
	q := fmt.Sprintf(`SELECT
    countIf(tenant_id != '' AND metric != ''), toUInt64(sumIf(value, tenant_id != '' AND metric != '')),
    countIf(tenant_id != '' AND metric = ''), toUInt64(sumIf(value, tenant_id != '' AND metric = '')),
    countIf(tenant_id = ''),
    minIf(t, tenant_id != ''), maxIf(t, tenant_id != '')
FROM %s.%s`, db, table)
	err := conn.QueryRow(ctx, q).Scan(&s.usageRows, &s.usageSum, &s.denialRows, &s.denialSum, &s.markerRows, &s.minT, &s.maxT)
	if err != nil {
		return s, fmt.Errorf("sums of %s: %w", table, err)
	}
	return s, nil
}

// verify checks the generated data set three ways and returns the first
// disagreement:
//  1. every grain holds the same usage and denial sums, and usage_minute has
//     exactly one usage row per app, metric and minute, all inside the range;
//  2. per written day, every coarser grain equals usage_minute regrained, key
//     by key (app, plan, metric, reason, region, bucket);
//  3. usage_month's per-app, per-metric totals and the denials per reason equal
//     an independent computation in Go of the generator's formulas.
func (d Dataset) verify(ctx context.Context, conn driver.Conn, db string) error {
	ctx = chschema.Settings(ctx, statementTimeout)
	expected := make(chan Totals, 1)
	go func() { expected <- d.Expected() }()

	var errs []error
	sums := map[string]tableSums{}
	for _, t := range chschema.RollupTables {
		s, err := readSums(ctx, conn, db, t)
		if err != nil {
			return err
		}
		sums[t] = s
		slog.Info("table sums", "table", t, "usage_rows", s.usageRows, "usage_sum", s.usageSum,
			"denial_rows", s.denialRows, "denial_sum", s.denialSum, "markers", s.markerRows)
		if s.markerRows != uint64(d.Days*markerPartitions) {
			errs = append(errs, fmt.Errorf("%s: %d marker rows, want %d", t, s.markerRows, d.Days*markerPartitions))
		}
		if s.minT.Before(d.Month) || !s.maxT.Before(d.End()) {
			errs = append(errs, fmt.Errorf("%s: t from %v to %v, outside [%v, %v)", t, s.minT, s.maxT, d.Month, d.End()))
		}
	}
	m := sums[chschema.UsageMinute]
	if m.usageRows != uint64(d.UsageRows()) {
		errs = append(errs, fmt.Errorf("usage_minute: %d usage rows, want %d", m.usageRows, d.UsageRows()))
	}
	for _, t := range chschema.RollupTables[1:] {
		s := sums[t]
		if s.usageSum != m.usageSum || s.denialSum != m.denialSum {
			errs = append(errs, fmt.Errorf("%s: usage %d denials %d, usage_minute has %d and %d", t, s.usageSum, s.denialSum, m.usageSum, m.denialSum))
		}
	}

	// usage_hour and usage_day rows of one written day hold only that day's
	// minutes, so they are compared with usage_minute day by day. usage_month
	// rows of different written days merge with each other (its partitions
	// are years), so it is compared over the whole range, with usage_day
	// (already checked against usage_minute) to keep the scan small.
	for _, g := range d.grains() {
		var bad uint64
		if g.table == chschema.UsageMonth {
			q := regrainDiffSQL(db, chschema.UsageDay, g, "1")
			if err := conn.QueryRow(ctx, q).Scan(&bad); err != nil {
				return fmt.Errorf("regrain check %s: %w", g.table, err)
			}
		} else {
			for day := 0; day < d.Days; day++ {
				where := "written = toDate('" + d.Month.AddDate(0, 0, day).Format("2006-01-02") + "')"
				var n uint64
				if err := conn.QueryRow(ctx, regrainDiffSQL(db, chschema.UsageMinute, g, where)).Scan(&n); err != nil {
					return fmt.Errorf("regrain check %s: %w", g.table, err)
				}
				bad += n
			}
		}
		slog.Info("regrain check", "table", g.table, "keys_differing", bad)
		if bad != 0 {
			errs = append(errs, fmt.Errorf("%s: %d keys differ from the finer grain regrained", g.table, bad))
		}
	}

	want := <-expected
	if err := d.checkMonth(ctx, conn, db, want); err != nil {
		errs = append(errs, err)
	}
	if m.usageSum != uint64(want.UsageSum) || m.denialSum != uint64(want.DenialSum) {
		errs = append(errs, fmt.Errorf("usage_minute: usage %d denials %d, Go model %d and %d", m.usageSum, m.denialSum, want.UsageSum, want.DenialSum))
	}
	slog.Info("Go model", "usage_sum", want.UsageSum, "denial_sum", want.DenialSum, "denial_rows", want.DenialRows)
	return errors.Join(errs...)
}

// regrainDiffSQL counts the keys where g.table differs from the finer table
// truncated to g's grain, over the rows matching where (on both sides): the
// finer side adds, the coarse side subtracts, and any key whose sum is not 0
// disagrees.
func regrainDiffSQL(db, finer string, g grain, where string) string {
	return fmt.Sprintf(`SELECT count() FROM (
    SELECT app_id, plan_id, metric, reason, code, region, bucket, sum(v) AS s FROM (
        SELECT app_id, plan_id, metric, reason, code, region, toUInt32(%[3]s) AS bucket, value AS v
        FROM %[1]s.%[4]s WHERE %[5]s AND tenant_id = '%[6]s' AND service_id = '%[7]s'
        UNION ALL
        SELECT app_id, plan_id, metric, reason, code, region, toUInt32(t) AS bucket, -value AS v
        FROM %[1]s.%[2]s WHERE %[5]s AND tenant_id = '%[6]s' AND service_id = '%[7]s'
    )
    GROUP BY app_id, plan_id, metric, reason, code, region, bucket
    HAVING s != 0
)`, db, g.table, g.trunc, finer, where, Tenant, Service)
}

// checkMonth compares usage_month with the Go model.
func (d Dataset) checkMonth(ctx context.Context, conn driver.Conn, db string, want Totals) error {
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT app_id, metric, reason, toInt64(sum(value))
FROM %s.usage_month WHERE tenant_id = '%s' AND service_id = '%s'
GROUP BY app_id, metric, reason`, db, Tenant, Service))
	if err != nil {
		return fmt.Errorf("month totals: %w", err)
	}
	defer rows.Close()
	metricIndex := map[string]int{}
	for i, m := range Metrics {
		metricIndex[m] = i
	}
	appIndex := make(map[string]int, d.Apps)
	for a := 0; a < d.Apps; a++ {
		appIndex[AppID(a)] = a
	}
	got := make([][3]int64, d.Apps)
	denials := map[string]int64{}
	var errs []error
	for rows.Next() {
		var app, metric, reason string
		var v int64
		if err := rows.Scan(&app, &metric, &reason, &v); err != nil {
			return fmt.Errorf("month totals: %w", err)
		}
		if metric == "" {
			denials[reason] += v
			continue
		}
		a, okA := appIndex[app]
		mi, okM := metricIndex[metric]
		if !okA || !okM {
			errs = append(errs, fmt.Errorf("usage_month: unexpected row app %q metric %q", app, metric))
			continue
		}
		got[a][mi] += v
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("month totals: %w", err)
	}
	bad := 0
	for a := range got {
		if got[a] != want.Usage[a] {
			if bad < 5 {
				errs = append(errs, fmt.Errorf("usage_month %s: %v, Go model %v", AppID(a), got[a], want.Usage[a]))
			}
			bad++
		}
	}
	for _, r := range Reasons {
		if denials[r] != want.Denials[r] {
			errs = append(errs, fmt.Errorf("usage_month denials %s: %d, Go model %d", r, denials[r], want.Denials[r]))
		}
	}
	slog.Info("month vs Go model", "apps_differing", bad, "denials", denials)
	return errors.Join(errs...)
}
