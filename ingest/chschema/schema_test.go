package chschema

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/sluice-dev/sluice/internal/chlocal/chtest"
)

func startCH(t *testing.T) driver.Conn {
	t.Helper()
	_, conn := chtest.Start(t)
	return conn
}

func TestMigrateTwiceAndConcurrently(t *testing.T) {
	conn := startCH(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func(i int) { defer wg.Done(); errs[i] = Migrate(ctx, conn, "sl") }(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("concurrent Migrate: %v", err)
		}
	}
	if err := Migrate(ctx, conn, "sl"); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	applied, err := Applied(ctx, conn, "sl")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Migrations {
		if !applied[m.Version] {
			t.Errorf("migration %d not recorded", m.Version)
		}
	}
	for _, tb := range Tables {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = 'sl' AND name = ?", tb.Name).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: count %d, err %v", tb.Name, n, err)
		}
	}
	if err := Migrate(ctx, conn, "bad-name; DROP"); err == nil {
		t.Error("Migrate accepted a bad database name")
	}
}

func TestPartitionEnd(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want string
	}{
		{"20261123", "2026-11-24"},
		{"20261231", "2027-01-01"},
		{"202612", "2027-01-01"},
		{"2026", "2027-01-01"},
	} {
		got, err := partitionEnd(tc.id)
		if err != nil || got.Format("2006-01-02") != tc.want {
			t.Errorf("partitionEnd(%s) = %v, %v; want %s", tc.id, got, err, tc.want)
		}
	}
	if _, err := partitionEnd("2026-11"); err == nil {
		t.Error("accepted a bad id")
	}
}

func TestDropExpiredKeepsNewestMarker(t *testing.T) {
	conn := startCH(t)
	ctx := context.Background()
	if err := Migrate(ctx, conn, "sl"); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	day := func(d int) time.Time { return time.Date(2026, 11, d, 0, 0, 0, 0, time.UTC) }
	b, err := conn.PrepareBatch(ctx, "INSERT INTO sl.usage_minute (written, tenant_id, metric, app_id, t, kp, ko, value)")
	if err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		written     time.Time
		tenant, app string
		kp          int32
		ko, value   int64
	}{
		{day(1), "t1", "a", 0, 0, 5},  // old usage: dropped
		{day(1), "", "", 0, 10, 1},    // old marker of kp 0, superseded by day 22's
		{day(1), "", "", 1, 7, 1},     // old marker of kp 1, its newest: must be carried
		{day(22), "t1", "a", 0, 0, 3}, // kept
		{day(22), "", "", 0, 20, 1},   // kept marker
	}
	for _, r := range rows {
		if err := b.Append(r.written, r.tenant, "hits", r.app, r.written, r.kp, r.ko, r.value); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	dropped, err := DropExpired(ctx, conn, "sl", UsageMinute, 7*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 1 || dropped[0] != "usage_minute/20261101" {
		t.Fatalf("dropped %v", dropped)
	}
	var sum int64
	if err := conn.QueryRow(ctx, "SELECT sum(value) FROM sl.usage_minute WHERE tenant_id = 't1'").Scan(&sum); err != nil {
		t.Fatal(err)
	}
	if sum != 3 {
		t.Errorf("usage after drop = %d, want 3", sum)
	}
	m, err := Markers(ctx, conn, "sl", UsageMinute)
	if err != nil {
		t.Fatal(err)
	}
	if m[0] != 20 || m[1] != 7 || len(m) != 2 {
		t.Errorf("markers after drop = %v, want map[0:20 1:7]", m)
	}
	// Nothing left to drop: a second run is a no-op.
	if dropped, err := DropExpired(ctx, conn, "sl", UsageMinute, 7*24*time.Hour, now); err != nil || len(dropped) != 0 {
		t.Errorf("second DropExpired = %v, %v", dropped, err)
	}
}

// The DDL must stay valid on ClickHouse 18.16 and on current releases.
func TestDDLPortable(t *testing.T) {
	for _, m := range Migrations {
		for _, st := range m.Statements {
			up := strings.ToUpper(st)
			for _, bad := range []string{"DATETIME64", " TTL ", "LOWCARDINALITY", "SETTINGS INDEX_GRANULARITY", "CODEC(", "NULLABLE("} {
				if strings.Contains(up, bad) {
					t.Errorf("migration %d uses %s:\n%s", m.Version, bad, st)
				}
			}
			if strings.Contains(up, "ENGINE") && !strings.Contains(up, "ORDER BY") {
				t.Errorf("migration %d: ENGINE without ORDER BY (old MergeTree syntax?):\n%s", m.Version, st)
			}
		}
	}
	for i, m := range Migrations {
		if m.Version != i+1 {
			t.Errorf("migration %d at index %d: versions must be 1, 2, 3, ...", m.Version, i)
		}
	}
}
