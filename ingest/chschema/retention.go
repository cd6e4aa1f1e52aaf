package chschema

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sluice-dev/sluice/limiter"
)

// Retention says how long each table keeps its rows; a table missing from the
// map, or with a zero duration, keeps them forever.
type Retention map[string]time.Duration

// DefaultRetention keeps minute rollups and raw events 35 days (a month's
// series at minute resolution plus slack), hour rollups 400 days, day rollups
// 5 years and month rollups forever (eternity limits are summed from them).
var DefaultRetention = Retention{
	UsageMinute: 35 * 24 * time.Hour,
	EventsRaw:   35 * 24 * time.Hour,
	UsageHour:   400 * 24 * time.Hour,
	UsageSets:   400 * 24 * time.Hour,
	UsageDay:    5 * 366 * 24 * time.Hour,
}

// Apply runs DropExpired for every table of r.
func (r Retention) Apply(ctx context.Context, conn driver.Conn, db string, now time.Time) ([]string, error) {
	var all []string
	for _, t := range Tables {
		keep := r[t.Name]
		if keep <= 0 {
			continue
		}
		dropped, err := DropExpired(ctx, conn, db, t.Name, keep, now)
		all = append(all, dropped...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

var partitionIDRE = regexp.MustCompile(`^[0-9]{4}([0-9]{2}([0-9]{2})?)?$`)

// partitionEnd returns the first instant after the partition with the given
// id (YYYYMMDD, YYYYMM or YYYY of `written`).
func partitionEnd(id string) (time.Time, error) {
	if !partitionIDRE.MatchString(id) {
		return time.Time{}, fmt.Errorf("unexpected partition id %q", id)
	}
	y, _ := strconv.Atoi(id[:4])
	switch len(id) {
	case 4:
		return time.Date(y+1, 1, 1, 0, 0, 0, 0, time.UTC), nil
	case 6:
		m, _ := strconv.Atoi(id[4:6])
		return time.Date(y, time.Month(m)+1, 1, 0, 0, 0, 0, time.UTC), nil
	default:
		m, _ := strconv.Atoi(id[4:6])
		d, _ := strconv.Atoi(id[6:8])
		return time.Date(y, time.Month(m), d+1, 0, 0, 0, 0, time.UTC), nil
	}
}

// DropExpired drops the partitions of table whose rows were all written
// before now-keep, and returns their ids. Before dropping, it copies the
// newest offset marker of every Kafka partition whose newest marker would be
// dropped into today's partition, so an idle Kafka partition never loses its
// resume offset (markers are maxima, so copying one twice is harmless, and a
// crash between the copy and the drop leaves only a harmless copy).
func DropExpired(ctx context.Context, conn driver.Conn, db, table string, keep time.Duration, now time.Time) ([]string, error) {
	if err := CheckDatabase(db); err != nil {
		return nil, err
	}
	info, ok := Info(table)
	if !ok {
		return nil, fmt.Errorf("chschema: retention: unknown table %q", table)
	}
	if keep <= 0 {
		return nil, nil
	}
	ctx = Settings(ctx, QueryTimeout)
	cutoff := now.UTC().Add(-keep)
	rows, err := Query(ctx, conn, QueryTimeout, "SELECT DISTINCT partition_id, partition FROM system.parts WHERE database = ? AND table = ? AND active", db, table)
	if err != nil {
		return nil, fmt.Errorf("chschema: list partitions of %s: %w", table, err)
	}
	type part struct{ id, expr string }
	var expired []part
	for rows.Next() {
		var p part
		if err := rows.Scan(&p.id, &p.expr); err != nil {
			rows.Close()
			return nil, fmt.Errorf("chschema: list partitions of %s: %w", table, err)
		}
		end, err := partitionEnd(p.id)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("chschema: %s: %w", table, err)
		}
		if !end.After(cutoff) {
			expired = append(expired, p)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("chschema: list partitions of %s: %w", table, err)
	}
	if len(expired) == 0 {
		return nil, nil
	}
	ids := make([]string, len(expired))
	for i, p := range expired {
		ids[i] = p.id // digits only, checked by partitionEnd
	}
	if err := carryMarkers(ctx, conn, db, info, ids, now); err != nil {
		return nil, err
	}
	var dropped []string
	for _, p := range expired {
		// partition is ClickHouse's literal for the partition value: a
		// number or a quoted date. Only those shapes are spliced.
		if dateRE.MatchString(p.expr) {
			p.expr = "'" + p.expr + "'" // 18.16 shows a Date partition unquoted
		}
		if !partitionExprRE.MatchString(p.expr) {
			return dropped, fmt.Errorf("chschema: %s: unexpected partition literal %q", table, p.expr)
		}
		if err := conn.Exec(ctx, "ALTER TABLE "+db+"."+table+" DROP PARTITION "+p.expr); err != nil {
			return dropped, fmt.Errorf("chschema: drop partition %s of %s: %w", p.id, table, err)
		}
		dropped = append(dropped, table+"/"+p.id)
	}
	return dropped, nil
}

var dateRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)

var partitionExprRE = regexp.MustCompile(`^([0-9]{4,8}|'[0-9]{4}-[0-9]{2}-[0-9]{2}')$`)

func carryMarkers(ctx context.Context, conn driver.Conn, db string, info TableInfo, expiredIDs []string, now time.Time) error {
	q := fmt.Sprintf(`SELECT kp, max(ko) AS all_max, maxIf(ko, %s NOT IN (%s)) AS kept_max
FROM %s.%s WHERE tenant_id = '' GROUP BY kp`, info.PartitionID, strings.Join(expiredIDs, ", "), db, info.Name)
	rows, err := Query(ctx, conn, QueryTimeout, q)
	if err != nil {
		return fmt.Errorf("chschema: read markers of %s: %w", info.Name, err)
	}
	type mk struct {
		kp int32
		ko int64
	}
	var carry []mk
	for rows.Next() {
		var kp int32
		var all, kept int64
		if err := rows.Scan(&kp, &all, &kept); err != nil {
			rows.Close()
			return fmt.Errorf("chschema: read markers of %s: %w", info.Name, err)
		}
		if all > kept {
			carry = append(carry, mk{kp, all})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(carry) == 0 {
		return err
	}
	cols := "written, t, kp, ko"
	if info.HasValue {
		cols += ", value"
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+"."+info.Name+" ("+cols+")")
	if err != nil {
		return fmt.Errorf("chschema: carry markers of %s: %w", info.Name, err)
	}
	ds, _ := limiter.CalendarBounds(limiter.Day, now.Unix())
	day := time.Unix(ds, 0).UTC()
	for _, m := range carry {
		args := []any{day, now.UTC().Truncate(time.Second), m.kp, m.ko}
		if info.HasValue {
			args = append(args, int64(1))
		}
		if err := b.Append(args...); err != nil {
			b.Abort()
			return fmt.Errorf("chschema: carry markers of %s: %w", info.Name, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("chschema: carry markers of %s: %w", info.Name, err)
	}
	return nil
}
