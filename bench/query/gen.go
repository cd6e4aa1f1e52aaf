package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/sluice-dev/sluice/ingest/chschema"
)

// statementTimeout is the server-side max_execution_time of one generator or
// check statement (one day of minute rows, or one check).
const statementTimeout = 20 * time.Minute

// usageCols are the columns of every usage table, in insert order.
const usageCols = "(written, tenant_id, service_id, app_id, plan_id, metric, reason, code, region, t, kp, ko, value)"

// strArray renders a Go string list as a ClickHouse array literal. The
// strings are this program's constants, never outside input.
func strArray(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = "'" + s + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// minuteSQL is the INSERT ... SELECT of day `day` (0-based) into usage_minute:
// for each (minute, app) three usage rows (hits = own + search + upload,
// the hierarchy applied as the rollup does) and, for about one in
// denialOneIn, one denial row. The arithmetic is values() in dataset.go.
func (d Dataset) minuteSQL(db string, day int) string {
	apps := d.Apps
	perDay := 1440 * apps
	start := d.Month.Unix()
	written := d.Month.AddDate(0, 0, day).Format("2006-01-02")
	return fmt.Sprintf(`INSERT INTO %[1]s.usage_minute %[2]s
SELECT toDate('%[3]s'), '%[4]s', '%[5]s', concat('app-', toString(a)),
       %[6]s[intHash64(a * 2 + 2) %% %[7]d + 1],
       %[8]s[k + 1],
       if(k = 3, %[9]s[intHash64(g * 8 + 6) %% %[10]d + 1], ''),
       toInt16(0),
       %[11]s[a %% %[12]d + 1],
       toDateTime(%[13]d + m * 60),
       toInt32(0), toInt64(0),
       toInt64(multiIf(k = 0, direct + search + upload, k = 1, search, k = 2, upload, 1 + intHash64(g * 8 + 5) %% 3))
FROM (
    SELECT number + %[14]d AS g, g %% %[15]d AS a, intDiv(g, %[15]d) AS m,
           intHash64(a * 2 + 1) %% 1000 AS h, 1 + intDiv(h * h * h, 20000000) AS r,
           1 + intHash64(g * 8 + 1) %% r AS search,
           1 + intHash64(g * 8 + 2) %% (intDiv(r, 4) + 1) AS upload,
           1 + intHash64(g * 8 + 3) %% r AS direct
    FROM system.numbers LIMIT %[16]d
)
ARRAY JOIN [0, 1, 2, 3] AS k
WHERE k < 3 OR intHash64(g * 8 + 4) %% %[17]d = 0`,
		db, usageCols, written, Tenant, Service,
		strArray(Plans), len(Plans),
		strArray(append(append([]string{}, Metrics...), "")),
		strArray(Reasons), len(Reasons),
		strArray(Regions), len(Regions),
		start,
		day*perDay, apps, perDay, denialOneIn)
}

// grain is a coarser table and how a finer row's unix time truncates to its
// bucket (arithmetic on the instant, so the server's time zone does not
// matter; the data set lies within one month, so its month bucket is the
// month's first instant).
type grain struct{ table, trunc string }

func (d Dataset) grains() []grain {
	return []grain{
		{chschema.UsageHour, "intDiv(toUInt32(t), 3600) * 3600"},
		{chschema.UsageDay, "intDiv(toUInt32(t), 86400) * 86400"},
		{chschema.UsageMonth, fmt.Sprint(d.Month.Unix())},
	}
}

// regrainSQL folds one written day of usage_minute into a coarser table, as
// the rollup's regrain does: same key, bucket truncated, values summed.
func regrainSQL(db, table, trunc, written string) string {
	return fmt.Sprintf(`INSERT INTO %[1]s.%[2]s %[3]s
SELECT written, tenant_id, service_id, app_id, plan_id, metric, reason, code, region, toDateTime(%[4]s) AS bucket, kp, ko, sum(value)
FROM %[1]s.usage_minute
WHERE written = toDate('%[5]s') AND tenant_id != ''
GROUP BY written, tenant_id, service_id, app_id, plan_id, metric, reason, code, region, bucket, kp, ko`,
		db, table, usageCols, trunc, written)
}

// markerSQL writes markerPartitions offset markers per day into table, as
// the rollup's last batch of each day would have left them.
func (d Dataset) markerSQL(db, table string) string {
	return fmt.Sprintf(`INSERT INTO %[1]s.%[2]s %[3]s
SELECT toDate('%[4]s') + intDiv(number, %[5]d), '', '', '', '', '', '', toInt16(0), '',
       toDateTime(%[6]d + (intDiv(number, %[5]d) + 1) * 86400 - 1),
       toInt32(number %% %[5]d), toInt64((intDiv(number, %[5]d) + 1) * 1000000 + number %% %[5]d), toInt64(1)
FROM system.numbers LIMIT %[7]d`,
		db, table, usageCols, d.Month.Format("2006-01-02"), markerPartitions, d.Month.Unix(), d.Days*markerPartitions)
}

// generate drops and rebuilds db with the data set.
func (d Dataset) generate(ctx context.Context, conn driver.Conn, db string) error {
	ctx = chschema.Settings(ctx, statementTimeout)
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		return fmt.Errorf("drop %s: %w", db, err)
	}
	if err := chschema.Migrate(ctx, conn, db); err != nil {
		return fmt.Errorf("migrate %s: %w", db, err)
	}
	for day := 0; day < d.Days; day++ {
		t0 := time.Now()
		written := d.Month.AddDate(0, 0, day).Format("2006-01-02")
		if err := conn.Exec(ctx, d.minuteSQL(db, day)); err != nil {
			return fmt.Errorf("usage_minute day %s: %w", written, err)
		}
		t1 := time.Now()
		for _, g := range d.grains() {
			if err := conn.Exec(ctx, regrainSQL(db, g.table, g.trunc, written)); err != nil {
				return fmt.Errorf("%s day %s: %w", g.table, written, err)
			}
		}
		slog.Info("day generated", "day", written, "minute", t1.Sub(t0).Round(time.Millisecond), "regrain", time.Since(t1).Round(time.Millisecond))
	}
	for _, t := range chschema.RollupTables {
		if err := conn.Exec(ctx, d.markerSQL(db, t)); err != nil {
			return fmt.Errorf("markers %s: %w", t, err)
		}
	}
	return nil
}
