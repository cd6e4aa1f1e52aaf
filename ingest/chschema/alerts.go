package chschema

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The alerts table holds the utilization alerts the rollup role stored (see
// ingest/alerts). id is the alert's deterministic key: the same (tenant,
// service, application, metric, period, window, threshold) always has the
// same id, so a row written twice (a redelivered Kafka record, two API nodes
// reporting one crossing) is the same alert. The engine, ReplacingMergeTree
// on a sort key ending in id, folds such rows together as parts merge; until
// then readers group by id (the query API's /api/v1/alerts), so every alert is read once whether
// or not merges happened. Partitions are by the alert's month.
const alertsDDL = `CREATE TABLE IF NOT EXISTS {db}.alerts (
    id           String,
    tenant_id    String,
    service_id   String,
    app_id       String,
    metric       String,
    period       String,
    window_start DateTime('UTC'),
    threshold    UInt16,
    value        Int64,
    max          Int64,
    t            DateTime('UTC'),
    node         String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(t)
ORDER BY (tenant_id, service_id, app_id, id)`

// AlertRow is one row of the alerts table.
type AlertRow struct {
	ID          string
	TenantID    string
	ServiceID   string
	AppID       string
	Metric      string
	Period      string
	WindowStart time.Time
	Threshold   uint16
	Value       int64
	Max         int64
	Time        time.Time
	Node        string
}

const alertColumns = "id, tenant_id, service_id, app_id, metric, period, window_start, threshold, value, max, t, node"

// InsertAlerts writes rows in one insert block.
func InsertAlerts(ctx context.Context, conn driver.Conn, db string, rows []AlertRow) error {
	if err := CheckDatabase(db); err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(Settings(ctx, QueryTimeout), "INSERT INTO "+db+"."+Alerts+" ("+alertColumns+")")
	if err != nil {
		return fmt.Errorf("chschema: insert alerts: %w", err)
	}
	for i := range rows {
		r := &rows[i]
		if err := b.Append(r.ID, r.TenantID, r.ServiceID, r.AppID, r.Metric, r.Period, r.WindowStart.UTC(), r.Threshold, r.Value, r.Max, r.Time.UTC(), r.Node); err != nil {
			b.Abort()
			return fmt.Errorf("chschema: insert alerts: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("chschema: insert alerts: %w", err)
	}
	return nil
}

// KnownAlerts returns which of ids the alerts table already holds for
// tenant. ids travel as one array argument, so keep them to a batch (the
// alerts stage asks about at most 1,000 at a time).
func KnownAlerts(ctx context.Context, conn driver.Conn, db, tenant string, ids []string) (map[string]bool, error) {
	if err := CheckDatabase(db); err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return known, nil
	}
	rows, err := Query(ctx, conn, QueryTimeout, "SELECT DISTINCT id FROM "+db+"."+Alerts+" WHERE tenant_id = ? AND has(?, id)", tenant, ids)
	if err != nil {
		return nil, fmt.Errorf("chschema: read alerts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("chschema: read alerts: %w", err)
		}
		known[id] = true
	}
	return known, rows.Err()
}
