package chschema

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Markers returns, for one table, the next Kafka offset per partition that
// the table already contains (the maximum ko of its marker rows). Partitions
// without a marker are absent.
func Markers(ctx context.Context, conn driver.Conn, db, table string) (map[int32]int64, error) {
	if err := CheckDatabase(db); err != nil {
		return nil, err
	}
	if _, ok := Info(table); !ok {
		return nil, fmt.Errorf("chschema: markers: unknown table %q", table)
	}
	rows, err := Query(ctx, conn, QueryTimeout, "SELECT kp, max(ko) FROM "+db+"."+table+" WHERE tenant_id = '' GROUP BY kp")
	if err != nil {
		return nil, fmt.Errorf("chschema: read markers of %s: %w", table, err)
	}
	defer rows.Close()
	out := map[int32]int64{}
	for rows.Next() {
		var kp int32
		var ko int64
		if err := rows.Scan(&kp, &ko); err != nil {
			return nil, fmt.Errorf("chschema: read markers of %s: %w", table, err)
		}
		out[kp] = ko
	}
	return out, rows.Err()
}
